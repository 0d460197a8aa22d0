"""``ctx``: what a running handler may ask of flowq.

Each durable operation (steps, waits, tokens, ``now``/``uuid``/``random``,
``patched``, children) takes its position when it is called and is then one call of
:meth:`flowq.durable.Calls.call`, given how to execute it and how to read its record:
recorded the first time, replayed afterwards. The running job's ``ctx`` is found
through :mod:`flowq.current`.
"""

from __future__ import annotations

import logging
import random as random_module
import uuid as uuid_module
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import msgspec

from flowq import codec, failures, replay, step_tries
from flowq.deadline import Deadline, TimeoutCallback
from flowq.durable import Calls, Done, Failed, LeaseLost, Wait
from flowq.durations import Duration, parse_duration, parse_optional_duration, to_utc, wake_time
from flowq.errors import ContextError, FlowqError, JobFailedError, TokenError, ValidationError
from flowq.models import Job, JobStatus, Token, TokenResult, TokenStatus, new_token_id
from flowq.replay import RecordedCall, Reservation
from flowq.steps import Step
from flowq.store.base import Lease, NewToken, Store
from flowq.validate import tags as checked_tags

if TYPE_CHECKING:
    from flowq.options import JobOptions
    from flowq.registry import Workflow

__all__ = ["Context", "JobInfo", "ReplayAwareLogger", "StartChild"]

R = TypeVar("R")
StartChild = Callable[
    ["Workflow[Any, Any]", Any, "JobOptions", int, int, int | None], Coroutine[Any, Any, int]
]
"""Adds a child job: (workflow, payload, options, parent id, position of the start,
position of the outcome or None); see :meth:`flowq.App.start_child`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """The running job, as a handler sees it."""

    id: int
    workflow: str
    attempt: int
    max_attempts: int
    tags: tuple[str, ...]
    group: str | None


class ReplayAwareLogger(logging.LoggerAdapter[logging.Logger]):
    """``ctx.logger``: drops records while its job replays; adds the job's ``extra``."""

    def __init__(self, context: Context) -> None:
        super().__init__(
            logging.getLogger(f"flowq.workflow.{context.job.workflow}"),
            {
                "job_id": context.job.id,
                "workflow": context.job.workflow,
                "attempt": context.job.attempt,
            },
        )
        self._context = context

    def isEnabledFor(self, level: int) -> bool:
        """False while replaying, so nothing is logged twice."""
        return not self._context.is_replaying and super().isEnabledFor(level)


class Context:
    """The ``ctx`` argument of a handler.

    Attributes:
        job: Which job and attempt is running.
        cancelled: Set when the job is cancelled (or its worker lost it); the
            handler is also cancelled at its next ``await``. Sync handlers can poll
            ``ctx.cancelled.is_set()``.
    """

    def __init__(
        self,
        job: JobInfo,
        lease: Lease,
        store: Store,
        calls: Calls,
        *,
        durable: bool = True,
        start_child: StartChild | None = None,
    ) -> None:
        self.job = job
        self.cancelled = anyio.Event()
        self._lease = lease
        self._store = store
        self._calls = calls
        self._durable = durable
        self._start_child = start_child
        self._output: str | None = None
        self._has_output = False
        self._logger: ReplayAwareLogger | None = None
        self.deadline: Deadline | None = None
        """The running attempt's timeout (set by the engine when the handler starts)."""

    # -- progress and output --------------------------------------------------------

    @property
    def is_replaying(self) -> bool:
        """Whether the handler is re-running what an earlier run of the job did (after
        a wait, a crash or in a later attempt): recorded steps and waits lie ahead. It
        turns False at the first call that was not recorded before. Use it to keep side
        effects outside steps (log lines, metrics) from repeating."""
        return self._calls.replaying

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger (``flowq.workflow.<workflow name>``) that is quiet while the handler
        replays, so each line is logged once; records carry ``job_id``, ``workflow`` and
        ``attempt`` as ``extra``."""
        if self._logger is None:
            self._logger = ReplayAwareLogger(self)
        return self._logger

    async def set_progress(self, percent: float) -> None:
        """Record progress (0-100, rounded to an integer) with a ``progress`` event.
        While the handler replays it writes nothing: the progress a replayed part
        reported is stored already (so progress does not go back on a resume).

        Raises:
            ValidationError: ``percent`` is not a number from 0 to 100.
        """
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not (0 <= percent <= 100)
        ):
            raise ValidationError(f"progress must be a number from 0 to 100, got {percent!r}")
        if self.is_replaying:
            return
        await self._store.record_progress(self._lease, round(percent))

    async def set_output(self, value: Any) -> None:
        """Store ``value`` as the job's output now (a non-None return value wins later).

        Raises:
            SerializationError: ``value`` cannot be encoded as JSON, or holds NaN
                or an infinite number (JSON has none).
        """
        text = codec.encode_result(value, what=f"output of job {self.job.id}")
        await self._store.record_output(self._lease, text)
        self._output, self._has_output = text, True

    def output_for(self, returned: Any) -> str | None:
        """The output to store at completion: the return value unless it is None."""
        if returned is not None:
            return codec.encode_result(returned, what=f"output of job {self.job.id}")
        return self._output if self._has_output else None

    # -- timeouts -------------------------------------------------------------------

    async def prolong(self, duration: Duration | None = None) -> None:
        """Push this attempt's timeout back: the new deadline is now + ``duration``
        (None: the job's own timeout, from now). It also renews the job's lock (so
        ``reclaim_stuck_jobs`` leaves it alone) and records a ``prolonged`` event. A
        job without a timeout gets no deadline; the lock and the event still happen.

        Raises:
            ValidationError: ``duration`` is not a positive duration.
        """
        extension = parse_optional_duration(duration, name="prolong duration")
        if extension is not None and extension <= timedelta(0):
            raise ValidationError(f"prolong takes a positive duration, got {duration!r}")
        seconds = None if self.deadline is None else self.deadline.prolong(extension)
        await self._store.prolong_job(self._lease, seconds)

    def on_timeout(self, callback: TimeoutCallback) -> None:
        """Call ``callback()`` (no arguments, sync or async) when this attempt reaches
        its deadline. If it returns a duration, the deadline moves to now + that
        duration (and the callback is asked again at the new deadline); if it returns
        None or raises (logged), the timeout fires. A later call replaces the callback.

        Raises:
            ValidationError: ``callback`` is not callable.
        """
        if not callable(callback):
            raise ValidationError(f"on_timeout takes a callable, got {callback!r}")
        if self.deadline is not None:
            self.deadline.on_timeout(callback)

    # -- steps ----------------------------------------------------------------------

    def run_step(self, step: Step[Any, R], args: Any, kwargs: Any) -> Coroutine[Any, Any, R]:
        """Take the step's position now; the returned coroutine replays or runs it.

        A step's own failure is raised as it is (a replayed one is rebuilt, see
        :mod:`flowq.failures`); a failure recorded by an earlier attempt runs again. A
        result that does not fit the return annotation raises SerializationError on
        the first run and on every replay alike: it is recorded, so the body does not
        run again because of it.
        """
        if not self._durable:  # the names below are made only when needed: every step
            self._require_durable(f"step {step.name!r}")
        reservation = self._calls.reserve(step.name)
        try:
            return_type = step.return_type  # resolved before anything runs or is recorded
        except ValidationError as exc:
            return _raise(exc)

        async def execute(_started: datetime) -> Done | Failed:
            try:
                result = await step_tries.run_with_retries(step, args, kwargs)
                return Done(codec.encode_result(result, what=self._result_of(step)))
            except Exception as exc:
                return Failed(failures.error_json(exc), exc)

        def replayed(recorded: RecordedCall) -> R:
            if recorded.error is not None:
                raise failures.replayed_error(step.name, recorded.error)
            if recorded.output is None:
                return None  # type: ignore[return-value]
            try:
                return codec.result_decoder(return_type)(recorded.output)  # type: ignore[no-any-return]
            except msgspec.ValidationError:
                return codec.decode_result(recorded.output, return_type, what=self._result_of(step))  # type: ignore[no-any-return]

        return self._calls.call(reservation, execute, replayed, rerun_failures=True)

    def _result_of(self, step: Step[Any, Any]) -> str:
        """Names a step's result in errors."""
        return f"result of step {step.name!r} (job {self.job.id})"

    def run(
        self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]:
        """Run ``fn(*args, **kwargs)`` as a step named ``name`` (the explicit form of
        ``@flowq.step``)."""
        return self.run_step(Step(fn, name=name), args, kwargs)

    # -- deterministic values -------------------------------------------------------

    def now(self) -> Coroutine[Any, Any, datetime]:
        """The current time, recorded the first time (the same on every replay)."""
        return self._value("@now", self._calls.clock.now, datetime)

    def uuid(self) -> Coroutine[Any, Any, uuid_module.UUID]:
        """A random UUID, recorded the first time."""
        return self._value("@uuid", uuid_module.uuid4, uuid_module.UUID)

    def random(self) -> Coroutine[Any, Any, float]:
        """A random float in [0, 1), recorded the first time."""
        return self._value("@random", random_module.random, float)

    def _value(self, name: str, make: Callable[[], Any], type_: Any) -> Coroutine[Any, Any, Any]:
        return self._calls.call(
            self._reserve(name, f"ctx.{name[1:]}()"),
            lambda _started: Done(codec.encode(make(), what=name)),
            lambda recorded: codec.decode(recorded.output, type_),
        )

    async def patched(self, change_id: str) -> bool:
        """Whether this job runs the code after change ``change_id``.

        True for jobs that reach this point after the change was deployed; False for
        jobs that passed it before (their history was made by the old code). Keep
        both branches until no old job is in flight.
        """
        self._require_durable("ctx.patched()")
        if not isinstance(change_id, str) or not change_id:
            raise ValidationError(f"change ids are non-empty strings, got {change_id!r}")
        marker = (await self._calls.loaded()).patched(f"@patch:{change_id}")
        if marker is None:
            return False
        return await self._calls.call(marker, lambda _started: Done("true"), lambda _r: True)

    # -- waits ----------------------------------------------------------------------

    def sleep(self, duration: Duration) -> Coroutine[Any, Any, None]:
        """Wait durably: the job parks as ``waiting`` and resumes after ``duration``.

        The wake time is stored the first time, so running the handler again never
        restarts the timer. Sub-second durations are fine.
        """
        delta = parse_duration(duration, name="sleep duration")
        return self._timer(lambda now: now + delta)

    def wait_for(
        self,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        weeks: float = 0,
        months: int = 0,
        years: int = 0,
    ) -> Coroutine[Any, Any, None]:
        """Wait durably for the sum of the given amounts (months and years are
        calendar months, the day clamped to the month's length)."""
        for label, amount in (("months", months), ("years", years)):
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise ValidationError(f"{label} must be an integer, got {amount!r}")
        delta = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days, weeks=weeks)
        total_months = months + 12 * years
        if (
            total_months < 0
            or (total_months == 0 and delta <= timedelta(0))
            or delta < timedelta(0)
        ):
            raise ValidationError("wait_for needs a positive amount of time")
        return self._timer(lambda now: wake_time(now, months=total_months, delta=delta))

    def wait_until(self, moment: datetime) -> Coroutine[Any, Any, None]:
        """Wait durably until an aware datetime (a past one does not wait)."""
        when = to_utc(moment, name="wait_until")
        return self._timer(lambda _now: when)

    def _timer(self, wake: Callable[[datetime], datetime]) -> Coroutine[Any, Any, None]:
        """Record the wake time the first time; park until it (on every run before it)."""

        async def replayed(recorded: RecordedCall) -> None:
            until = codec.decode(recorded.output, datetime)
            if until > self._calls.clock.now():
                await self._calls.suspend(until, None)

        return self._calls.call(
            self._reserve("@timer", "a durable wait"),
            lambda now: Done(codec.encode(wake(now), what="wake time")),
            replayed,
        )

    # -- tokens ---------------------------------------------------------------------

    def create_token(
        self,
        *,
        timeout: Duration | None = None,
        tags: Sequence[str] = (),
    ) -> Coroutine[Any, Any, Token]:
        """Create a token (recorded once: a replay returns the same token).

        Args:
            timeout: After this, ``wait_for_token`` returns ``ok=False`` ("timed out").
            tags: Labels for finding it later.
        """
        reservation = self._reserve("@token", "ctx.create_token()")
        limit = parse_optional_duration(timeout, name="token timeout")
        labels = checked_tags(tags)

        async def create(now: datetime) -> Done:
            new = NewToken(
                id=new_token_id(),
                tags=labels,
                timeout_at=None if limit is None else now + limit,
            )
            created = await self._store.create_token(new, self._lease)
            if created is None:
                raise LeaseLost
            return Done(codec.encode(new.id, what="token"), value=created)

        return self._calls.call(reservation, create, self._recorded_token)

    async def _recorded_token(self, recorded: RecordedCall) -> Token:
        token = await self._store.get_token(codec.decode(recorded.output))
        if token is None:
            raise TokenError(f"the token recorded by job {self.job.id} no longer exists")
        return token

    def wait_for_token(self, token: Token | str) -> Coroutine[Any, Any, TokenResult]:
        """Wait durably until the token is completed (``ok=True`` with its output) or
        times out (``ok=False``, ``error`` says "timed out"). The job holds no slot
        while it waits."""
        reservation = self._reserve("@wait_token", "ctx.wait_for_token()")
        token_id = token.id if isinstance(token, Token) else token

        async def settle(_started: datetime) -> Done | Wait:
            found = await self._store.settle_token(token_id)
            if found is None:
                raise TokenError(f"there is no token {token_id!r}")
            if found.status is TokenStatus.WAITING:
                return Wait(found.timeout_at, token_id)
            if found.status is TokenStatus.COMPLETED:
                result = TokenResult(ok=True, output=found.output)
            else:
                result = TokenResult(ok=False, error=f"timed out at {found.timeout_at}")
            return Done(codec.encode(result, what="token result"))

        return self._calls.call(
            reservation,
            settle,
            lambda recorded: codec.decode(recorded.output, TokenResult),
            waits=True,
        )

    # -- children -------------------------------------------------------------------

    def start_child(
        self, workflow: Workflow[Any, Any], payload: Any, **options: Any
    ) -> Coroutine[Any, Any, int]:
        """Start a child job (recorded once); return its id. Takes ``start()``'s options."""
        return self._start_child_at(self._reserve_child_start(workflow), workflow, payload, options)

    def call(
        self, workflow: Workflow[Any, R], payload: Any, **options: Any
    ) -> Coroutine[Any, Any, R]:
        """Start a child job and wait durably for its output (the parent holds no slot
        while it waits). Both positions are taken when this is called.

        The outcome is recorded in this job's history, a failure with a snapshot of
        the child, so a replay never needs the child's row.

        Raises:
            JobFailedError: The child failed for good or was cancelled; ``exc.job`` is
                the child as it was when it finished (the same on every replay).
            ContextError: The child was deleted before its outcome was recorded.
        """
        start = self._reserve_child_start(workflow)
        outcome = self._calls.reserve("@child_result")

        async def run() -> R:
            self._calls.untrack(outcome)
            started = self._start_child_at(start, workflow, payload, options, outcome.seq)
            return await self._child_outcome(outcome, await started)  # type: ignore[no-any-return]

        return self._calls.track(outcome, run())

    def _reserve_child_start(self, workflow: Workflow[Any, Any]) -> Reservation:
        self._require_durable("ctx.start_child()")
        if self._start_child is None:
            raise ContextError("child workflows need a worker that can add jobs")
        return self._calls.reserve(f"@child:{workflow.name}")

    def _start_child_at(
        self,
        reservation: Reservation,
        workflow: Workflow[Any, Any],
        payload: Any,
        options: dict[str, Any],
        outcome_seq: int | None = None,
    ) -> Coroutine[Any, Any, int]:
        """Add the child (or find the one recorded at ``reservation``); return its id."""
        start = self._start_child
        assert start is not None  # noqa: S101 (checked when the position was taken)

        async def add(_started: datetime) -> Done:
            child_id = await start(
                workflow,
                payload,
                options,  # type: ignore[arg-type]
                self.job.id,
                reservation.seq,
                outcome_seq,
            )
            return Done(str(child_id))

        return self._calls.call(
            reservation, add, lambda recorded: int(codec.decode(recorded.output))
        )

    async def _child_outcome(self, reservation: Reservation, child_id: int) -> Any:
        """The child's output, recorded at ``reservation`` the first time it is known.

        Raises:
            JobFailedError: The child failed for good or was cancelled.
            ContextError: The child was deleted before its outcome was recorded.
        """

        async def check(_started: datetime) -> Done | Failed | Wait:
            child = await self._store.get_job(child_id)
            if child is None:
                raise ContextError(
                    f"child job {child_id} of job {self.job.id} is gone: it was deleted "
                    "before its outcome was recorded, so there is nothing to wait for"
                )
            if not _finished(child):
                return Wait(None, replay.child_wait_id(child_id))
            if child.status is JobStatus.COMPLETED:
                return Done(codec.encode(child.output, what="child output"))
            return Failed(failures.child_failure_json(child))

        async def replayed(recorded: RecordedCall) -> Any:
            if recorded.error is None:
                return codec.decode(recorded.output)
            raise await self._recorded_child_failure(recorded.error, child_id)

        return await self._calls.call(reservation, check, replayed, waits=True)

    async def _recorded_child_failure(self, error: str, child_id: int) -> FlowqError:
        """The error a recorded child failure raises: JobFailedError with the recorded
        snapshot; for a record of an older version (only ``{"job_id": N}``), with the
        child's row, or ContextError if that row was deleted."""
        failure = failures.child_failure(error)
        if failure.job is not None:
            return JobFailedError(failure.job)
        child = await self._store.get_job(child_id)
        if child is None:
            return ContextError(
                f"child job {child_id} of job {self.job.id} failed and is gone: this job "
                "recorded only the child's id (before flowq recorded child failures in "
                "full), and the child was deleted since (cleanup_old_jobs)"
            )
        return JobFailedError(child)

    # -- helpers --------------------------------------------------------------------

    def _reserve(self, name: str, what: str) -> Reservation:
        """Take the next position for a durable call named ``name`` (``what`` names
        the operation in the error a sync workflow gets)."""
        self._require_durable(what)
        return self._calls.reserve(name)

    def _require_durable(self, what: str) -> None:
        if not self._durable:
            raise ContextError(
                f"{what} needs an async def workflow: a sync workflow runs in a thread and "
                "cannot await durable operations"
            )


async def _raise(error: Exception) -> NoReturn:
    """Raise ``error`` when awaited (where an operation's errors surface)."""
    raise error


def _finished(job: Job) -> bool:
    return job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED) or (
        job.status is JobStatus.FAILED and job.next_attempt_at is None
    )
