"""The machinery under ``ctx``'s durable calls: recording, replaying, suspending.

A durable call takes its position when it is called (:class:`flowq.replay.History`),
then, when awaited, either returns what was recorded at that position or runs and
records its result before returning it. A wait that is not over raises
:class:`Suspend`, which the engine turns into a ``waiting`` job.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn, TypeVar

import anyio

from flowq.clock import Clock
from flowq.errors import DatabaseUnavailableError, NonDeterminismError
from flowq.replay import History, RecordedCall, Reservation
from flowq.store.base import Lease, Store

__all__ = [
    "Calls",
    "LeaseLost",
    "Suspend",
    "effective",
    "persist",
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


Record = Callable[[Lease, RecordedCall], Awaitable[RecordedCall | None]]
log = logging.getLogger("flowq.worker")
T = TypeVar("T")


@dataclass(slots=True)
class Calls:
    """One run's durable calls: the history, and how to record new calls.

    The history is loaded on the first durable call, and not at all when the claim
    found nothing recorded for the job (``history_loaded`` from the start), so jobs
    without recorded calls cost no extra query. Whether anything is recorded is read
    from the calls table by the claim, never inferred from the attempt count: a job
    handed back by a stopping worker starts its first attempt again with its history
    intact.
    """

    job_id: int
    attempt: int
    lease: Lease
    store: Store
    clock: Clock
    record_call: Record
    history_loaded: bool
    """The history in memory is complete: loaded, or nothing was recorded at claim."""
    history: History | None = None
    _lock: anyio.Lock | None = None
    _executing: set[anyio.CancelScope] = field(default_factory=set)
    _idle: anyio.Event | None = None

    def reserve(self, name: str) -> Reservation:
        """Take the next position (synchronously, at call time)."""
        return self._history().reserve(name)

    def _history(self) -> History:
        if self.history is None:
            self.history = History(self.job_id, [])
        return self.history

    async def loaded(self) -> History:
        """The history, loading it from the store on first use when the job had one."""
        history = self._history()
        if not self.history_loaded:
            if self._lock is None:
                self._lock = anyio.Lock(fast_acquire=True)
            async with self._lock:
                if not self.history_loaded:
                    for call in await self.store.load_history(self.job_id):
                        history.record(call)
                    self.history_loaded = True
        return history

    async def recorded(self, reservation: Reservation) -> RecordedCall | None:
        """What is recorded at the reserved position (NonDeterminismError if another
        call is recorded there)."""
        return (await self.loaded()).recorded_at(reservation)

    async def record(
        self, reservation: Reservation, started: datetime, *, output: str | None, error: str | None
    ) -> RecordedCall | None:
        """Store a call's result before the workflow sees it.

        Returns:
            None when this result was stored. When a successful result was recorded at
            this position earlier (it is never replaced), that record: the caller must
            go on with it, as a replay would, and not with its own result.

        Raises:
            LeaseLost: The job is no longer this worker's.
            NonDeterminismError: The earlier record is of another call.
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
        stored = await persist(lambda: self.record_call(self.lease, call), what)
        if stored is None:
            raise LeaseLost
        history = self._history()
        history.record(stored)
        if stored == call:  # stored now, or by an earlier try of this same write
            return None
        log.warning(
            "flowq: job %s: position %d already holds a recorded result of %r; "
            "going on with the recorded result, not the new one",
            self.job_id,
            reservation.seq,
            stored.name,
        )
        return history.recorded_at(reservation)

    async def record_output(self, reservation: Reservation, started: datetime, output: str) -> str:
        """Record a call's successful output as one execution (see :meth:`execute`);
        return the output as stored: this one, or the one recorded earlier."""
        earlier = await self.execute(
            lambda: self.record(reservation, started, output=output, error=None)
        )
        return output if earlier is None or earlier.output is None else earlier.output

    # -- settling: no durable call is left half done when a run ends ---------------------

    async def execute(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` (a durable call's execution and its record) so that the end of
        the run can wait for it (:meth:`settle`), and a wait beside it lets it finish
        first (:meth:`suspend`).

        Raises:
            LeaseLost: The run ended before ``work`` finished and cancelled it.
        """
        scope = anyio.CancelScope()
        self._executing.add(scope)
        token = _executing_here.set(True)
        try:
            with scope:
                return await work()
        finally:
            _executing_here.reset(token)
            self._executing.discard(scope)
            if not self._executing and self._idle is not None:
                self._idle.set()
        raise LeaseLost  # reached only when settle() cancelled it

    async def suspend(self, wait_until: datetime | None, wait_id: str | None) -> NoReturn:
        """Park the job on a wait that is not over, once the durable calls running
        beside this one (in ``gather`` or a task group) have finished and recorded
        their results; a call made inside a step's body does not wait for that step."""
        if not _executing_here.get():
            await self._quiet()
        raise Suspend(wait_until, wait_id)

    async def settle(self) -> None:
        """At the end of a run: wait until the durable calls still executing (left
        running by ``asyncio.gather`` when a sibling raised) have recorded their
        results, so that no finished step is lost. If this wait is cancelled (the
        job's timeout, cancellation, a worker's drain timeout) they are cancelled."""
        try:
            await self._quiet()
        finally:
            for scope in self._executing:
                scope.cancel()

    async def _quiet(self) -> None:
        while self._executing:
            self._idle = anyio.Event()
            await self._idle.wait()


_executing_here: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flowq_executing", default=False
)
"""True in the task (and its child tasks) running a durable call's execution."""


def effective(raised: BaseException) -> BaseException:
    """What ended a handler run, seen through exception groups (``gather`` raises bare
    exceptions; anyio task groups wrap them, however deeply).

    In a group, a lost lease wins, then a :class:`NonDeterminismError`, then the
    handler's errors (the only one, or a group of them without the waits); waits
    alone merge into one :class:`Suspend` that wakes at the earliest of their times
    (and on the first token or child they wait for). A group holding anything else
    (a cancellation, ``KeyboardInterrupt``...) comes back as it is.
    """
    if not isinstance(raised, BaseExceptionGroup):
        return raised
    leaves = list(_leaves(raised))
    for kind in (LeaseLost, NonDeterminismError):
        found = [leaf for leaf in leaves if isinstance(leaf, kind)]
        if found:
            return found[0]
    if any(not isinstance(leaf, Suspend | Exception) for leaf in leaves):
        return raised
    errors = [leaf for leaf in leaves if isinstance(leaf, Exception)]
    if len(errors) == 1:
        return errors[0]
    if errors:
        matched, _ = raised.split(Exception)
        assert matched is not None  # noqa: S101 (there are errors)
        return matched
    suspends = [leaf for leaf in leaves if isinstance(leaf, Suspend)]
    times = [s.wait_until for s in suspends if s.wait_until is not None]
    ids = [s.wait_id for s in suspends if s.wait_id is not None]
    return Suspend(min(times, default=None), ids[0] if ids else None)


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


async def persist(write: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``write`` until the database takes it, backing off while it is unreachable.

    A job's outcome must not be lost to a dropped connection or a restarting server;
    the write is safe to repeat because the store checks the lease (a repeated
    completion that already committed answers False; a repeated call record answers
    with the record it already holds). Cancelling the caller stops it.
    """
    delay = 0.05
    while True:
        try:
            return await write()
        except DatabaseUnavailableError as exc:
            log.warning("flowq: could not record %s (%s); retrying in %.2fs", what, exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
