"""The overview's bounded figures: workers seen recently (from a real worker loop),
estimated counts marked as such, and a failed job's traceback on its page."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import anyio
import httpx
import pytest
from sqlalchemy import text

import flowq
from flowq.dashboard import summary
from flowq.store.sql import SqlStore
from tests.dashboard.workloads import Workloads

pytestmark = pytest.mark.anyio


async def _until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Poll the store until ``check`` holds (bounded)."""
    with anyio.fail_after(seconds):
        while True:
            if await check():
                return
            await anyio.sleep(0.02)


def _workers_table(page: str) -> str:
    found = re.search(r'<table id="workers">(.*?)</table>', page, re.S)
    assert found is not None
    return found.group(1)


async def test_overview_lists_the_workers_running_and_forgets_a_stopped_one(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """A running worker shows on the overview with its host, pid and workflows; once
    it stops cleanly it is gone."""
    worker = app.create_worker(worker_id="<w>-1", workflows=["child", "broken"])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        await _until(lambda: _has_workers(app, 1))
        page = (await client.get("/")).text
        table = _workers_table(page)
        assert "&lt;w&gt;-1" in table and "<w>" not in table
        assert "broken, child" in table
        assert re.search(r'id="workers-count">1<', page)
        await worker.stop()
    assert await app.get_workers() == []
    table = _workers_table((await client.get("/")).text)
    assert "No worker seen." in table


async def _has_workers(app: flowq.App, count: int) -> bool:
    return len(await app.get_workers()) == count


async def test_overview_marks_estimated_counts(
    app: flowq.App,
    client: httpx.AsyncClient,
    workloads: Workloads,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above the bound PostgreSQL shows the planner's estimate, marked "≈" with a note
    saying it is one; SQLite and memory count exactly. /metrics says which are."""
    monkeypatch.setattr(summary, "EXACT_UP_TO", 3)
    for n in range(6):
        await app.start(workloads.child, n)
    postgres = isinstance(app.store, SqlStore) and app.store.dialect.name == "postgresql"
    if postgres:
        assert isinstance(app.store, SqlStore)
        async with app.store.engine.begin() as connection:
            await connection.execute(text("ANALYZE flowq_jobs"))
    page = (await client.get("/")).text
    metrics = (await client.get("/metrics")).text
    failed = re.search(r'data-status="failed"[^>]*>([^<]*)<', page)
    assert failed is not None and failed.group(1) == "0"
    pending = re.search(r'data-status="pending"( data-estimated="1")?>([^<]*)<', page)
    assert pending is not None
    if postgres:
        assert pending.group(1) and pending.group(2) == "≈ 6"
        assert 'id="estimate-note"' in page and "pending (estimate)" in page
        assert 'flowq_jobs_estimated{status="pending"} 1' in metrics
    else:
        assert not pending.group(1) and pending.group(2) == "6"
        assert 'id="estimate-note"' not in page
        assert 'flowq_jobs_estimated{status="pending"} 0' in metrics
    assert 'flowq_jobs{status="pending"} 6' in metrics
    assert 'flowq_jobs_estimated{status="failed"} 0' in metrics


async def test_a_failed_job_shows_its_error_with_the_traceback_escaped(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """The job's page shows the newest error's traceback (open), as text."""
    job_id = await app.start(workloads.broken, {"message": "<script>alert(1)</script>"})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status == flowq.JobStatus.FAILED
    page = (await client.get(f"/jobs/{job_id}")).text
    errors = re.search(r'<table id="errors">(.*?)</table>', page, re.S)
    assert errors is not None
    assert '<details class="traceback" open>' in errors.group(1)
    assert "Traceback (most recent call last)" in errors.group(1)
    assert "in broken" in errors.group(1)  # the handler's frame
    assert "RuntimeError: &lt;script&gt;alert(1)&lt;/script&gt;" in errors.group(1)
    assert "<script>alert(1)" not in page
