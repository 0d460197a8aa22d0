"""Replay decisions: which recorded result a durable call gets back (pure, no I/O).

Every durable call of a job (a step, a wait, ``ctx.now()``, a token, a child...)
takes the next position when it is *called*, before its first ``await``, so that
steps started together (``asyncio.gather``, task groups) get stable positions. At a
recorded position the call must have the recorded name; otherwise the code changed
under a running job and :class:`NonDeterminismError` stops it.

This module also spells the one value shared by the replay engine and the stores
for a parent that waits for a child: its wait id (:func:`child_wait_id`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from flowq.errors import NonDeterminismError

__all__ = [
    "CHILD_WAIT_PREFIX",
    "History",
    "RecordedCall",
    "Reservation",
    "child_wait_id",
    "recorded_call_of",
    "waited_child",
]

CHILD_WAIT_PREFIX = "child:"
"""How a child wait id starts (the stores' ``flowq_jobs_wake_parent`` triggers spell it too)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedCall:
    """One stored durable call: its result (JSON text) or its error."""

    seq: int
    name: str
    attempt: int
    output: str | None
    error: str | None
    """JSON text ``{"message": ..., "type": ...}`` when the call failed."""
    started_at: datetime
    completed_at: datetime


_new = object.__new__
_SET_FIELDS = tuple(
    getattr(RecordedCall, name).__set__
    for name in ("seq", "name", "attempt", "output", "error", "started_at", "completed_at")
)


def recorded_call_of(
    seq: int,
    name: str,
    attempt: int,
    output: str | None,
    error: str | None,
    started_at: datetime,
    completed_at: datetime,
) -> RecordedCall:
    """``RecordedCall(seq=..., ...)`` from the values in field order, made about three
    times faster than by the frozen dataclass's keyword ``__init__`` (the same object:
    it sets the same slots); every resume loads a job's whole history through it."""
    call = _new(RecordedCall)
    set_seq, set_name, set_attempt, set_output, set_error, set_started, set_completed = _SET_FIELDS
    set_seq(call, seq)
    set_name(call, name)
    set_attempt(call, attempt)
    set_output(call, output)
    set_error(call, error)
    set_started(call, started_at)
    set_completed(call, completed_at)
    return call


class Reservation(NamedTuple):
    """A position taken by a call named ``name`` (a named tuple: one is made for every
    durable call, and a tuple is the cheapest immutable record to make)."""

    seq: int
    name: str


class History:
    """The recorded calls of one job and the position of the next call.

    Args:
        job_id: For error messages.
        calls: Everything recorded for the job so far.
    """

    def __init__(self, job_id: int, calls: list[RecordedCall]) -> None:
        self.job_id = job_id
        self._calls: dict[int, RecordedCall] = {}
        self._end = 0
        self._next = 0
        self.extend(calls)

    @property
    def position(self) -> int:
        """The position the next call will take."""
        return self._next

    @property
    def end(self) -> int:
        """One past the last recorded position (0 when nothing is recorded)."""
        return self._end

    def reserve(self, name: str) -> Reservation:
        """Take the next position for a call named ``name`` (checked by
        :meth:`recorded_at` once the history is loaded)."""
        seq = self._next
        self._next += 1
        return Reservation(seq, name)

    def recorded_at(self, reservation: Reservation) -> RecordedCall | None:
        """What is recorded at the reserved position, if anything.

        Raises:
            NonDeterminismError: Another call is recorded at that position.
        """
        recorded = self._calls.get(reservation.seq)
        if recorded is not None and recorded.name != reservation.name:
            raise NonDeterminismError(self.job_id, reservation.seq, recorded.name, reservation.name)
        return recorded

    def patched(self, marker: str) -> Reservation | None:
        """Decide a ``ctx.patched`` check whose marker call is named ``marker``.

        Returns the marker's reservation when the new code path applies: the marker
        is recorded at the next position, or nothing is recorded from there on (a new
        execution, which must record it). Returns None when the history was made by
        the old code (another call, or a later one, is recorded); no position is taken.
        """
        recorded = self._calls.get(self._next)
        if recorded is not None:
            return self.reserve(marker) if recorded.name == marker else None
        if self._next < self._end:
            return None
        return self.reserve(marker)

    def record(self, call: RecordedCall) -> None:
        """Remember a call recorded during this run."""
        self._calls[call.seq] = call
        self._end = max(self._end, call.seq + 1)

    def extend(self, calls: Iterable[RecordedCall]) -> None:
        """Remember calls loaded from the store (what :meth:`record` does for each)."""
        found = {call.seq: call for call in calls}
        self._calls.update(found)
        self._end = max(self._end, max(found, default=-1) + 1)


def child_wait_id(child_id: int) -> str:
    """What a parent waiting for a child's outcome parks on (``wait_token_id``)."""
    return f"{CHILD_WAIT_PREFIX}{child_id}"


def waited_child(wait_id: str) -> int | None:
    """The child a wait id made by :func:`child_wait_id` names; None for a token id."""
    if not wait_id.startswith(CHILD_WAIT_PREFIX):
        return None
    return int(wait_id[len(CHILD_WAIT_PREFIX) :])
