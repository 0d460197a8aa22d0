"""The machinery under ``ctx``'s durable calls: one routine that replays or records.

Every durable call (a step, a wait, ``ctx.now()``, a token, a child...) is
:meth:`Calls.call`: its position is taken when it is called (:meth:`Calls.reserve`,
see :class:`flowq.replay.History`); when awaited, it gets back what is recorded at
that position, or it executes and its result is recorded before the workflow sees
it. A wait that is not over raises :class:`Suspend`, which the engine turns into a
``waiting`` job. Executions are tracked, so that a wait lets the calls running beside
it finish first and the end of a run settles those ``asyncio.gather`` left behind.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from types import CoroutineType
from typing import Any, NoReturn, TypeVar

import anyio

from flowq.clock import Clock
from flowq.errors import DatabaseUnavailableError, NonDeterminismError
from flowq.outages import database_outages
from flowq.replay import History, RecordedCall, Reservation
from flowq.store.base import Lease, Store

__all__ = [
    "Calls",
    "Done",
    "Execute",
    "Failed",
    "HistoryEnd",
    "LeaseLost",
    "Replay",
    "Suspend",
    "Wait",
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


class HistoryEnd(Suspend):
    """A replay of an exported history reached a call the history does not hold: the
    replay ends there (nothing is executed; see ``flowq_testing.replay``)."""

    def __init__(self, position: int) -> None:
        super().__init__(None, None)
        self.position = position


class LeaseLost(BaseException):
    """The job was cancelled or taken back while its handler ran: stop quietly."""


_FROM_RECORD: Any = object()


@dataclass(frozen=True, slots=True)
class Done:
    """A durable call executed: record ``output`` (JSON text)."""

    output: str
    value: Any = _FROM_RECORD
    """What the call returns when this record is the one kept (e.g. the token the
    store returned); by default, what replaying the record gives."""


@dataclass(frozen=True, slots=True)
class Failed:
    """A durable call executed and failed: record ``error`` (JSON text, see
    :mod:`flowq.failures`)."""

    error: str
    exception: Exception | None = None
    """Raised as it is when this record is the one kept (a step's own exception, with
    its traceback); by default, what replaying the record raises."""


@dataclass(frozen=True, slots=True)
class Wait:
    """A durable call waits for something that is not over: the job parks until
    ``until`` or until ``wait_id`` (a token or a child) is resolved; nothing is
    recorded."""

    until: datetime | None
    wait_id: str | None


T = TypeVar("T")
"""Stores a call for a lease; returns the record kept, or None when the lease is lost."""
Execute = Callable[[datetime], "Awaitable[Done | Failed | Wait] | Done | Failed | Wait"]
"""A durable call's execution, given the time it starts (sync or async)."""
Replay = Callable[[RecordedCall], "Awaitable[T] | T"]
"""A durable call's value (or raised error) from its record (a function, or a coroutine
function)."""
log = logging.getLogger("flowq.worker")


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
    history_loaded: bool
    """The history in memory is complete: loaded, or nothing was recorded at claim."""
    history: History | None = None
    replay_only: bool = False
    """Replaying an exported history: a call the history does not hold raises
    :class:`HistoryEnd` instead of executing."""
    _lock: anyio.Lock | None = None
    _executing: set[anyio.CancelScope] = field(default_factory=set)
    _idle: anyio.Event | None = None
    _unawaited: dict[int, tuple[str, Coroutine[Any, Any, Any]]] = field(default_factory=dict)

    @property
    def replaying(self) -> bool:
        """Recorded calls lie ahead of the next position: the handler is re-running
        what an earlier run did. True before the history is loaded, which happens only
        when the claim found recorded calls."""
        if not self.history_loaded:
            return True
        return self.history is not None and self.history.position < self.history.end

    def reserve(self, name: str) -> Reservation:
        """Take the next position (synchronously, at call time)."""
        history = self.history
        if history is None:
            history = self._history()
        return history.reserve(name)

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
                    history.extend(await self.store.load_history(self.job_id))
                    self.history_loaded = True
        return history

    # -- the durable-call routine -------------------------------------------------------

    def call(
        self,
        reservation: Reservation,
        execute: Execute,
        replay: Replay[T],
        *,
        waits: bool = False,
        rerun_failures: bool = False,
    ) -> Coroutine[Any, Any, T]:
        """Replay the call reserved at ``reservation``, or execute and record it.

        With a record at the position, the call's value is ``replay(record)`` (which
        returns it or raises the recorded error). Otherwise ``execute(started)`` runs:
        a :class:`Wait` parks the job; a :class:`Done` or :class:`Failed` is recorded,
        and the value is ``replay`` of the record kept, this one or a result recorded
        there earlier (which is never replaced), unless this one carries its own value
        or exception.

        Args:
            reservation: The position taken when the call was made.
            execute: Does the call's work, given the time it starts; tracked with its
                record (see :meth:`execute`) unless ``waits``.
            replay: The call's value from a record.
            waits: ``execute`` reads whether a wait is over: it runs untracked, so
                that it never holds back the parking of a wait beside it; only its
                record is tracked.
            rerun_failures: A failure recorded by an earlier attempt is not
                replayed: the call executes again (steps).

        The coroutine is tracked until it starts (:meth:`unawaited`).

        Raises:
            NonDeterminismError: Another call is recorded at the position.
            LeaseLost: The job is no longer this worker's.
            Suspend: The call waits (once the calls running beside it finished).
        """
        coroutine = self._call(reservation, execute, replay, waits, rerun_failures)
        self._unawaited[reservation.seq] = (reservation.name, coroutine)  # track(), inlined
        return coroutine

    def track(
        self, reservation: Reservation, coroutine: Coroutine[Any, Any, T]
    ) -> Coroutine[Any, Any, T]:
        """Remember the coroutine of the call made at ``reservation`` until it starts
        (:meth:`untrack`), so that a call never awaited is found."""
        self._unawaited[reservation.seq] = (reservation.name, coroutine)
        return coroutine

    def untrack(self, reservation: Reservation) -> None:
        """The call made at ``reservation`` started."""
        self._unawaited.pop(reservation.seq, None)

    def unawaited(self) -> list[Reservation]:
        """The calls made but never awaited (by position), forgotten and closed (so
        Python does not warn about them again)."""
        found = sorted(self._unawaited.items())
        self._unawaited.clear()
        for _, (_, coroutine) in found:
            coroutine.close()
        return [Reservation(seq, name) for seq, (name, _) in found]

    async def _call(
        self,
        reservation: Reservation,
        execute: Execute,
        replay: Replay[T],
        waits: bool,
        rerun_failures: bool,
    ) -> T:
        self._unawaited.pop(reservation.seq, None)  # untrack(), inlined: every call
        history = self.history
        if history is None or not self.history_loaded:
            history = await self.loaded()
        # A replayed call awaits nothing more than its replay does: no lock, no
        # tracking, no extra coroutine (a replay of 1,000 steps is 1,000 of these).
        recorded = history.recorded_at(reservation)
        if recorded is not None and not (
            rerun_failures and recorded.error is not None and recorded.attempt != self.attempt
        ):
            value = replay(recorded)
            if isinstance(value, CoroutineType):
                return await value  # type: ignore[no-any-return]
            return value  # type: ignore[return-value]
        if self.replay_only:
            raise HistoryEnd(reservation.seq)
        started = self.clock.now()
        if waits:
            outcome = await _outcome(execute(started))
            kept = None
            if not isinstance(outcome, Wait):
                record_it = functools.partial(self._record, reservation, started, outcome)
                kept = await self.execute(record_it)
        else:
            execute_it = functools.partial(self._execute, reservation, started, execute)
            outcome, kept = await self.execute(execute_it)
        if kept is None:  # a Wait: parked outside the tracked execution
            assert isinstance(outcome, Wait)  # noqa: S101 (nothing else goes unrecorded)
            await self.suspend(outcome.until, outcome.wait_id)
        record, ours = kept
        if ours and isinstance(outcome, Failed) and outcome.exception is not None:
            raise outcome.exception
        if ours and isinstance(outcome, Done) and outcome.value is not _FROM_RECORD:
            return outcome.value  # type: ignore[no-any-return]
        return await _value(replay(record))

    async def recorded(self, reservation: Reservation) -> RecordedCall | None:
        """What is recorded at the reserved position (NonDeterminismError if another
        call is recorded there)."""
        return (await self.loaded()).recorded_at(reservation)

    async def _execute(
        self, reservation: Reservation, started: datetime, execute: Execute
    ) -> tuple[Done | Failed | Wait, tuple[RecordedCall, bool] | None]:
        """Execute a call and record its result (a :class:`Wait` is not recorded)."""
        outcome = await _outcome(execute(started))
        if isinstance(outcome, Wait):
            return outcome, None
        return outcome, await self._record(reservation, started, outcome)

    async def _record(
        self, reservation: Reservation, started: datetime, outcome: Done | Failed
    ) -> tuple[RecordedCall, bool]:
        """Store a call's result before the workflow sees it.

        Returns:
            The record kept at the position, and whether it is this one. A successful
            result recorded there earlier is never replaced: the caller goes on with
            it, as a replay would.

        Raises:
            LeaseLost: The job is no longer this worker's.
            NonDeterminismError: The earlier record is of another call.
        """
        call = RecordedCall(
            seq=reservation.seq,
            name=reservation.name,
            attempt=self.attempt,
            output=outcome.output if isinstance(outcome, Done) else None,
            error=outcome.error if isinstance(outcome, Failed) else None,
            started_at=started,
            completed_at=self.clock.now(),
        )
        what = f"call {reservation.name!r} of job {self.job_id}"
        [stored] = await persist(lambda: self.store.record_calls([(self.lease, call)]), what)
        if stored is None:
            raise LeaseLost
        history = self._history()
        history.record(stored)
        if stored == call:  # stored now, or by an earlier try of this same write
            return call, True
        log.warning(
            "flowq: job %s: position %d already holds a recorded result of %r; "
            "going on with the recorded result, not the new one",
            self.job_id,
            reservation.seq,
            stored.name,
        )
        history.recorded_at(reservation)  # NonDeterminismError: another call's record
        return stored, False

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
            written = await write()
        except DatabaseUnavailableError as exc:
            database_outages.failed(f"recording {what}", exc)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            database_outages.succeeded()
            return written


async def _outcome(
    result: Awaitable[Done | Failed | Wait] | Done | Failed | Wait,
) -> Done | Failed | Wait:
    """What a sync or async :data:`Execute` gave."""
    if isinstance(result, Done | Failed | Wait):
        return result
    return await result


async def _value(result: Awaitable[T] | T) -> T:
    """What a sync :data:`Replay` returned, or what its coroutine returns."""
    if inspect.iscoroutine(result):
        return await result  # type: ignore[no-any-return]
    return result  # type: ignore[return-value]
