"""A job's life in the log (logger ``flowq.jobs``) with its ids in ``extra``, and the
traceback stored with each failed attempt (every store)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

import flowq
from flowq import JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio


def job_lines(caplog: pytest.LogCaptureFixture, job_id: int) -> list[tuple[str, str]]:
    """(level, message) of the flowq.jobs records of one job."""
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "flowq.jobs" and getattr(r, "job_id", None) == job_id
    ]


def explode(order: int) -> None:
    """Fails, deep in the user's code."""
    raise ValueError(f"order {order} is broken")


async def test_a_jobs_life_is_logged_with_its_ids(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Started, waiting (on what, until when), resumed, completed (duration): INFO
    lines whose records carry job_id, workflow and attempt."""

    @registry.workflow(name="naps")
    async def naps(payload: dict[str, Any], ctx: flowq.Context) -> str:
        await ctx.sleep("1h")
        return "rested"

    job_id = await app.start(naps, {})
    with caplog.at_level(logging.INFO, logger="flowq.jobs"):
        await app.create_worker().run_until_idle()
        clock.advance(timedelta(hours=1))
        await app.create_worker().run_until_idle()
    lines = job_lines(caplog, job_id)
    assert [level for level, _ in lines] == ["INFO"] * 4
    assert lines[0][1] == f"job {job_id} (naps) starts attempt 1 of 3"
    assert lines[1][1].startswith(f"job {job_id} (naps) waits until ")
    assert lines[2][1] == f"job {job_id} (naps) resumes attempt 1 of 3"
    assert lines[3][1].startswith(f"job {job_id} (naps) completed in ")
    record = next(r for r in caplog.records if r.name == "flowq.jobs")
    assert (record.job_id, record.workflow, record.attempt) == (job_id, "naps", 1)  # type: ignore[attr-defined]


async def test_a_failed_attempt_logs_and_stores_its_traceback(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure that will retry is a WARNING, the last one an ERROR; both carry the
    traceback, which error_history keeps; JobFailedError names type and message."""

    @registry.workflow(name="broken", max_attempts=2, retry=flowq.RetryPolicy(1, jitter=False))
    async def broken(payload: dict[str, Any]) -> None:
        explode(payload["order"])

    job_id = await app.start(broken, {"order": 7})
    with caplog.at_level(logging.INFO, logger="flowq.jobs"):
        await app.create_worker().run_until_idle()
        clock.advance(timedelta(seconds=1))
        await app.create_worker().run_until_idle()
    failures = [(lvl, msg) for lvl, msg in job_lines(caplog, job_id) if "failed" in msg]
    assert [level for level, _ in failures] == ["WARNING", "ERROR"]
    assert "attempt 1 failed: ValueError: order 7 is broken; retrying at " in failures[0][1]
    assert "attempt 2 failed: ValueError: order 7 is broken; failed for good" in failures[1][1]
    assert "in explode" in failures[1][1] and "Traceback (most recent call last)" in failures[1][1]
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    for entry in job.error_history:
        assert entry.traceback is not None and "in explode" in entry.traceback
    with pytest.raises(flowq.JobFailedError, match="is failed: ValueError: order 7 is broken"):
        await app.result(job_id, timeout=1)
