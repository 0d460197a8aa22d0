"""Real worker loops on SQLite and PostgreSQL: claiming, concurrency, retries, groups."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import anyio
import pytest

import flowq
import flowq.worker
from flowq import JobStatus
from flowq_testing import FakeClock, InMemoryStore

pytestmark = pytest.mark.anyio


async def events_of(app: flowq.App, job_id: int) -> list[str]:
    """The event types of a job, oldest first."""
    return [event.event_type.value for event in await app.get_job_events(job_id)]


async def test_a_job_that_runs_once_has_three_events(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A job run once records exactly added, processing, completed, and its output."""

    @registry.workflow(name="double")
    async def double(payload: dict[str, int]) -> int:
        return payload["n"] * 2

    job_id = await app.start(double, {"n": 21})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.output == 42
    assert job.attempts == 1
    assert await events_of(app, job_id) == ["added", "processing", "completed"]


async def test_cancelled_and_future_jobs_are_not_run(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A cancelled job never runs; a job due later is not claimed early."""
    ran: list[str] = []

    @registry.workflow(name="record")
    async def record(payload: dict[str, str]) -> None:
        ran.append(payload["name"])

    cancelled = await app.start(record, {"name": "cancelled"})
    await app.cancel_job(cancelled)
    later = await app.start(record, {"name": "later"}, delay=timedelta(hours=1))
    await app.start(record, {"name": "now"})
    worker = app.create_worker()
    await worker.run_until_idle()
    assert ran == ["now"]
    job = await app.get_job(later)
    assert job is not None and job.status is JobStatus.PENDING
    clock.advance(timedelta(hours=1))
    await worker.run_until_idle()
    assert ran == ["now", "later"]


async def test_concurrency_is_never_exceeded(app: flowq.App, registry: flowq.Registry) -> None:
    """With concurrency 4, at most 4 handlers run at once, and 4 do."""
    active = 0
    peak = 0

    @registry.workflow(name="busy")
    async def busy(payload: dict[str, int]) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.01)
        active -= 1

    await app.add_jobs([flowq.JobSpec(busy, {"n": n}) for n in range(30)])
    await app.create_worker(concurrency=4).run_until_idle()
    assert peak == 4
    assert len(await app.get_jobs(status="completed", limit=None)) == 30


async def test_group_limit_lets_other_groups_run(app: flowq.App, registry: flowq.Registry) -> None:
    """Group limit 1 with A1, A2, B: A1 and B run together; A2 starts after A1 ended."""
    log: list[str] = []
    b_started = anyio.Event()

    @registry.workflow(name="grouped")
    async def grouped(payload: dict[str, str]) -> None:
        name = payload["name"]
        log.append(f"start {name}")
        if name == "A1":
            with anyio.fail_after(10):
                await b_started.wait()  # B runs while A1 holds group A's only slot
        if name == "B":
            b_started.set()
        log.append(f"end {name}")

    await app.start(grouped, {"name": "A1"}, group="A", priority=3)
    await app.start(grouped, {"name": "A2"}, group="A", priority=2)
    await app.start(grouped, {"name": "B"}, group="B", priority=1)
    await app.create_worker(concurrency=5, group_concurrency=1).run_until_idle()
    assert log.index("start B") < log.index("end A1")
    assert log.index("end A1") < log.index("start A2")


async def test_fails_twice_then_succeeds(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Two failures then success with max_attempts=3: 2 errors, 3 attempts, completed."""
    calls = 0

    @registry.workflow(name="flaky", max_attempts=3)
    async def flaky(payload: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"try {calls}")
        return "ok"

    job_id = await app.start(flaky, {})
    worker = app.create_worker()
    for _ in range(3):
        await worker.run_until_idle()
        clock.advance(timedelta(hours=2))
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.output == "ok"
    assert job.attempts == 3
    assert [e.message for e in job.error_history] == ["try 1", "try 2"]
    assert job.error_history[0].type == "ConnectionError"


async def test_single_attempt_fails_for_good(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """With max_attempts=1 a failure is permanent and the job is never claimed again."""
    calls = 0

    @registry.workflow(name="once", max_attempts=1)
    async def once(payload: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad input")

    job_id = await app.start(once, {})
    worker = app.create_worker()
    await worker.run_until_idle()
    clock.advance(timedelta(days=1))
    await worker.run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.next_attempt_at is None
    assert job.failure_reason is flowq.FailureReason.HANDLER_ERROR
    assert calls == 1


async def test_backoff_waits_fall_in_the_documented_windows(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Exponential backoff with jitter: the wait after attempt n is in [d*2^(n-1)/2, d*2^(n-1)]."""

    @registry.workflow(name="always_fails", max_attempts=6)
    async def always_fails(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")

    policy = flowq.RetryPolicy(10, max_delay=60)
    job_id = await app.start(always_fails, {}, retry=policy)
    worker = app.create_worker()
    waits = []
    for attempt in range(1, 6):
        await worker.run_until_idle()
        job = await app.get_job(job_id)
        assert job is not None and job.next_attempt_at is not None and job.last_failed_at
        wait = (job.next_attempt_at - job.last_failed_at).total_seconds()
        full = min(10 * 2 ** (attempt - 1), 60)
        assert full / 2 <= wait <= full, (attempt, wait)
        waits.append(wait)
        clock.advance(timedelta(minutes=2))
    await worker.run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 6
    assert job.next_attempt_at is None


async def test_fixed_retry_delay(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """retry_backoff=False retries after exactly retry_delay (no jitter when asked)."""

    @registry.workflow(
        name="fixed", max_attempts=3, retry=flowq.RetryPolicy(7, backoff=False, jitter=False)
    )
    async def fixed(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")

    job_id = await app.start(fixed, {})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.next_attempt_at == clock.now() + timedelta(seconds=7)


async def test_retry_delay_without_backoff_is_exact_from_the_failure(
    database_url: str | None, registry: flowq.Registry
) -> None:
    """Job options retry_delay=10, retry_backoff=False (DataQueue's retryDelay 10,
    retryBackoff false) retry exactly 10 s after the failure, by the wall clock: no
    jitter, and next_attempt_at and last_failed_at come from the same instant."""

    @registry.workflow(name="down", max_attempts=3)
    async def down(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")

    if database_url is None:
        app = flowq.App(store=InMemoryStore(), registry=registry)
    else:
        app = flowq.App(database_url, registry=registry, auto_migrate=True)
    async with app:
        job_id = await app.start(down, {}, retry_delay=10, retry_backoff=False)
        await app.create_worker().run_until_idle()
        job = await app.get_job(job_id)
    assert job is not None and job.last_failed_at is not None
    assert job.next_attempt_at == job.last_failed_at + timedelta(seconds=10)


async def test_dependants_wait_and_failures_cascade(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Dependants run after prerequisites; a prerequisite failing for good cancels them."""
    order: list[str] = []

    @registry.workflow(name="step", max_attempts=2)
    async def step(payload: dict[str, Any]) -> None:
        if payload.get("fail"):
            raise RuntimeError("prerequisite broke")
        order.append(payload["name"])

    ids = await app.add_jobs(
        [
            flowq.JobSpec(
                step, {"name": "report"}, depends_on=[flowq.batch_dep_ref(1)], priority=9
            ),
            flowq.JobSpec(step, {"name": "extract"}),
            flowq.JobSpec(step, {"fail": True}),
            flowq.JobSpec(step, {"name": "never"}, depends_on=[flowq.batch_dep_ref(2)]),
        ]
    )
    worker = app.create_worker()
    await worker.run_until_idle()
    assert order == ["extract", "report"]
    dependant = await app.get_job(ids[3])
    assert dependant is not None and dependant.status is JobStatus.PENDING  # will retry
    clock.advance(timedelta(hours=1))
    await worker.run_until_idle()
    dependant = await app.get_job(ids[3])
    assert dependant is not None and dependant.status is JobStatus.CANCELLED
    assert order == ["extract", "report"]


async def test_dead_letter_job_runs_with_the_failure(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A job failing for good enqueues its dead-letter job, which the same run executes."""
    letters: list[dict[str, Any]] = []

    @registry.workflow(name="letters")
    async def on_failure(payload: dict[str, Any]) -> None:
        letters.append(payload)

    @registry.workflow(name="charge", max_attempts=1, dead_letter="letters")
    async def charge(payload: dict[str, Any]) -> None:
        raise RuntimeError("card declined")

    job_id = await app.start(charge, {"order": 5})
    await app.create_worker().run_until_idle()
    assert len(letters) == 1
    assert letters[0]["job_id"] == job_id and letters[0]["payload"] == {"order": 5}
    assert letters[0]["error"]["message"] == "card declined"


async def test_hooks_report_every_attempt(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """job:failed carries will_retry=True until the last attempt, then False."""
    seen: list[tuple[str, int, bool | None]] = []

    async def record(event: flowq.HookEvent) -> None:
        seen.append((event.event, event.attempt, event.will_retry))

    app.on("job:failed", record)
    app.on("job:completed", lambda event: seen.append((event.event, event.attempt, None)))

    @registry.workflow(name="hooked", max_attempts=3)
    async def hooked(payload: dict[str, Any]) -> None:
        raise RuntimeError("x")

    await app.start(hooked, {})
    worker = app.create_worker()
    for _ in range(3):
        await worker.run_until_idle()
        clock.advance(timedelta(hours=1))
    assert seen == [("job:failed", 1, True), ("job:failed", 2, True), ("job:failed", 3, False)]
    with pytest.raises(flowq.ValidationError, match="job:done"):
        app.on("job:done", record)


async def test_context_progress_output_and_sync_handlers(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """ctx.set_progress and set_output are stored; sync handlers run in a thread."""
    import threading

    main_thread = threading.get_ident()
    threads: list[int] = []

    @registry.workflow(name="reporting")
    async def reporting(payload: dict[str, Any], ctx: flowq.Context) -> None:
        assert ctx.job.attempt == 1 and ctx.job.workflow == "reporting"
        await ctx.set_progress(49.6)
        await ctx.set_output({"partial": True})

    @registry.workflow(name="blocking")
    def blocking(payload: dict[str, Any]) -> str:
        threads.append(threading.get_ident())
        return "from a thread"

    @registry.workflow(name="returns_wins")
    async def returns_wins(payload: dict[str, Any], ctx: flowq.Context) -> str:
        await ctx.set_output("early")
        return "final"

    first = await app.start(reporting, {})
    second = await app.start(blocking, {})
    third = await app.start(returns_wins, {})
    await app.create_worker().run_until_idle()
    job = await app.get_job(first)
    assert job is not None and job.progress == 50 and job.output == {"partial": True}
    assert "progress" in await events_of(app, first)
    assert await app.result(second, timeout=10) == "from a thread" and threads[0] != main_thread
    assert await app.result(third, timeout=10) == "final"


async def test_bad_progress_fails_the_attempt(app: flowq.App, registry: flowq.Registry) -> None:
    """set_progress outside 0-100 raises ValidationError inside the handler."""

    @registry.workflow(name="overshoot", max_attempts=1)
    async def overshoot(payload: dict[str, Any], ctx: flowq.Context) -> None:
        await ctx.set_progress(120)

    job_id = await app.start(overshoot, {})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert "0 to 100" in job.error_history[0].message


async def test_timeout_fails_the_attempt(app: flowq.App, registry: flowq.Registry) -> None:
    """A handler running past its timeout is cancelled; the failure reason is timeout."""

    @registry.workflow(name="slow", max_attempts=1, timeout="50ms")
    async def slow(payload: dict[str, Any]) -> None:
        await anyio.sleep(30)

    job_id = await app.start(slow, {})
    with anyio.fail_after(10):
        await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.failure_reason is flowq.FailureReason.TIMEOUT
    assert job.error_history[0].type == "TimeoutError"


async def test_cancelling_a_running_job_cancels_its_handler(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """cancel_job on a running job sets ctx.cancelled and cancels the handler."""
    started = anyio.Event()
    saw_cancel: list[bool] = []

    @registry.workflow(name="long")
    async def long(payload: dict[str, Any], ctx: flowq.Context) -> None:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            saw_cancel.append(ctx.cancelled.is_set())

    cancelled_hooks: list[int] = []
    hook_called = anyio.Event()

    def on_cancelled(event: flowq.HookEvent) -> None:
        cancelled_hooks.append(event.job_id)
        hook_called.set()

    app.on("job:cancelled", on_cancelled)
    job_id = await app.start(long, {})
    worker = app.create_worker(heartbeat_interval="10s")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await started.wait()
            assert await app.cancel_job(job_id) is True
            await hook_called.wait()
            await worker.stop()
    assert saw_cancel == [True] and cancelled_hooks == [job_id]
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert (await events_of(app, job_id))[-1] == "cancelled"


async def test_reclaimed_job_is_fenced(app: flowq.App, registry: flowq.Registry) -> None:
    """A job taken back from a slow worker completes once; the old run's result is dropped."""
    gate = anyio.Event()
    first_run_started = anyio.Event()
    runs = 0

    @registry.workflow(name="fenced")
    async def fenced(payload: dict[str, Any]) -> int:
        nonlocal runs
        runs += 1
        mine = runs
        if mine == 1:
            first_run_started.set()
            await gate.wait()
        return mine

    job_id = await app.start(fenced, {})
    first = app.create_worker(worker_id="slow", heartbeat_interval="1h")
    second = app.create_worker(worker_id="fast")
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first.run_until_idle)
            await first_run_started.wait()
            assert await app.reclaim_stuck_jobs(0) == 1
            await second.run_until_idle()
            gate.set()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.output == 2
    assert (await events_of(app, job_id)).count("completed") == 1


async def test_unregistered_workflows_are_left_alone(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A worker claims only workflows it runs; others stay pending for another service."""

    @registry.workflow(name="mine")
    async def mine(payload: dict[str, Any]) -> None:
        """Runs here."""

    @registry.workflow(name="theirs")
    async def theirs(payload: dict[str, Any]) -> None:
        """Runs in another service."""

    other = await app.start(theirs, {})
    await app.start(mine, {})
    await app.create_worker(workflows=[mine]).run_until_idle()
    job = await app.get_job(other)
    assert job is not None and job.status is JobStatus.PENDING


async def test_jobs_no_worker_runs_say_why(app: flowq.App, registry: flowq.Registry) -> None:
    """A due job of a workflow this worker does not run gets a pending_reason naming it."""

    @registry.workflow(name="here")
    async def here(payload: dict[str, Any]) -> None:
        """Runs here."""

    @registry.workflow(name="elsewhere")
    async def elsewhere(payload: dict[str, Any]) -> None:
        """Runs in another service."""

    job_id = await app.start(elsewhere, {})
    worker = app.create_worker(workflows=["here"], worker_id="w-here")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            while True:
                job = await app.get_job(job_id)
                assert job is not None
                if job.pending_reason:
                    break
                await anyio.sleep(0.01)
            await worker.stop()
    assert "w-here" in job.pending_reason and "here" in job.pending_reason
    assert job.status is JobStatus.PENDING


async def test_a_workflow_no_worker_knows_is_logged_once_per_worker(
    app: flowq.App,
    registry: flowq.Registry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that finds due jobs of workflows it does not know warns once per such
    workflow (naming it, the due jobs and what it runs), however often it looks; each
    job's pending_reason names its workflow."""
    monkeypatch.setattr(flowq.worker, "UNCLAIMED_CHECK_EVERY", 0.0)  # look at every poll

    @registry.workflow(name="here")
    async def here(payload: dict[str, Any]) -> None:
        """Runs here."""

    @registry.workflow(name="elsewhere")
    async def elsewhere(payload: dict[str, Any]) -> None:
        """Runs in another service."""

    first = [await app.start(elsewhere, {"n": n}) for n in range(2)]
    await app.add_job("away", {})  # registered nowhere in this process

    async def explained(job_id: int) -> str:
        while True:
            job = await app.get_job(job_id)
            assert job is not None
            if job.pending_reason:
                return job.pending_reason
            await anyio.sleep(0.01)

    worker = app.create_worker(workflows=["here"], worker_id="w-here", poll_interval=0.01)
    with caplog.at_level(logging.WARNING, logger="flowq.worker"), anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            reason = await explained(first[0])
            # A job added later is explained by a later look, which must not warn again.
            later = await app.start(elsewhere, {"n": 2})
            assert await explained(later) == reason
            await worker.stop()
    assert reason == (
        "no running worker knows workflow 'elsewhere' (worker w-here runs only: here); "
        "start a worker that registers it"
    )
    warnings = [r for r in caplog.records if r.name == "flowq.worker" and "knows" in r.getMessage()]
    assert sorted(getattr(r, "workflow", None) for r in warnings) == ["away", "elsewhere"]
    [about_elsewhere] = [r for r in warnings if getattr(r, "workflow", None) == "elsewhere"]
    assert about_elsewhere.levelno == logging.WARNING
    assert about_elsewhere.getMessage().startswith(
        "flowq: worker w-here: 2 due job(s) of workflow 'elsewhere' wait: no running worker "
        "knows it (this worker runs only: here)"
    )
    for job_id in first:
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.PENDING and job.pending_reason == reason


async def test_a_job_reclaimed_while_its_last_run_ends_does_not_crash_the_worker(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A job that parks and is claimed again before its previous run's task finished
    (here: a slow hook) runs to the end; the worker keeps running."""

    @registry.workflow(name="naps")
    async def naps(payload: dict[str, Any], ctx: flowq.Context) -> str:
        await ctx.sleep("1ms")
        return "done"

    async def slow_hook(event: flowq.HookEvent) -> None:
        clock.advance(timedelta(seconds=1))  # the wait is over: the job can be claimed again
        await anyio.sleep(0.2)  # ...while this run's task is still busy here

    app.on("job:waiting", slow_hook)
    finished = anyio.Event()
    app.on("job:completed", lambda event: finished.set())
    worker = app.create_worker(poll_interval="10ms")
    job_id = await app.start(naps, {})
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await finished.wait()
            await worker.stop()
    assert await app.result(job_id, timeout=5) == "done"


async def test_a_cancelled_sqlite_claim_leaves_no_lock_behind(sqlite_url: str) -> None:
    """Cancelling a claim that waits for the SQLite write lock leaves the database usable
    and claims nothing: the job is still pending for the next claim."""
    import sqlite3

    registry = flowq.Registry()

    @registry.workflow(name="noop")
    async def noop(payload: dict[str, Any]) -> None:
        """Nothing."""

    path = sqlite_url.split("///", 1)[1]

    def writable() -> bool:
        connection = sqlite3.connect(path, timeout=0.2, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            connection.close()

    async with flowq.App(sqlite_url, registry=registry, auto_migrate=True) as app:
        await app.start(noop, {})
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
        with anyio.move_on_after(0.3):  # the claim waits for it, then is cancelled
            await app.store.claim_jobs("w", 10, ["noop"])
        other.execute("ROLLBACK")
        other.close()
        [claimed] = await app.store.claim_jobs("w2", 10, ["noop"])
        assert claimed.lease.worker_id == "w2"  # the cancelled claim took nothing
        assert writable()


async def test_a_sqlite_worker_wakes_on_another_process_commit(sqlite_url: str) -> None:
    """A worker that would poll only once a minute runs a job added through another
    connection pool (as another process would) at once: it watches the WAL file."""
    registry = flowq.Registry()
    ran = anyio.Event()

    @registry.workflow(name="wake")
    async def wake(payload: dict[str, Any]) -> None:
        ran.set()

    async with (
        flowq.App(sqlite_url, registry=registry, auto_migrate=True) as app,
        flowq.App(sqlite_url, registry=flowq.Registry()) as other,
    ):
        worker = app.create_worker(poll_interval=60)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await other.add_job("wake", {})  # a pool of its own: no in-process wake-up
            with anyio.fail_after(10):
                await ran.wait()
            await worker.stop()
