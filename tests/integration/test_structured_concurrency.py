"""Replay under structured concurrency: durable calls in anyio task groups and
``asyncio.gather``, with real worker loops on memory, SQLite and PostgreSQL.

What must hold: a wait, a lost lease or a code change raised inside a task group is
recognised however it is wrapped (the job parks, stops or fails exactly as it would
without the group), and a step that finished is recorded before the job parks or
fails, so its body never runs again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import flowq
from flowq import FailureReason, JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio

DEADLINE = 15.0


@pytest.fixture
def clock() -> FakeClock:
    """Time moves only when a test moves it."""
    return FakeClock(datetime(2030, 1, 31, 12, tzinfo=UTC))


async def run(app: flowq.App) -> None:
    """Run everything runnable now (the worker must not die doing it)."""
    with anyio.fail_after(DEADLINE):
        await app.create_worker().run_until_idle()


async def job_of(app: flowq.App, job_id: int) -> flowq.Job:
    """The job, which must exist."""
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def test_a_wait_started_in_a_task_group_parks_the_job(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """tg.start_soon(ctx.sleep, "1h") beside a step: the job parks (the worker lives),
    and resumes after the hour with the step not run again."""
    ran: Counter[str] = Counter()

    @flowq.step
    async def work(name: str) -> str:
        ran[name] += 1
        return name.lower()

    @registry.workflow(name="grouped_wait")
    async def grouped_wait(payload: dict[str, Any], ctx: flowq.Context) -> list[str]:
        results: list[str] = []

        async def record(name: str) -> None:
            results.append(await work(name))

        async with anyio.create_task_group() as tg:
            tg.start_soon(record, "A")
            tg.start_soon(ctx.sleep, "1h")
        return results

    job_id = await app.start(grouped_wait, {})
    await run(app)
    job = await job_of(app, job_id)
    assert (job.status, job.wait_until) == (JobStatus.WAITING, clock.now() + timedelta(hours=1))
    clock.advance(timedelta(hours=1))
    await run(app)
    job = await job_of(app, job_id)
    assert (job.status, job.output, job.attempts) == (JobStatus.COMPLETED, ["a"], 1)
    assert ran == {"A": 1}


async def test_a_step_running_beside_a_wait_in_a_task_group_finishes_first(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A wait that is not over lets the steps running beside it finish and be recorded
    before the job parks: the slow step's body runs once, not again after the wake."""
    ran: Counter[str] = Counter()

    @flowq.step
    async def slow(name: str) -> str:
        ran[name] += 1
        await anyio.sleep(0.2)  # still running when the wait beside it is reached
        return name

    @registry.workflow(name="slow_beside_wait")
    async def slow_beside_wait(payload: dict[str, Any], ctx: flowq.Context) -> str:
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow, "B")
            tg.start_soon(ctx.sleep, "1h")
        return await slow("B")  # the recorded result of position 0 comes first

    job_id = await app.start(slow_beside_wait, {})
    await run(app)
    assert (await job_of(app, job_id)).status is JobStatus.WAITING
    assert [s.name for s in await app.get_job_steps(job_id)] == [slow.name, "@timer"]
    clock.advance(timedelta(hours=1))
    await run(app)
    assert (await job_of(app, job_id)).status is JobStatus.COMPLETED
    assert ran == {"B": 2}, "B at position 0 ran once, B at position 2 once"


async def test_two_waits_in_a_task_group_wake_at_the_earliest(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Waits of 1h and 2h side by side: the job wakes after 1h, parks again until 2h."""

    @registry.workflow(name="two_waits")
    async def two_waits(payload: dict[str, Any], ctx: flowq.Context) -> str:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctx.sleep, "2h")
            tg.start_soon(ctx.sleep, "1h")
        return "both over"

    job_id = await app.start(two_waits, {})
    start = clock.now()
    await run(app)
    assert (await job_of(app, job_id)).wait_until == start + timedelta(hours=1)
    clock.advance(timedelta(hours=1))
    await run(app)
    job = await job_of(app, job_id)
    assert (job.status, job.wait_until) == (JobStatus.WAITING, start + timedelta(hours=2))
    clock.advance(timedelta(hours=1))
    await run(app)
    assert (await job_of(app, job_id)).output == "both over"


async def test_a_code_change_inside_a_task_group_fails_once_as_nondeterminism(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """NonDeterminismError raised in a task group fails the job at once with reason
    nondeterminism and the useful message, not as a retried handler error."""
    deployed = {"new code": False}

    @flowq.step
    async def first() -> int:
        return 1

    @flowq.step
    async def renamed() -> int:
        return 2

    @registry.workflow(name="changed", max_attempts=3)
    async def changed(payload: dict[str, Any], ctx: flowq.Context) -> int:
        async with anyio.create_task_group() as tg:
            tg.start_soon(renamed if deployed["new code"] else first)
        await ctx.sleep("1h")
        return 0

    job_id = await app.start(changed, {})
    await run(app)
    deployed["new code"] = True
    clock.advance(timedelta(hours=1))
    await run(app)
    job = await job_of(app, job_id)
    assert (job.status, job.failure_reason, job.attempts) == (
        JobStatus.FAILED, FailureReason.NONDETERMINISM, 1,
    )  # fmt: skip
    assert job.next_attempt_at is None
    message = job.error_history[-1].message
    assert f"job {job_id}" in message and first.name in message and renamed.name in message


async def test_a_lease_lost_inside_a_task_group_stops_the_run_quietly(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A step recorded after its job was taken back raises inside a task group: the
    worker stops that run without dying, and the job finishes on its next claim."""
    entered = anyio.Event()
    taken = anyio.Event()
    runs: Counter[str] = Counter()

    @flowq.step
    async def late() -> str:
        runs["late"] += 1
        if runs["late"] == 1:
            entered.set()
            await taken.wait()
        return "done"

    @registry.workflow(name="lost", max_attempts=3)
    async def lost(payload: dict[str, Any], ctx: flowq.Context) -> str:
        async with anyio.create_task_group() as tg:
            tg.start_soon(late)
        return "finished"

    completed = anyio.Event()
    app.on("job:completed", lambda event: completed.set())
    job_id = await app.start(lost, {})
    worker = app.create_worker()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await entered.wait()
            assert await app.reclaim_stuck_jobs(0) == 1
            taken.set()
            await completed.wait()
            await worker.stop()
    job = await job_of(app, job_id)
    assert (job.status, job.output, job.attempts) == (JobStatus.COMPLETED, "finished", 2)


async def test_gather_of_a_step_and_a_wait_runs_the_step_once(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """asyncio.gather(slow_step(), ctx.sleep("1h")): the step finishes and is recorded
    before the job parks, so its body does not run again after the wake."""
    ran: Counter[str] = Counter()

    @flowq.step
    async def slow_step() -> str:
        ran["slow"] += 1
        await anyio.sleep(0.2)
        return "slow done"

    @registry.workflow(name="gathered_wait")
    async def gathered_wait(payload: dict[str, Any], ctx: flowq.Context) -> Any:
        result, _ = await asyncio.gather(slow_step(), ctx.sleep("1h"))
        return result

    job_id = await app.start(gathered_wait, {})
    await run(app)
    assert (await job_of(app, job_id)).status is JobStatus.WAITING
    clock.advance(timedelta(hours=1))
    await run(app)
    job = await job_of(app, job_id)
    assert (job.status, job.output) == (JobStatus.COMPLETED, "slow done")
    assert ran == {"slow": 1}


async def test_gather_with_a_failing_step_records_the_one_that_finished(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """gather(fails_fast(), slow("B")): B finishes during the failed attempt and is
    recorded, so the next attempt replays B and only reruns the failed step."""
    ran: Counter[str] = Counter()

    @flowq.step
    async def fails_fast() -> str:
        ran["fast"] += 1
        if ran["fast"] == 1:
            raise RuntimeError("first try fails")
        return "fast"

    @flowq.step
    async def slow(name: str) -> str:
        ran[name] += 1
        await anyio.sleep(0.2)
        return name

    @registry.workflow(
        name="gathered_failure", max_attempts=2, retry=flowq.RetryPolicy(1, jitter=False)
    )
    async def gathered_failure(payload: dict[str, Any], ctx: flowq.Context) -> list[str]:
        return list(await asyncio.gather(fails_fast(), slow("B")))

    job_id = await app.start(gathered_failure, {})
    await run(app)
    job = await job_of(app, job_id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert [(s.name, s.error is None) for s in await app.get_job_steps(job_id)] == [
        (fails_fast.name, False),
        (slow.name, True),
    ]
    clock.advance(timedelta(seconds=2))
    await run(app)
    job = await job_of(app, job_id)
    assert (job.status, job.output, job.attempts) == (JobStatus.COMPLETED, ["fast", "B"], 2)
    assert ran == {"fast": 2, "B": 1}
