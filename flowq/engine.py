"""Running one claimed job: decode the payload, call the handler, record the outcome."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import msgspec

from flowq import context as context_module
from flowq.clock import Clock
from flowq.context import Context, JobInfo, StartChild
from flowq.durable import (
    Calls,
    LeaseLost,
    Record,
    Suspend,
    effective,
    exception_message,
    exception_name,
    persist,
)
from flowq.errors import NonDeterminismError
from flowq.hooks import HookEvent, Hooks
from flowq.models import ErrorEntry, FailureReason
from flowq.registry import Workflow
from flowq.store.base import ClaimedJob, Completion, JobHeader, Store

__all__ = ["Engine", "RunningJob"]

log = logging.getLogger("flowq.worker")

Complete = Callable[[Completion], Awaitable[bool]]


@dataclass(slots=True)
class RunningJob:
    """A job a worker is running: what it needs to cancel or release it."""

    claimed: ClaimedJob
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
        store: Where outcomes go.
        clock: For retry times and error timestamps.
        hooks: In-process callbacks.
        complete: Records a completion (the worker batches them into shared commits).
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        hooks: Hooks,
        complete: Complete,
        record_call: Record,
        start_child: StartChild | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.hooks = hooks
        self.complete = complete
        self.record_call = record_call
        self.start_child = start_child
        self.on_due: Callable[[datetime], None] | None = None
        """Told when a job this engine ran becomes runnable again at a known time (a
        parent its child woke, a timer, a retry), so that an idle worker looks then."""

    def prepare(
        self, claimed: ClaimedJob, definition: Workflow[Any, Any] | None = None
    ) -> RunningJob:
        """The running-job record (context and cancel scope) of a claimed job."""
        job = claimed.job
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
            record_call=self.record_call,
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
        return RunningJob(claimed, context, calls, anyio.CancelScope())

    async def run(self, running: RunningJob, definition: Workflow[Any, Any] | None) -> None:
        """Run the handler and record completion or failure (not cancellation: the
        worker cancels ``running.scope`` and handles that itself)."""
        claimed = running.claimed
        job = claimed.job
        await self._emit("job:started", job)
        if definition is None:
            await self._fail(
                claimed,
                f"no workflow named {job.workflow!r} is registered in this worker",
                "UnknownWorkflowError",
                FailureReason.NO_HANDLER,
            )
            return
        try:
            payload = msgspec.json.decode(claimed.payload_json, type=definition.payload_type)
        except msgspec.ValidationError as exc:
            await self._fail(
                claimed,
                f"the stored payload does not fit {definition.payload_type!r}: {exc}",
                "PayloadError",
                FailureReason.HANDLER_ERROR,
                retry=False,
            )
            return
        timeout = job.timeout
        token = context_module.bind(running.context)
        try:
            if timeout is None:
                returned = await self._call(definition, payload, running)
                timed_out = False
            else:
                with anyio.move_on_after(timeout.total_seconds()) as deadline:
                    returned = await self._call(definition, payload, running)
                timed_out = deadline.cancelled_caught
            if timed_out:
                await self._fail(
                    claimed,
                    f"attempt {job.attempts} ran longer than its timeout of {_seconds(timeout)}",
                    "TimeoutError",
                    FailureReason.TIMEOUT,
                )
                return
            output = running.context.output_for(returned)
        except BaseException as raised:
            # However the handler's end is wrapped (anyio task groups raise groups).
            ended = effective(raised)
            if isinstance(ended, Suspend):
                await self._suspend(claimed, ended)
            elif isinstance(ended, LeaseLost):
                log.warning("flowq: job %s was taken from this worker while it ran", job.id)
            elif isinstance(ended, NonDeterminismError):
                await self._fail(
                    claimed,
                    str(ended),
                    "NonDeterminismError",
                    FailureReason.NONDETERMINISM,
                    retry=False,
                )
            elif isinstance(ended, Exception):
                await self._fail(
                    claimed,
                    exception_message(ended),
                    exception_name(ended),
                    FailureReason.HANDLER_ERROR,
                )
            else:
                raise
            return
        finally:
            context_module._current.reset(token)
            if running.on_handler_done is not None:
                running.on_handler_done()
        completion = Completion(claimed.lease, output)
        if await persist(lambda: self.complete(completion), f"the completion of job {job.id}"):
            self._finished(job)
            await self._emit("job:completed", job)
        else:
            log.warning(
                "flowq: job %s finished but the completion was not recorded by this run "
                "(its lease ended, or a retried write had already committed)",
                job.id,
            )

    def _finished(self, job: JobHeader) -> None:
        """A child that finished has made its waiting parent runnable: look again."""
        if job.parent_job_id is not None:
            self._due(self.clock.now())

    def _due(self, when: datetime | None) -> None:
        if when is not None and self.on_due is not None:
            self.on_due(when)

    async def _suspend(self, claimed: ClaimedJob, wait: Suspend) -> None:
        job = claimed.job
        parked = await persist(
            lambda: self.store.suspend_job(
                claimed.lease, wait_until=wait.wait_until, token_id=wait.wait_id
            ),
            f"the wait of job {job.id}",
        )
        if parked:
            self._due(wait.wait_until)
            await self._emit("job:waiting", job)
        else:
            log.warning("flowq: job %s reached a wait but its lease was lost", job.id)

    async def _call(self, definition: Workflow[Any, Any], payload: Any, running: RunningJob) -> Any:
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
    ) -> None:
        job = claimed.job
        now = self.clock.now()
        error = ErrorEntry(message=message, type=type_name, at=now, attempt=job.attempts)
        retry_at = None
        if retry and job.attempts < job.max_attempts:
            retry_at = now + job.retry.wait_after(job.attempts, random.random())  # noqa: S311
        recorded = await persist(
            lambda: self.store.fail_job(claimed.lease, error, reason=reason, retry_at=retry_at),
            f"the failure of job {job.id}",
        )
        if not recorded:
            log.warning("flowq: job %s failed but its lease was lost; failure discarded", job.id)
            return
        if retry_at is None:
            self._finished(job)
        else:
            self._due(retry_at)
        await self._emit("job:failed", job, error=error, will_retry=retry_at is not None)

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
