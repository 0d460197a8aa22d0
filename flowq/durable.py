"""The machinery under ``ctx``'s durable calls: recording, replaying, suspending.

A durable call takes its position when it is called (:class:`flowq.replay.History`),
then, when awaited, either returns what was recorded at that position or runs and
records its result before returning it. A wait that is not over raises
:class:`Suspend`, which the engine turns into a ``waiting`` job.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from flowq import codec
from flowq.clock import Clock
from flowq.errors import DatabaseUnavailableError
from flowq.replay import History, RecordedCall, Reservation
from flowq.store.base import Lease, Store

__all__ = [
    "Calls",
    "LeaseLost",
    "Suspend",
    "add_months",
    "error_json",
    "exception_message",
    "exception_name",
    "persist",
    "wake_time",
]


class Suspend(BaseException):
    """Raised by a wait that is not over: the job parks as ``waiting``.

    A ``BaseException`` so that ``except Exception`` in workflow code lets it pass.
    """

    def __init__(self, wait_until: datetime | None, wait_id: str | None) -> None:
        super().__init__(wait_until, wait_id)
        self.wait_until = wait_until
        self.wait_id = wait_id


class LeaseLost(BaseException):
    """The job was cancelled or taken back while its handler ran: stop quietly."""


Record = Callable[[Lease, RecordedCall], Awaitable[bool]]
log = logging.getLogger("flowq.worker")


@dataclass(slots=True)
class Calls:
    """One run's durable calls: the history, and how to record new calls.

    The history is loaded on the first durable call, and not at all for a job's
    first run (nothing can be recorded yet), so jobs without durable calls cost
    no extra query.
    """

    job_id: int
    attempt: int
    lease: Lease
    store: Store
    clock: Clock
    record_call: Record
    fresh: bool
    history: History | None = None
    _lock: anyio.Lock | None = None

    def reserve(self, name: str) -> Reservation:
        """Take the next position (synchronously, at call time)."""
        return self._history().reserve(name)

    def _history(self) -> History:
        if self.history is None:
            self.history = History(self.job_id, [])
        return self.history

    async def loaded(self) -> History:
        """The history, loading it from the store on first use after a suspension."""
        history = self._history()
        if not self.fresh:
            if self._lock is None:
                self._lock = anyio.Lock(fast_acquire=True)
            async with self._lock:
                if not self.fresh:
                    for call in await self.store.load_history(self.job_id):
                        history.record(call)
                    self.fresh = True
        return history

    async def recorded(self, reservation: Reservation) -> RecordedCall | None:
        """What is recorded at the reserved position (NonDeterminismError if another
        call is recorded there)."""
        return (await self.loaded()).recorded_at(reservation)

    async def record(
        self, reservation: Reservation, started: datetime, *, output: str | None, error: str | None
    ) -> None:
        """Store a call's result before the workflow sees it.

        Raises:
            LeaseLost: The job is no longer this worker's.
        """
        call = RecordedCall(
            seq=reservation.seq,
            name=reservation.name,
            attempt=self.attempt,
            output=output,
            error=error,
            started_at=started,
            completed_at=self.clock.now(),
        )
        what = f"call {reservation.name!r} of job {self.job_id}"
        if not await persist(lambda: self.record_call(self.lease, call), what):
            raise LeaseLost
        self._history().record(call)


async def persist(write: Callable[[], Awaitable[bool]], what: str) -> bool:
    """Run ``write`` until the database takes it, backing off while it is unreachable.

    A job's outcome must not be lost to a dropped connection or a restarting server;
    the write is safe to repeat because the store checks the lease (a repeated
    completion that already committed answers False). Cancelling the caller stops it.
    """
    delay = 0.05
    while True:
        try:
            return await write()
        except DatabaseUnavailableError as exc:
            log.warning("flowq: could not record %s (%s); retrying in %.2fs", what, exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)


def exception_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``package.module.Error`` for the rest."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def exception_message(exc: BaseException) -> str:
    """The exception's text, or its repr when it has none."""
    return str(exc) or repr(exc)


def error_json(exc: BaseException) -> str:
    """A failed call's error as stored: ``{"message": ..., "type": ...}``."""
    error = {"message": exception_message(exc), "type": exception_name(exc)}
    return codec.encode(error, what="step error")


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, the day clamped to the target month's length."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def wake_time(now: datetime, *, months: int = 0, delta: timedelta = timedelta(0)) -> datetime:
    """``now`` plus calendar months, then plus ``delta``."""
    return add_months(now, months) + delta if months else now + delta
