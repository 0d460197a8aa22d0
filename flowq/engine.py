"""Running one claimed job: decode the payload, call the handler, record the outcome.

The engine reaches storage only through the one :class:`flowq.store.base.Store` it is
given (the worker gives it a :class:`flowq.store.batching.BatchingStore`, so that
outcomes and step results of concurrent jobs share commits): a step result goes
ctx -> durable call -> ``store.record_calls``. It also starts the children that
``ctx.start_child`` and ``ctx.call`` ask for.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import time
import traceback as traceback_module
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import msgspec

from flowq import current, job_log
from flowq.clock import Clock
from flowq.context import Context, JobInfo
from flowq.deadline import Deadline
from flowq.durable import (
    Calls,
    LeaseLost,
    Suspend,
    effective,
    persist,
)
from flowq.errors import NonDeterminismError, NonRetryableError
from flowq.failures import exception_message, exception_name, storable_text
from flowq.hooks import HookEvent, Hooks
from flowq.isolated import IsolatedFailure, run_in_process
from flowq.models import ErrorEntry, FailureReason
from flowq.options import JobOptions, build_child_job, declared_values
from flowq.registry import Registry, Workflow
from flowq.replay import Reservation
from flowq.store.base import ClaimedJob, Completion, JobHeader, Release, Store

__all__ = ["Engine", "RunningJob"]

log = logging.getLogger("flowq.worker")


@dataclass(slots=True)
class RunningJob:
    """A job a worker is running: what it needs to cancel or release it."""

    claimed: ClaimedJob
    definition: Workflow[Any, Any] | None
    """The registered workflow (None: this worker has no handler for it)."""
    context: Context
    calls: Calls
    scope: anyio.CancelScope
    stop_reason: str | None = None
    """Why the worker cancelled it: ``"cancelled"`` (job cancelled or lease lost) or
    ``"shutdown"`` (drain timeout); None while it runs on its own."""
    on_handler_done: Callable[[], None] | None = None
    """Called once the handler has returned or raised, before its outcome is written
    (the worker then counts the job as no longer running user code)."""


class Engine:
    """Runs claimed jobs and writes what happened, through the store only.

    Args:
        store: Where everything goes (outcomes, step results, children).
        registry: Where a job's workflow is looked up.
        clock: For retry times and error timestamps.
        hooks: In-process callbacks.
    """

    def __init__(self, store: Store, registry: Registry, clock: Clock, hooks: Hooks) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.hooks = hooks

    def prepare(self, claimed: ClaimedJob) -> RunningJob:
        """The running-job record (workflow, context, cancel scope) of a claimed job."""
        job = claimed.job
        definition = self.registry.get(job.workflow)
        info = JobInfo(
            id=job.id,
            workflow=job.workflow,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            tags=job.tags,
            group=job.group,
        )
        calls = Calls(
            job_id=job.id,
            attempt=job.attempts,
            lease=claimed.lease,
            store=self.store,
            clock=self.clock,
            # Nothing recorded when the job was claimed: nothing to load.
            history_loaded=not claimed.has_history,
        )
        context = Context(
            info,
            claimed.lease,
            self.store,
            calls,
            durable=definition is None or definition.is_async,
            start_child=self.start_child,
        )
        return RunningJob(claimed, definition, context, calls, anyio.CancelScope())

    async def start_child(
        self,
        workflow: Workflow[Any, Any],
        payload: Any,
        options: JobOptions,
        parent_id: int,
        position: int,
        outcome_position: int | None = None,
    ) -> int:
        """Add the child job a parent starts at ``position`` (idempotent per parent and
        position, so a parent that replays never starts it twice); return its id."""
        child = build_child_job(
            workflow,
            payload,
            options,
            self.clock.now(),
            parent_id=parent_id,
            position=position,
            outcome_position=outcome_position,
        )
        if child.dead_letter is not None:
            self.registry.require(child.dead_letter)
        [child_id] = await self.store.add_jobs([child])
        return child_id

    async def run(self, running: RunningJob) -> datetime | None:
        """Run the handler and record completion or failure (not cancellation: the
        worker cancels ``running.scope`` and handles that itself).

        Never raises an :class:`Exception`: when the outcome cannot be recorded (for
        another reason than an unreachable database, which is waited out), the error
        is logged and a failure saying so is recorded instead; when even that cannot
        be written, the job is handed back, or left for lease reclaim.

        Returns:
            When a job this run touched becomes runnable again, if it is known: the
            job's wake time when it parked, its retry time when it failed, now when it
            was a child whose end made its parent runnable; else None.
        """
        try:
            return await self._run(running)
        except Exception as exc:
            return await self._unrecorded(running.claimed, exc)

    async def _run(self, running: RunningJob) -> datetime | None:
        claimed, definition = running.claimed, running.definition
        job = claimed.job
        began = time.perf_counter()  # for the log line (anyio.current_time costs ~4 us)
        job_log.started(job, resumed=claimed.resumed)
        await self._emit("job:started", job)
        if job.unreadable is not None:
            log.error("flowq: job %s cannot be run and fails for good: %s", job.id, job.unreadable)
            return await self._fail(
                claimed,
                f"job {job.id} cannot be run: {job.unreadable}",
                "UnreadableJobError",
                FailureReason.HANDLER_ERROR,
                retry=False,
            )
        if definition is None:
            return await self._fail(
                claimed,
                f"no workflow named {job.workflow!r} is registered in this worker",
                "UnknownWorkflowError",
                FailureReason.NO_HANDLER,
            )
        if job.unresolved_options:
            if not await self._resolve_options(running, definition):
                log.warning("flowq: job %s was taken from this worker while it ran", job.id)
                return None
            claimed = running.claimed
            job = claimed.job
        try:
            payload = msgspec.json.decode(claimed.payload_json, type=definition.payload_type)
        except msgspec.ValidationError as exc:
            return await self._fail(
                claimed,
                f"the stored payload does not fit {definition.payload_type!r}: {exc}",
                "PayloadError",
                FailureReason.HANDLER_ERROR,
                retry=False,
            )
        except Exception as exc:  # nested too deep (RecursionError), a damaged row...
            log.error("flowq: the stored payload of job %s cannot be decoded: %r", job.id, exc)
            return await self._fail(
                claimed,
                f"the stored payload cannot be decoded: {exception_name(exc)}: "
                f"{exception_message(exc)}",
                "PayloadError",
                FailureReason.HANDLER_ERROR,
                retry=False,
            )
        deadline = Deadline(job.timeout, job.id)
        running.context.deadline = deadline
        token = current.bind(running.context)
        try:
            if deadline.at is None:
                returned = await self._call(definition, payload, running)
            else:
                returned = await self._call_before(deadline, definition, payload, running)
            if deadline.expired:
                return await self._fail(
                    claimed,
                    f"attempt {job.attempts} ran longer than its timeout of "
                    f"{_seconds(job.timeout)}" + (" (prolonged)" if deadline.moved else ""),
                    "TimeoutError",
                    FailureReason.TIMEOUT,
                )
            forgotten = running.calls.unawaited()
            if forgotten:
                message = _unawaited_message(job.id, forgotten)
                return await self._fail(
                    claimed, message, "flowq.errors.UnawaitedCallError", FailureReason.HANDLER_ERROR
                )
            output = running.context.output_for(returned)
        except BaseException as raised:
            # However the handler's end is wrapped (anyio task groups raise groups).
            ended = effective(raised)
            if isinstance(ended, Suspend):
                return await self._suspend(claimed, ended)
            if isinstance(ended, LeaseLost):
                log.warning("flowq: job %s was taken from this worker while it ran", job.id)
                return None
            if isinstance(ended, NonDeterminismError):
                return await self._fail(
                    claimed,
                    str(ended),
                    "NonDeterminismError",
                    FailureReason.NONDETERMINISM,
                    retry=False,
                )
            if isinstance(ended, NonRetryableError):
                return await self._fail(
                    claimed,
                    exception_message(ended),
                    exception_name(ended),
                    FailureReason.HANDLER_ERROR,
                    retry=False,
                    traceback=_traceback(ended),
                )
            if isinstance(ended, IsolatedFailure):  # raised in the handler's own process
                return await self._fail(
                    claimed,
                    ended.message,
                    ended.type_name,
                    FailureReason.HANDLER_ERROR,
                    retry=ended.retryable,
                    traceback=ended.details,
                )
            if isinstance(ended, Exception):
                return await self._fail(
                    claimed,
                    exception_message(ended),
                    exception_name(ended),
                    FailureReason.HANDLER_ERROR,
                    traceback=_traceback(ended),
                )
            raise
        finally:
            current.reset(token)
            running.calls.unawaited()  # closed: a run that raised leaves no coroutine behind
            if running.on_handler_done is not None:
                running.on_handler_done()
        [done] = await persist(
            lambda: self.store.complete_jobs([Completion(claimed.lease, output)]),
            f"the completion of job {job.id}",
        )
        if not done:
            log.warning(
                "flowq: job %s finished but the completion was not recorded by this run "
                "(its lease ended, or a retried write had already committed)",
                job.id,
            )
            return None
        job_log.completed(job, time.perf_counter() - began)
        await self._emit("job:completed", job)
        return self._parent_ready(job)

    def _parent_ready(self, job: JobHeader) -> datetime | None:
        """A child that ended has made its waiting parent runnable now."""
        return self.clock.now() if job.parent_job_id is not None else None

    async def _suspend(self, claimed: ClaimedJob, wait: Suspend) -> datetime | None:
        job = claimed.job
        parked = await persist(
            lambda: self.store.suspend_job(
                claimed.lease, wait_until=wait.wait_until, token_id=wait.wait_id
            ),
            f"the wait of job {job.id}",
        )
        if not parked:
            log.warning("flowq: job %s reached a wait but its lease was lost", job.id)
            return None
        job_log.waiting(job, until=wait.wait_until, on=wait.wait_id)
        await self._emit("job:waiting", job)
        return wait.wait_until

    async def _call_before(
        self,
        deadline: Deadline,
        definition: Workflow[Any, Any],
        payload: Any,
        running: RunningJob,
    ) -> Any:
        """Call the handler; when ``deadline`` fires, cancel it (``deadline.expired``)."""
        returned: Any = None
        ended: BaseException | None = None
        async with anyio.create_task_group() as watcher:
            handler = anyio.CancelScope()
            watcher.start_soon(deadline.watch, handler)
            with handler:
                try:
                    returned = await self._call(definition, payload, running)
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:  # raised below, outside the task group
                    ended = exc
            watcher.cancel_scope.cancel()
        if ended is not None:
            raise ended
        return returned

    async def _resolve_options(self, running: RunningJob, definition: Workflow[Any, Any]) -> bool:
        """Give a job enqueued where its workflow was unknown the options the workflow
        declares (those not given at enqueue), in the database and in ``running``;
        False when the lease is no longer held."""
        claimed = running.claimed
        names = claimed.job.unresolved_options
        values = declared_values(definition, names)
        if not await self.store.resolve_options(claimed.lease, values):
            return False
        header = dataclasses.replace(
            claimed.job,
            unresolved_options=(),
            **{name: value for name, value in values.items() if name != "dead_letter"},
        )
        running.claimed = dataclasses.replace(claimed, job=header)
        running.context.job = dataclasses.replace(
            running.context.job, max_attempts=header.max_attempts
        )
        log.debug(
            "flowq: job %s takes %s from workflow %r", header.id, ", ".join(names), definition.name
        )
        return True

    async def _call(self, definition: Workflow[Any, Any], payload: Any, running: RunningJob) -> Any:
        if running.claimed.job.force_kill_on_timeout:
            job_info, payload_json = running.context.job, running.claimed.payload_json
            return await run_in_process(definition, payload_json, job_info)
        args = (payload, running.context) if definition.takes_context else (payload,)
        if not definition.is_async:
            return await anyio.to_thread.run_sync(
                functools.partial(definition.fn, *args), abandon_on_cancel=True
            )
        try:
            return await definition.fn(*args)
        finally:
            # Steps left running by asyncio.gather when a sibling raised finish and
            # are recorded before the job parks or fails.
            await running.calls.settle()

    async def _fail(
        self,
        claimed: ClaimedJob,
        message: str,
        type_name: str,
        reason: FailureReason,
        *,
        retry: bool = True,
        traceback: str | None = None,
    ) -> datetime | None:
        job = claimed.job
        now = self.clock.now()
        retry_at = None
        if retry and job.attempts < job.max_attempts:
            try:
                retry_at = now + job.retry.wait_after(job.attempts, random.random())  # noqa: S311
            except OverflowError:
                log.error("flowq: job %s fails for good: its retry time is out of range", job.id)
                message += " (not retried: the time of the next attempt is out of range)"
        error = ErrorEntry(
            message=storable_text(message),
            type=storable_text(type_name),
            at=now,
            attempt=job.attempts,
            traceback=None if traceback is None else storable_text(traceback),
        )
        recorded = await persist(
            lambda: self.store.fail_job(claimed.lease, error, reason=reason, retry_at=retry_at),
            f"the failure of job {job.id}",
        )
        if not recorded:
            log.warning("flowq: job %s failed but its lease was lost; failure discarded", job.id)
            return None
        job_log.failed(job, error, retry_at)
        await self._emit("job:failed", job, error=error, will_retry=retry_at is not None)
        return self._parent_ready(job) if retry_at is None else retry_at

    async def _unrecorded(self, claimed: ClaimedJob, exc: Exception) -> datetime | None:
        """The outcome of a run could not be recorded: log it and record a failure that
        says so (retried if attempts remain); when that fails too, hand the job back."""
        job = claimed.job
        log.error(
            "flowq: the outcome of job %s (workflow %r, attempt %d) could not be recorded; "
            "recording a failure instead",
            job.id, job.workflow, job.attempts, exc_info=exc,
        )  # fmt: skip
        try:
            return await self._fail(
                claimed,
                "flowq could not record the outcome of this attempt: "
                f"{exception_name(exc)}: {exception_message(exc)}",
                "OutcomeNotRecorded",
                FailureReason.HANDLER_ERROR,
            )
        except Exception as again:
            log.error(
                "flowq: job %s: its failure could not be recorded either (%s: %s)",
                job.id, exception_name(again), exception_message(again)[:500],
            )  # fmt: skip
        await self._hand_back(claimed)
        return None

    async def _hand_back(self, claimed: ClaimedJob) -> None:
        """Put a job whose outcome cannot be written back to pending (its attempt
        counted) while attempts remain; else leave it for lease reclaim, which fails
        it for good once its lock is older than the lease timeout."""
        job = claimed.job
        if job.attempts < job.max_attempts:
            try:
                released = await persist(
                    lambda: self.store.release_jobs([Release(claimed.lease, False)]),
                    f"the hand-back of job {job.id}",
                )
            except Exception as exc:
                log.error("flowq: job %s could not be handed back either (%s)", job.id, exc)
            else:
                if released:
                    log.error("flowq: job %s was handed back for its next attempt", job.id)
                return
        log.error(
            "flowq: job %s stays processing until its lease expires and it is reclaimed",
            job.id,
        )

    async def _emit(
        self,
        event: str,
        job: JobHeader,
        *,
        error: ErrorEntry | None = None,
        will_retry: bool | None = None,
    ) -> None:
        if not self.hooks.wants(event):
            return
        await self.hooks.emit(
            HookEvent(
                event=event,
                job_id=job.id,
                workflow=job.workflow,
                attempt=job.attempts,
                error=error,
                will_retry=will_retry,
            )
        )


def _seconds(value: timedelta | None) -> str:
    return "none" if value is None else f"{value.total_seconds():g}s"


def _unawaited_message(job_id: int, calls: list[Reservation]) -> str:
    """What a forgotten ``await`` did, naming the calls."""
    named = ", ".join(f"{call.name!r} (position {call.seq})" for call in calls)
    return (
        f"job {job_id} returned while it had not awaited {named}: a step or durable call "
        "that is not awaited does nothing (add the missing `await`)"
    )


def _traceback(exc: BaseException) -> str | None:
    """The formatted traceback of a handler's exception (None if it cannot be had)."""
    try:
        return "".join(traceback_module.format_exception(exc))
    except Exception:  # a broken __str__ or frame: the message is stored anyway
        return None
