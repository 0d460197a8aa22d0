"""``WorkflowEnvironment``: the real engine and worker, in memory, under a fake clock.

A test starts jobs, runs everything runnable, skips time to the timers its workflows
set (sleeps, ``wait_until``, retry backoff), advances the clock past token timeouts,
completes tokens and looks at what happened, in milliseconds of wall time. The same
test runs on SQLite or PostgreSQL when given a store or a URL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, Unpack

import flowq
from flowq import codec, step_tries
from flowq.durations import Duration, parse_duration
from flowq.errors import FlowqError, JobFailedError, ValidationError
from flowq.models import Job, JobEvent, JobStatus, StepRecord, Token, TokenStatus
from flowq.options import JobOptions
from flowq.registry import Registry, Workflow
from flowq.steps import Step
from flowq.store.base import Store
from flowq_testing.clock import FakeClock
from flowq_testing.memory import InMemoryStore

__all__ = ["JobNotFinishedError", "TimeSkipLimitError", "WorkflowEnvironment"]

_UNSET: Any = object()


class TimeSkipLimitError(FlowqError):
    """``run_until_idle`` skipped time more often than ``max_time_skips`` allows: a
    workflow probably waits in an endless loop."""


class JobNotFinishedError(FlowqError):
    """``env.result()`` of a job that is still pending, running or waiting once
    everything runnable has run (it waits for a token, a child, or a later time)."""


class WorkflowEnvironment:
    """Workflows run by the real engine and worker on a store (in memory by default)
    under a :class:`FakeClock`, an async context manager (its methods also work
    without ``async with``: the App opens on first use).

    Args:
        workflows: Workflows to register (on ``registry``, or a new one).
        registry: The registry to run (default: a new one holding ``workflows``, or
            ``flowq.default_registry`` when neither is given).
        store: An ``InMemoryStore`` (default), any store, or a database URL (its
            schema is created if missing).
        clock: The fake clock (default: a new one at 2030-01-01 00:00 UTC).
        max_time_skips: How often one ``run_until_idle`` may skip time before it
            raises :class:`TimeSkipLimitError`.
        concurrency: Jobs the environment's worker runs at once.
    """

    def __init__(
        self,
        workflows: Sequence[Workflow[Any, Any]] | None = None,
        *,
        registry: Registry | None = None,
        store: Store | str | None = None,
        clock: FakeClock | None = None,
        max_time_skips: int = 1000,
        concurrency: int = 50,
    ) -> None:
        if registry is None:
            registry = flowq.default_registry if workflows is None else Registry()
        for workflow in workflows or ():
            if not isinstance(workflow, Workflow):
                raise ValidationError(f"workflows= takes workflow objects, got {workflow!r}")
            registry.add(workflow)
        self.registry = registry
        self.clock = clock if clock is not None else FakeClock()
        if store is None:
            store = InMemoryStore(clock=self.clock)
        if isinstance(store, str):
            self.app = flowq.App(store, registry=registry, clock=self.clock, auto_migrate=True)
        else:
            self.app = flowq.App(store=store, registry=registry, clock=self.clock)
        self.max_time_skips = max_time_skips
        self._worker = self.app.create_worker(concurrency=concurrency, worker_id="flowq-env")
        self._mocks: dict[str, Callable[..., Any]] = {}

    async def __aenter__(self) -> Self:
        await self.app.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.app.close()

    # -- starting and finishing ------------------------------------------------------

    async def start(
        self, workflow: Workflow[Any, Any], payload: Any, /, **options: Unpack[JobOptions]
    ) -> int:
        """Add a job (as ``App.start``); it runs at the next ``run_until_idle``."""
        return await self.app.start(workflow, payload, **options)

    async def result(self, job_id: int) -> Any:
        """Run what is runnable, then return the job's output.

        Raises:
            JobFailedError: The job failed for good or was cancelled.
            JobNotFinishedError: It still waits (a token, a child, a later time).
        """
        await self.run_until_idle()
        job = await self.job(job_id)
        if job.status is JobStatus.COMPLETED:
            return job.output
        if job.status is JobStatus.CANCELLED or (
            job.status is JobStatus.FAILED and job.next_attempt_at is None
        ):
            raise JobFailedError(job)
        raise JobNotFinishedError(
            f"job {job_id} is {job.status.value} once everything runnable ran"
            + (f" (waiting for {job.wait_token_id})" if job.wait_token_id else "")
        )

    # -- running and moving time -----------------------------------------------------

    async def run_until_idle(self) -> None:
        """Run every runnable job, skipping time to the timers the workflows set
        themselves (durable sleeps, ``wait_until``, retry backoff), until none is
        left. Token timeouts and delayed jobs come due only through :meth:`advance`.

        Raises:
            TimeSkipLimitError: More than ``max_time_skips`` skips were needed.
        """
        for _ in range(self.max_time_skips + 1):
            await self._run_due()
            wake = await self._next_own_timer()
            if wake is None:
                return
            self.clock.set(max(wake, self.clock.now()))
        sleepers = [job.id for job in await self._own_timers()]
        raise TimeSkipLimitError(
            f"run_until_idle skipped time {self.max_time_skips} times and jobs "
            f"{sleepers[:10]} still wait for timers: an endless loop of waits? "
            "(raise WorkflowEnvironment(max_time_skips=...) if it is not)"
        )

    async def advance(self, duration: Duration) -> None:
        """Move the clock forward by ``duration``, running what comes due on the way in
        time order (timers, retries, token timeouts, delayed jobs, cron ticks of the
        workflows' ``@schedule`` declarations and of ``add_cron_job``), each at its
        time: a schedule's every tick on the way is enqueued once, and its job runs
        then."""
        target = self.clock.now() + parse_duration(duration, name="advance")
        while True:
            await self._run_due()
            wake = await self.app.store.next_ready_at(None, after=self.clock.now())
            tick = await self._next_tick()
            if tick is not None and (wake is None or tick < wake):
                wake = tick
            if wake is None or wake > target:
                break
            self.clock.set(wake)
            await self.app.expire_timed_out_tokens()
        self.clock.set(target)
        await self.app.expire_timed_out_tokens()
        await self._run_due()

    async def _run_due(self) -> None:
        token = step_tries.step_mocks.set(dict(self._mocks))
        try:
            await self._worker.run_until_idle()
        finally:
            step_tries.step_mocks.reset(token)

    async def _next_tick(self) -> datetime | None:
        active = await self.app.list_cron_jobs("active")
        return min((schedule.next_run_at for schedule in active), default=None)

    async def _own_timers(self) -> list[Job]:
        """Jobs parked on a timer of their own (no token), or failed awaiting a retry."""
        waiting = await self.app.get_jobs(status="waiting", limit=None)
        retrying = await self.app.get_jobs(status="failed", limit=None)
        return [
            job
            for job in [*waiting, *retrying]
            if (job.status is JobStatus.WAITING and job.wait_until and not job.wait_token_id)
            or (job.status is JobStatus.FAILED and job.next_attempt_at is not None)
        ]

    async def _next_own_timer(self) -> datetime | None:
        times = [job.wait_until or job.next_attempt_at for job in await self._own_timers()]
        return min((t for t in times if t is not None), default=None)

    # -- tokens and mocks ------------------------------------------------------------

    async def complete_token(self, token: Token | str, output: Any = None) -> Token:
        """Complete a token (as ``App.complete_token``); its job runs at the next
        ``run_until_idle``."""
        return await self.app.complete_token(token.id if isinstance(token, Token) else token,
                                             output)  # fmt: skip

    async def tokens(
        self, job_id: int | None = None, status: TokenStatus | str | None = None
    ) -> list[Token]:
        """The tokens the environment's jobs created (of one job, of one status), in
        the order they were created."""
        wanted = None if status is None else TokenStatus(status)
        jobs = [await self.job(job_id)] if job_id is not None else await self.jobs()
        found = []
        for job in sorted(jobs, key=lambda j: j.id):
            for call in await self.app.store.load_history(job.id):
                if call.name != "@token" or call.output is None:
                    continue
                token = await self.app.get_token(codec.decode(call.output))
                if token is not None and (wanted is None or token.status is wanted):
                    found.append(token)
        return found

    def mock_step(
        self,
        step: Step[Any, Any] | str,
        replacement: Callable[..., Any] | None = None,
        *,
        return_value: Any = _UNSET,
    ) -> None:
        """Replace a step's body in every job of the environment: by ``replacement``
        (sync or async, called with the step's arguments, once per call, never on
        replay) or by a function returning ``return_value``. The result is recorded
        and replayed like the real body's; steps not mocked run their real body.
        """
        name = step.name if isinstance(step, Step) else step
        if not isinstance(name, str) or not name:
            raise ValidationError(f"mock_step takes a step or a step name, got {step!r}")
        if (replacement is None) == (return_value is _UNSET):
            raise ValidationError("mock_step takes a replacement or a return_value (one)")
        if replacement is None:
            value = return_value

            def replacement(*_args: Any, **_kwargs: Any) -> Any:
                return value

        self._mocks[name] = replacement

    # -- looking -----------------------------------------------------------------------

    async def jobs(self) -> list[Job]:
        """Every job, newest first."""
        return await self.app.get_jobs(limit=None)

    async def job(self, job_id: int) -> Job:
        """The job (it must exist)."""
        job = await self.app.get_job(job_id)
        if job is None:
            raise ValidationError(f"there is no job {job_id}")
        return job

    async def steps(self, job_id: int) -> list[StepRecord]:
        """The job's recorded durable calls, in call order."""
        return await self.app.get_job_steps(job_id)

    async def events(self, job_id: int) -> list[JobEvent]:
        """The job's events, oldest first."""
        return await self.app.get_job_events(job_id)

    async def export_job(self, job_id: int) -> str:
        """The job's history as JSON (``App.export_job``), e.g. for ``replay``."""
        return await self.app.export_job(job_id)

    def now(self) -> datetime:
        """The environment's current (fake) time."""
        return self.clock.now()
