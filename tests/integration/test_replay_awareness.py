"""What a handler sees of its own replay: ctx.is_replaying, a quiet ctx.logger, and
progress that does not go back on a resume (every store)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

import flowq
from flowq import JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio


async def test_a_resumed_job_replays_quietly_and_keeps_its_progress(
    app: flowq.App,
    registry: flowq.Registry,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Across a durable sleep: is_replaying is True while recorded calls lie ahead,
    ctx.logger logs each line once (with the job in extra), and progress events are
    25, 75, 100 with no repeat."""
    seen: list[tuple[str, bool]] = []

    @flowq.step(name="charge")
    async def charge() -> str:
        return "ch_1"

    @registry.workflow(name="checkout")
    async def checkout(payload: dict[str, Any], ctx: flowq.Context) -> str:
        seen.append(("start", ctx.is_replaying))
        await ctx.set_progress(25)
        charged = await charge()
        ctx.logger.info("charged %s", charged)
        await ctx.set_progress(75)
        await ctx.sleep("1h")
        seen.append(("after sleep", ctx.is_replaying))
        ctx.logger.info("shipping")
        await ctx.set_progress(100)
        return charged

    job_id = await app.start(checkout, {})
    with caplog.at_level(logging.INFO, logger="flowq.workflow"):
        await app.create_worker().run_until_idle()
        job = await app.get_job(job_id)
        assert job is not None and (job.status, job.progress) == (JobStatus.WAITING, 75)
        clock.advance(timedelta(hours=1))
        await app.create_worker().run_until_idle()
    assert await app.result(job_id, timeout=5) == "ch_1"
    assert seen == [("start", False), ("start", True), ("after sleep", False)]
    lines = [r for r in caplog.records if r.name == "flowq.workflow.checkout"]
    assert [r.getMessage() for r in lines] == ["charged ch_1", "shipping"]
    assert {(r.job_id, r.workflow) for r in lines} == {(job_id, "checkout")}  # type: ignore[attr-defined]
    events = await app.get_job_events(job_id)
    progress = [e.metadata["progress"] for e in events if e.event_type is flowq.EventType.PROGRESS]
    assert progress == [25, 75, 100]
    job = await app.get_job(job_id)
    assert job is not None and job.progress == 100
