"""Cron schedules run by real worker loops under a fake clock (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import flowq
from flowq import JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio

START = datetime(2030, 3, 9, 12, tzinfo=UTC)  # the day before New York springs forward


@pytest.fixture
def clock() -> FakeClock:
    """Time moves only when a test moves it."""
    return FakeClock(START)


async def wait_for_jobs(app: flowq.App, count: int, status: JobStatus) -> list[flowq.Job]:
    """The jobs once ``count`` of them have ``status`` (polling the store, bounded)."""
    with anyio.fail_after(10):
        while True:
            jobs = await app.get_jobs()
            if sum(job.status is status for job in jobs) >= count:
                return jobs
            await anyio.sleep(0.01)


async def wait_for_schedule(app: flowq.App, name: str) -> flowq.CronSchedule:
    """The schedule once a starting worker saved it (bounded)."""
    with anyio.fail_after(10):
        while True:
            stored = await app.get_cron_job_by_name(name)
            if stored is not None:
                return stored
            await anyio.sleep(0.01)


async def test_a_declared_schedule_is_saved_and_run_by_a_running_worker(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """@registry.schedule is saved when the worker starts; moving the clock to each
    tick makes the worker (polling once a minute) enqueue and run that tick's job."""
    ran: list[int] = []

    @registry.schedule("*/15 * * * *", name="quarterly", payload={"n": 1}, priority=3)
    @registry.workflow(name="report")
    async def report(payload: dict[str, Any]) -> int:
        ran.append(payload["n"])
        return len(ran)

    worker = app.create_worker(poll_interval=60)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        await wait_for_schedule(app, "quarterly")
        clock.advance(timedelta(minutes=15))
        await wait_for_jobs(app, 1, JobStatus.COMPLETED)
        clock.advance(timedelta(minutes=15))
        jobs = await wait_for_jobs(app, 2, JobStatus.COMPLETED)
        await worker.stop()
    assert ran == [1, 1]
    assert sorted(job.run_at for job in jobs) == [
        START + timedelta(minutes=15),
        START + timedelta(minutes=30),
    ]
    assert {job.priority for job in jobs} == {3}
    stored = await app.get_cron_job_by_name("quarterly")
    assert stored is not None and stored.last_job_id == max(job.id for job in jobs)


async def test_run_until_idle_saves_schedules_and_runs_ticks_due_now(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """run_until_idle saves declared schedules, then runs the ticks due at that moment
    (and none in the future)."""

    @registry.schedule("0 * * * *", name="hourly")
    @registry.workflow(name="tick")
    async def tick(payload: None) -> str:
        return "ticked"

    await app.create_worker().run_until_idle()
    assert await app.get_jobs() == []
    stored = await app.get_cron_job_by_name("hourly")
    assert stored is not None and stored.next_run_at == START + timedelta(hours=1)
    clock.advance(timedelta(hours=1))
    await app.create_worker().run_until_idle()
    [job] = await app.get_jobs()
    assert (job.status, job.output) == (JobStatus.COMPLETED, "ticked")


async def test_a_schedule_added_while_the_worker_runs_is_noticed(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """add_cron_job wakes running workers: its first tick runs when the clock gets there."""

    @registry.workflow(name="ping")
    async def ping(payload: dict[str, Any]) -> Any:
        return payload

    worker = app.create_worker(poll_interval=60)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        await app.start(ping, {"warm": 1})
        await wait_for_jobs(app, 1, JobStatus.COMPLETED)  # the worker runs, idle
        await app.add_cron_job("every-minute", "* * * * *", "ping", {"hello": 1})
        clock.advance(timedelta(minutes=1))
        jobs = await wait_for_jobs(app, 2, JobStatus.COMPLETED)
        await worker.stop()
    assert sorted(job.output["hello" if "hello" in job.output else "warm"] for job in jobs) == [
        1,
        1,
    ]
    assert [job.output for job in jobs if job.run_at == START + timedelta(minutes=1)] == [
        {"hello": 1}
    ]


async def test_the_worker_skips_a_tick_while_the_previous_job_waits(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Without allow_overlap, a tick that comes while the last job sleeps durably is
    skipped and recorded; the next tick after it finished runs."""

    @registry.schedule("0 * * * *", name="slow-hourly")
    @registry.workflow(name="slow")
    async def slow(payload: None, ctx: flowq.Context) -> None:
        await ctx.sleep("90m")

    worker = app.create_worker(poll_interval=60)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        await wait_for_schedule(app, "slow-hourly")
        clock.advance(timedelta(hours=1))
        await wait_for_jobs(app, 1, JobStatus.WAITING)
        clock.advance(timedelta(hours=1))  # 14:00: skipped, the 13:00 job sleeps until 14:30
        with anyio.fail_after(10):
            while True:
                stored = await app.get_cron_job_by_name("slow-hourly")
                assert stored is not None
                if stored.last_skipped_at is not None:
                    break
                await anyio.sleep(0.01)
        assert stored.last_skipped_at == START + timedelta(hours=2)
        clock.advance(timedelta(minutes=30))
        await wait_for_jobs(app, 1, JobStatus.COMPLETED)
        clock.advance(timedelta(minutes=30))  # 15:00
        await wait_for_jobs(app, 1, JobStatus.WAITING)
        await worker.stop()
    assert len(await app.get_jobs()) == 2


async def test_spring_forward_runs_a_time_in_the_gap_once(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A daily 02:30 America/New_York job runs once on the spring-forward day, at the
    first instant after the gap (03:00 EDT = 07:00 UTC), and at 02:30 EDT the day after."""

    @registry.schedule("30 2 * * *", name="nightly", timezone="America/New_York")
    @registry.workflow(name="nightly")
    async def nightly(payload: None) -> None:
        return None

    await app.create_worker().run_until_idle()
    for _ in range(48):
        clock.advance(timedelta(hours=1))
        await app.create_worker().run_until_idle()
    runs = sorted(job.run_at for job in await app.get_jobs())
    assert runs == [
        datetime(2030, 3, 10, 7, tzinfo=UTC),
        datetime(2030, 3, 11, 6, 30, tzinfo=UTC),
    ]


async def test_a_schedule_removed_from_code_is_reported_not_deleted(
    app: flowq.App, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored schedule the code no longer declares is logged at start and kept."""
    first = flowq.Registry()

    @first.schedule("@daily", name="old-daily")
    @first.workflow(name="cleanup")
    async def cleanup(payload: None) -> None:
        return None

    second = flowq.Registry()
    second.workflow(name="cleanup")(cleanup.fn)
    await flowq.Worker(app.store, first, clock).run_until_idle()
    with caplog.at_level(logging.WARNING, logger="flowq.schedules"):
        await flowq.Worker(app.store, second, clock).run_until_idle()
    assert "'old-daily' is stored but no longer declared in code" in caplog.text
    assert await app.get_cron_job_by_name("old-daily") is not None
