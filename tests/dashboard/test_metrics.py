"""``/metrics`` in Prometheus' text format."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

import flowq
from flowq_testing import FakeClock
from tests.dashboard.workloads import Workloads

pytestmark = pytest.mark.anyio


def _value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert found is not None, series
    return float(found.group(1))


async def test_metrics_report_depth_age_counts_and_durations(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads, clock: FakeClock
) -> None:
    """Exact counts per status, per-workflow counts and ages, last-hour counts, retries,
    and a duration histogram whose count is the completed jobs."""
    await app.start(workloads.child, 1)
    failed = await app.start(workloads.broken, {})
    await app.create_worker().run_until_idle()
    await app.retry_job(failed)
    await app.create_worker().run_until_idle()
    await app.start(workloads.child, 2)
    clock.advance(timedelta(seconds=30))
    text = (await client.get("/metrics")).text
    assert _value(text, 'flowq_jobs{status="completed"}') == 1
    assert _value(text, 'flowq_jobs{status="failed"}') == 1
    assert _value(text, 'flowq_jobs{status="pending"}') == 1
    assert _value(text, "flowq_oldest_due_job_age_seconds") == pytest.approx(30, abs=1)
    assert _value(text, 'flowq_recent_jobs{workflow="child",status="pending"}') == 1
    assert (
        _value(text, 'flowq_recent_oldest_job_age_seconds{workflow="broken",status="failed"}') >= 30
    )
    assert _value(text, "flowq_jobs_completed_last_hour") == 1
    assert _value(text, "flowq_jobs_failed_last_hour") == 1
    assert _value(text, "flowq_recent_jobs_retried") == 1
    assert _value(text, 'flowq_job_duration_seconds_bucket{le="+Inf"}') == 1
    assert _value(text, "flowq_job_duration_seconds_count") == 1
    assert "# TYPE flowq_job_duration_seconds histogram" in text
