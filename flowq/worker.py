"""The worker: claims jobs and runs them, ``concurrency`` at a time, until stopped.

One anyio task group holds: the claim loop, ``2 * concurrency`` long-lived runner
tasks (a claimed job is handed to an idle one), the batching store's flushes
(completions and step results of concurrent jobs share one commit), the heartbeat
(refreshes locks, notices cancelled jobs), the wake-up listener (LISTEN/NOTIFY on
PostgreSQL, in-process hints everywhere) and the schedule ticker (saves the schedules
declared in code when the worker starts, then enqueues cron ticks as they come due).
The worker is built from parts (store, registry, clock, hooks); it never imports the
client.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import socket
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import anyio

from flowq import validate
from flowq.clock import Clock
from flowq.durations import Duration, parse_duration
from flowq.engine import Engine, RunningJob
from flowq.errors import DatabaseUnavailableError, ValidationError
from flowq.hooks import HookEvent, Hooks
from flowq.outages import database_outages
from flowq.registry import Registry, Workflow
from flowq.schedule_ticker import ScheduleTicker
from flowq.store.base import ClaimedJob, GroupLimits, Release, Store
from flowq.store.batching import BatchingStore
from flowq.worker_presence import Presence

__all__ = [
    "HAND_BACK_TIMEOUT",
    "RECLAIM_BATCH_SIZE",
    "UNCLAIMED_CHECK_EVERY",
    "Worker",
    "WorkerOptions",
]

log = logging.getLogger("flowq.worker")

_FOREVER = datetime.max.replace(tzinfo=UTC)

RECLAIM_BATCH_SIZE = 100
"""Most jobs of dead workers one heartbeat takes back (the next takes more)."""

UNCLAIMED_CHECK_EVERY = 30.0
"""Seconds between two looks for due jobs that no worker here can run."""

HAND_BACK_TIMEOUT = 10.0
"""Longest wait (seconds) for handing back running jobs when a worker exits abnormally."""


class WorkerOptions(TypedDict, total=False):
    """Keyword options of :class:`Worker` and ``App.create_worker`` (see Worker)."""

    concurrency: int
    batch_size: int | None
    poll_interval: Duration | None
    workflows: Sequence[Workflow[Any, Any] | str] | None
    worker_id: str | None
    group_concurrency: int | Mapping[str, int] | None
    heartbeat_interval: Duration
    lease_timeout: Duration | None
    drain_timeout: Duration
    notify: bool


class Worker:
    """Runs jobs of a registry's workflows from a store. ``App.create_worker`` makes one
    from its parts.

    Args:
        store: Where jobs are claimed and outcomes written.
        registry: The workflows (read at each claim, so later registrations count).
        clock: The time source (default: the store's).
        hooks: In-process callbacks (default: none).
        migrate: Apply missing migrations when the worker starts (``App(auto_migrate=True)``).
        concurrency: Jobs run at once.
        batch_size: Most jobs claimed per round trip (default: ``concurrency``).
        poll_interval: Longest sleep between looks for work when no wake-up
            arrives (default 0.5 s on SQLite, 0.1 s in memory, 2 s on PostgreSQL).
        workflows: Workflow objects or names to run (default: every workflow of the
            registry, read at each claim).
        worker_id: Name in locks and events (default ``<hostname>-<8 hex digits>``).
        group_concurrency: Running jobs per concurrency group across all workers:
            one limit for every group, or ``{"group": limit}``.
        heartbeat_interval: How often running jobs' locks are refreshed.
        lease_timeout: A running job whose lock has not been refreshed for this long
            belongs to a worker that died (SIGKILL, out of memory, a lost machine): at
            each heartbeat, this worker takes such jobs back (pending again, or failed
            if that was their last attempt). At least twice ``heartbeat_interval``;
            default 30 s, or three heartbeat intervals if that is longer.
        drain_timeout: On stop, how long running jobs may take to finish before
            they are cancelled and handed back.
        notify: Listen to other processes' wake-ups (PostgreSQL LISTEN/NOTIFY).
            ``False`` polls only (e.g. behind a transaction-pooling PgBouncer).
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock | None = None,
        hooks: Hooks | None = None,
        *,
        migrate: bool = False,
        concurrency: int = 10,
        batch_size: int | None = None,
        poll_interval: Duration | None = None,
        workflows: Sequence[Workflow[Any, Any] | str] | None = None,
        worker_id: str | None = None,
        group_concurrency: int | Mapping[str, int] | None = None,
        heartbeat_interval: Duration = 5,
        lease_timeout: Duration | None = None,
        drain_timeout: Duration = 30,
        notify: bool = True,
    ) -> None:
        self.registry = registry
        self.clock = clock or store.clock
        self.hooks = hooks or Hooks()
        self.migrate = migrate
        self.concurrency = _positive_int(concurrency, "concurrency")
        self.batch_size = _positive_int(batch_size or self.concurrency, "batch_size")
        default_poll = store.capabilities.poll_interval
        self.poll_interval = _seconds(poll_interval, "poll_interval", default_poll)
        self.heartbeat_interval = _seconds(heartbeat_interval, "heartbeat_interval", 5)
        default_lease = max(30.0, 3 * self.heartbeat_interval)
        self.lease_timeout = _seconds(lease_timeout, "lease_timeout", default_lease)
        if self.lease_timeout < 2 * self.heartbeat_interval:
            raise ValidationError(
                f"lease_timeout ({self.lease_timeout:g}s) must be at least twice "
                f"heartbeat_interval ({self.heartbeat_interval:g}s)"
            )
        self.drain_timeout = _drain_seconds(drain_timeout)
        self.worker_id = worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.groups = _group_limits(group_concurrency)
        self.notify = notify
        self._only = None if workflows is None else _names(workflows)
        self._batching = BatchingStore(store)
        self.store = self._batching.store
        """The store, with group commit of completions and step results."""
        self._engine = Engine(self.store, registry, self.clock, self.hooks)
        self._ticker = ScheduleTicker(self.store, registry, self.clock, self.worker_id)
        self._presence = Presence(self.store, self.clock, self.worker_id)
        self._running: dict[int, RunningJob] = {}
        self._work_hint = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stop_requested = anyio.Event()
        self._idle_until: datetime | None = None
        self._active = False
        self._failures = 0
        self._unknown_warned: set[str] = set()
        """Workflows this worker has warned about (no worker here knows them)."""
        self._idle_runners: list[_Runner] = []
        self._executing: set[int] = set()
        self._queued: collections.deque[RunningJob] = collections.deque()
        self._interrupted: list[RunningJob] = []

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} concurrency={self.concurrency}>"

    # -- public ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop` is called or the task is cancelled."""
        await self._serve(until_idle=False)

    async def run_until_idle(self) -> None:
        """Run every job that is runnable now, including ones that become runnable
        meanwhile (dependants, retries due now, dead letters), then return. Declared
        schedules are saved and ticks due now enqueued first. Never waits for a future
        run time."""
        await self._serve(until_idle=True)

    async def stop(self, drain_timeout: Duration | None = None) -> None:
        """Stop claiming; let running jobs finish for up to ``drain_timeout`` (``0``:
        not at all), then cancel the rest and hand them back so another worker takes
        them at once. Calling it again while the worker drains shortens the drain."""
        if drain_timeout is not None:
            self.drain_timeout = _drain_seconds(drain_timeout)
        self._stop_requested.set()
        self._work_hint.set()
        self._slot_freed.set()

    @property
    def running_jobs(self) -> list[int]:
        """Ids of the jobs running now."""
        return sorted(self._running)

    # -- the loops ------------------------------------------------------------------

    async def _serve(self, *, until_idle: bool) -> None:
        if self._active:
            raise ValidationError(f"{self!r} is already running")
        self._active = True
        self._stop_requested = anyio.Event()
        if self.migrate:
            await self.store.migrate()
        await self.store.open()
        self._interrupted = []
        try:
            await self._set_up(until_idle)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._batching.run)
                for _ in range(2 * self.concurrency):
                    tasks.start_soon(self._runner)
                tasks.start_soon(self._heartbeats)
                if not until_idle:
                    tasks.start_soon(self._listen)
                    tasks.start_soon(self._ticker.run)
                await self._claim_loop(until_idle=until_idle)
                await self._drain()
                tasks.cancel_scope.cancel()
        except BaseException:
            # Cancelled from outside, or failed: hand back the jobs it was running.
            await self._hand_back_interrupted()
            raise
        finally:
            await self._presence.stop()
            self._active = False
            self._idle_runners.clear()
            self._queued.clear()
            self._executing.clear()

    async def _set_up(self, until_idle: bool) -> None:
        """Record the worker's presence and set up its schedules, side by side (two
        independent round trips); the first error is raised as it is."""
        try:
            async with anyio.create_task_group() as setting_up:
                setting_up.start_soon(self._presence.start, self._workflow_names())
                setting_up.start_soon(self._set_up_schedules, until_idle)
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None

    async def _set_up_schedules(self, until_idle: bool) -> None:
        """Save the schedules declared in code; before a run until idle, also enqueue
        their due ticks (a running worker's ticker does that as it goes)."""
        await self._ticker.save_declared(self._workflow_names())
        if until_idle:
            await self._ticker.enqueue_due()

    async def _claim_loop(self, *, until_idle: bool) -> None:
        last_unclaimed_check = -math.inf
        while not self._stop_requested.is_set():
            # A slot is a handler running user code. A job whose handler has returned
            # but whose outcome is still being written holds no slot, so the next claim
            # overlaps that write; at most `concurrency` such jobs wait at once.
            free = min(
                self.concurrency - len(self._executing),
                2 * self.concurrency - len(self._running),
            )
            if free <= 0:
                # A slot freed before this look is spent: wait for the next one.
                self._slot_freed = asyncio.Event()
                await self._wait(self._slot_freed, math.inf)
                continue
            asked = min(free, self.batch_size)
            self._work_hint = asyncio.Event()
            self._slot_freed = asyncio.Event()
            workflows = self._workflow_names()
            claimed_at = self.clock.now()
            claimed = await self._claim(asked, workflows)
            if claimed is None or claimed == asked:
                continue
            if until_idle:
                # Idle only if nothing ran meanwhile either: a job that ended during
                # the claim (its slot freed) may have made a job runnable after the
                # claim looked (a parent whose child finished first), so look again.
                if not claimed and not self._running and not self._slot_freed.is_set():
                    return
                await self._wait(self._slot_freed, math.inf)
                continue
            if anyio.current_time() - last_unclaimed_check > UNCLAIMED_CHECK_EVERY:
                last_unclaimed_check = anyio.current_time()
                await self._explain_unclaimed(workflows)
            await self._idle(workflows, claimed_at)

    async def _claim(self, asked: int, workflows: list[str]) -> int | None:
        """Claim up to ``asked`` jobs and hand them to runners; return how many (None:
        the claim failed, and the back-off is waited). A call of its own, so that the
        idle claim loop keeps no reference to the jobs it claimed last."""
        try:
            claimed = await self.store.claim_jobs(self.worker_id, asked, workflows, self.groups)
        except DatabaseUnavailableError as exc:
            await self._back_off(exc)
            return None
        except Exception as exc:
            log.error("flowq: worker %s: claim failed", self.worker_id, exc_info=exc)
            await self._back_off(exc)
            return None
        if self._failures:
            self._failures = 0
            database_outages.succeeded()
        for job in claimed:
            self._start(job)
        return len(claimed)

    async def _back_off(self, error: Exception) -> None:
        """Wait before the next claim while the database is unreachable (up to 5 s)."""
        self._failures += 1
        delay = min(0.05 * 2 ** min(self._failures, 7), 5.0)
        if isinstance(error, DatabaseUnavailableError):
            database_outages.failed(f"worker {self.worker_id}'s claim", error)
        await self._wait(self._stop_requested, delay)

    async def _idle(self, workflows: Collection[str], claimed_at: datetime) -> None:
        """Wait for the next look: a wake-up, the poll interval (real time), or the
        moment the next job comes due (job time: the clock wakes us, a fake one as
        soon as a test moves it there; a job due since the last claim, at once)."""
        hint = self._work_hint
        self._idle_until = _FOREVER  # a job of ours parking meanwhile sets the hint
        try:
            try:
                next_at = await self.store.next_ready_at(workflows, after=claimed_at)
            except DatabaseUnavailableError:
                next_at = None
            except Exception as exc:
                log.error("flowq: worker %s: looking for the next due job failed",
                          self.worker_id, exc_info=exc)  # fmt: skip
                next_at = None
            if self._stop_requested.is_set():
                return
            self._idle_until = next_at or _FOREVER
            with anyio.move_on_after(self.poll_interval):
                if next_at is None:
                    await hint.wait()
                    return
                async with anyio.create_task_group() as waits:

                    async def first_of(wait: Callable[[], Awaitable[object]]) -> None:
                        await wait()
                        waits.cancel_scope.cancel()

                    waits.start_soon(first_of, hint.wait)
                    waits.start_soon(first_of, lambda: self.clock.sleep_until(next_at))
        finally:
            self._idle_until = None

    def _due(self, when: datetime) -> None:
        """A job run here comes due at ``when``: wake the idle claim loop if it sleeps
        longer than that."""
        if self._idle_until is not None and when < self._idle_until:
            self._work_hint.set()

    async def _wait(self, event: asyncio.Event | anyio.Event, seconds: float) -> None:
        if self._stop_requested.is_set():
            return
        with anyio.move_on_after(seconds):
            await event.wait()

    def _start(self, claimed: ClaimedJob) -> None:
        """Hand a claimed job to an idle runner (one of ``2 * concurrency`` long-lived
        tasks; much cheaper than a task, or a stream message, per job)."""
        running = self._engine.prepare(claimed)
        running.on_handler_done = lambda: self._handler_done(running)
        self._running[claimed.job.id] = running
        self._executing.add(claimed.job.id)
        if self._idle_runners:
            runner = self._idle_runners.pop()
            runner.job = running
            runner.ready.set()
        else:
            self._queued.append(running)

    def _handler_done(self, running: RunningJob) -> None:
        """The job's handler ended: its slot is free for the next claim."""
        job_id = running.claimed.job.id
        if self._running.get(job_id) is running:
            self._executing.discard(job_id)
        self._slot_freed.set()

    async def _runner(self) -> None:
        runner = _Runner()
        while True:
            running: RunningJob | None
            if self._queued:
                running = self._queued.popleft()
            else:
                runner.ready = asyncio.Event()
                self._idle_runners.append(runner)
                try:
                    await runner.ready.wait()
                finally:
                    if runner in self._idle_runners:
                        self._idle_runners.remove(runner)
                running, runner.job = runner.job, None
                if running is None:
                    continue
            await self._run_job(running)
            # An idle runner keeps nothing of the job it ran (its payload, history,
            # output): up to 2 * concurrency finished jobs would stay in memory.
            running = None

    async def _run_job(self, running: RunningJob) -> None:
        job = running.claimed.job
        due: datetime | None = None
        try:
            with running.scope:
                due = await self._engine.run(running)
        except Exception as exc:  # the engine records every outcome it can; never kill the worker
            log.error("flowq: job %s: unexpected error in worker %s; it is left for lease "
                      "reclaim", job.id, self.worker_id, exc_info=exc)  # fmt: skip
        except BaseException:
            if running.stop_reason is None:  # the worker itself is being torn down
                self._interrupted.append(running)
            raise
        finally:
            # A job that parked can be claimed again by this worker before this run's
            # task ends: only forget the entry if it is still this run's.
            if self._running.get(job.id) is running:
                del self._running[job.id]
                self._executing.discard(job.id)
            self._slot_freed.set()
        if due is not None:
            self._due(due)
        if running.stop_reason == "cancelled":
            await self.hooks.emit(
                HookEvent(
                    event="job:cancelled",
                    job_id=job.id,
                    workflow=job.workflow,
                    attempt=job.attempts,
                )
            )

    async def _drain(self) -> None:
        """Give running jobs ``drain_timeout`` to finish, then cancel and release them."""
        started = anyio.current_time()
        while self._running:
            # stop() again (a second signal) may shorten the drain timeout meanwhile.
            left = started + self.drain_timeout - anyio.current_time()
            if left <= 0:
                break
            self._slot_freed = asyncio.Event()
            with anyio.move_on_after(left):
                await self._slot_freed.wait()
        leftovers = list(self._running.values())
        if not leftovers:
            return
        for running in leftovers:
            running.stop_reason = "shutdown"
            running.context.cancelled.set()
            running.scope.cancel()
        with anyio.CancelScope(shield=True):
            while self._running:
                self._slot_freed = asyncio.Event()
                await self._slot_freed.wait()
            releases = [Release(r.claimed.lease, not r.claimed.resumed) for r in leftovers]
            try:
                released = await self.store.release_jobs(releases)
            except DatabaseUnavailableError as exc:
                released = 0
                log.warning("flowq: could not hand back unfinished jobs (%s); reclaim will", exc)
        log.warning(
            "flowq: worker %s stopped with %d job(s) unfinished after %.1fs; %d handed back",
            self.worker_id,
            len(leftovers),
            self.drain_timeout,
            released,
        )

    async def _hand_back_interrupted(self) -> None:
        """The worker is exiting abnormally (cancelled, or a failure): hand back the
        jobs whose runs it interrupted, so that they are not stranded until reclaim."""
        interrupted, self._interrupted = self._interrupted, []
        if not interrupted:
            return
        releases = [Release(r.claimed.lease, not r.claimed.resumed) for r in interrupted]
        released = 0
        with anyio.CancelScope(shield=True), anyio.move_on_after(HAND_BACK_TIMEOUT):
            try:
                released = await self.store.release_jobs(releases)
            except Exception as exc:
                log.error("flowq: worker %s could not hand back its jobs (%s); reclaim will",
                          self.worker_id, exc)  # fmt: skip
        log.warning(
            "flowq: worker %s exits with %d job(s) interrupted; %d handed back",
            self.worker_id, len(interrupted), released,
        )  # fmt: skip

    async def _heartbeats(self) -> None:
        """Refresh running jobs' locks and cancel the ones this worker no longer holds;
        then take back jobs of workers whose heartbeats stopped."""
        while True:
            await anyio.sleep(self.heartbeat_interval)
            await self._presence.refresh()
            await self._check_leases(list(self._running.values()))
            await self._reclaim_expired()

    async def _reclaim_expired(self) -> None:
        """Jobs whose lock is older than ``lease_timeout`` belong to a dead worker."""
        try:
            taken = await self.store.reclaim_expired_leases(
                timedelta(seconds=self.lease_timeout),
                limit=RECLAIM_BATCH_SIZE,
                sparing=self.worker_id,
            )
        except DatabaseUnavailableError as exc:
            database_outages.failed(f"worker {self.worker_id}'s look for dead workers' jobs", exc)
            return
        except Exception as exc:
            log.error("flowq: worker %s: looking for dead workers' jobs failed",
                      self.worker_id, exc_info=exc)  # fmt: skip
            return
        if taken:
            log.warning(
                "flowq: worker %s took back %d job(s) whose worker stopped heartbeating "
                "for %.0fs",
                self.worker_id, taken, self.lease_timeout,
            )  # fmt: skip
            self._work_hint.set()

    async def _check_leases(self, running: list[RunningJob]) -> None:
        if not running:
            return
        try:
            lost = await self.store.heartbeat([r.claimed.lease for r in running])
        except DatabaseUnavailableError as exc:
            database_outages.failed(f"worker {self.worker_id}'s heartbeat", exc)
            return
        except Exception as exc:
            ids = ", ".join(str(r.claimed.job.id) for r in running[:20])
            log.error("flowq: heartbeat of worker %s failed for job(s) %s; retrying",
                      self.worker_id, ids, exc_info=exc)  # fmt: skip
            return
        for lease in lost:
            entry = self._running.get(lease.job_id)
            if entry is not None and entry.claimed.lease == lease:
                log.info("flowq: job %s was cancelled or taken back; stopping it", lease.job_id)
                entry.stop_reason = "cancelled"
                entry.context.cancelled.set()
                entry.scope.cancel()

    async def _listen(self) -> None:
        async with anyio.create_task_group() as tasks:
            checks: set[int] = set()

            def on_wake(hint: str) -> None:
                if hint.startswith("cancel:"):
                    job_id = int(hint.partition(":")[2])
                    entry = self._running.get(job_id)
                    if entry is not None and job_id not in checks:
                        checks.add(job_id)
                        tasks.start_soon(self._check_cancelled, entry, checks)
                elif hint == "schedules":
                    self._ticker.changed()
                else:
                    self._work_hint.set()

            await self.store.listen(on_wake, remote=self.notify)

    async def _check_cancelled(self, entry: RunningJob, checks: set[int]) -> None:
        try:
            await self._check_leases([entry])
        finally:
            checks.discard(entry.claimed.job.id)

    async def _explain_unclaimed(self, workflows: Collection[str]) -> None:
        """Give due jobs of workflows this worker does not know a ``pending_reason``,
        and warn once per such workflow (not at every look)."""
        runs = _some_names(workflows)

        def reason(workflow: str) -> str:
            return (
                f"no running worker knows workflow {workflow!r} (worker {self.worker_id} "
                f"runs only: {runs}); start a worker that registers it"
            )

        try:
            marked = await self.store.mark_unclaimed(workflows, reason)
        except Exception as exc:
            log.warning("flowq: could not mark unclaimed jobs: %s", exc)
            return
        for workflow, count in sorted(marked.items()):
            if workflow in self._unknown_warned:
                continue
            self._unknown_warned.add(workflow)
            log.warning(
                "flowq: worker %s: %d due job(s) of workflow %r wait: no running worker "
                "knows it (this worker runs only: %s); start a worker that registers it "
                "(logged once per workflow; the jobs' pending_reason says so too)",
                self.worker_id, count, workflow, runs,
                extra={"workflow": workflow, "worker_id": self.worker_id, "due_jobs": count},
            )  # fmt: skip

    def _workflow_names(self) -> list[str]:
        return self._only if self._only is not None else self.registry.names()


def _some_names(names: Collection[str], shown: int = 10) -> str:
    """Up to ``shown`` names, sorted, and how many more there are."""
    ordered = sorted(names)
    if not ordered:
        return "none"
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more


class _Runner:
    """An idle runner's mailbox: the job handed to it, and the event that wakes it."""

    __slots__ = ("job", "ready")

    def __init__(self) -> None:
        self.job: RunningJob | None = None
        self.ready = asyncio.Event()


def _names(workflows: Any) -> list[str]:
    if isinstance(workflows, str | bytes) or not isinstance(workflows, Sequence | set | frozenset):
        raise ValidationError(
            f"workflows= takes a list of workflow objects or names, got {workflows!r}"
        )
    return [_name(workflow) for workflow in workflows]


def _name(workflow: Workflow[Any, Any] | str) -> str:
    if isinstance(workflow, Workflow):
        return workflow.name
    if isinstance(workflow, str) and workflow:
        return workflow
    raise ValidationError(f"workflows= takes workflow objects or names, got {workflow!r}")


def _positive_int(value: Any, name: str) -> int:
    return validate.integer(value, name, minimum=1, bounds=validate.INT32)


def _seconds(value: Duration | None, name: str, default: float) -> float:
    if value is None:
        return default
    return parse_duration(value, name=name) / timedelta(seconds=1)


def _drain_seconds(value: Duration) -> float:
    """A drain timeout: a duration, or 0 to hand running jobs back at once."""
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return _seconds(value, "drain_timeout", 30)


def _group_limits(value: int | Mapping[str, int] | None) -> GroupLimits | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return GroupLimits(
            per_group={g: _positive_int(n, f"group_concurrency[{g!r}]") for g, n in value.items()}
        )
    return GroupLimits(default=_positive_int(value, "group_concurrency"))
