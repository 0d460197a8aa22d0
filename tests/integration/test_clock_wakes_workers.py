"""A running worker under a fake clock: moving the clock wakes it for what came due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import flowq
from flowq import JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    """Time moves only when a test moves it."""
    return FakeClock(datetime(2030, 1, 31, 12, tzinfo=UTC))


async def test_moving_the_clock_wakes_a_sleeping_worker_at_once(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A durable sleep and a retry come due when the test moves the clock, and the
    worker (polling only every minute) runs them at once."""
    attempts: list[int] = []

    @registry.workflow(name="nap_then_flaky", max_attempts=2, retry=flowq.RetryPolicy("10m"))
    async def nap_then_flaky(payload: dict[str, Any], ctx: flowq.Context) -> str:
        await ctx.sleep("1h")
        attempts.append(ctx.job.attempt)
        if ctx.job.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "done"

    waiting, failed, completed = anyio.Event(), anyio.Event(), anyio.Event()
    app.on("job:waiting", lambda event: waiting.set())
    app.on("job:failed", lambda event: failed.set())
    app.on("job:completed", lambda event: completed.set())
    job_id = await app.start(nap_then_flaky, {})
    worker = app.create_worker(poll_interval=60)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await waiting.wait()
            clock.advance(timedelta(hours=1))
            await failed.wait()
            job = await app.get_job(job_id)
            assert job is not None and job.next_attempt_at is not None
            clock.set(job.next_attempt_at)
            await completed.wait()
            await worker.stop()
    job = await app.get_job(job_id)
    assert job is not None and (job.status, job.output) == (JobStatus.COMPLETED, "done")
    assert attempts == [1, 2]
