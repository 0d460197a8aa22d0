"""What the dashboard costs on a big table (``python -m benchmarks.run --suite dashboard
--db postgres``).

One ``INSERT ... SELECT generate_series`` fills ``flowq_jobs`` with 1,000,000 jobs
(copies of one real job: 90% completed, 5% pending, 3% failed, 1% processing, 1%
waiting, over ten workflows, with tags), then ``VACUUM ANALYZE`` (what autovacuum
soon does to such a table). Each page is then rendered
in-process through the ASGI app (an ``httpx.ASGITransport`` client: the dashboard's
queries, templates and response, no network), 3 warm-up requests then 15 timed ones.

- ``dashboard_<page>_ms``: median and p95 ms for the overview, the first jobs page,
  filtered first pages (status, workflow, tag), a page deep in the list (cursor), a
  job's page and ``/metrics``.
- ``dashboard_reads_ms``: median ms of each read the overview makes, to show which
  one dominates (and of ``health_report``, which the overview no longer reads: it
  counts every status exactly, as ``flowq doctor`` wants).

PostgreSQL only (SQLite has no ``generate_series``); on SQLite the figures are skipped.

Filling takes a while; to measure again on one database, fill it once and reuse it:
``python -m benchmarks.dashboard postgresql://...`` migrates it, fills it only if it
holds fewer than 1,000,000 jobs, and prints the figures.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

import flowq
from flowq.dashboard import create_app
from flowq.store.report import EXACT_UP_TO
from flowq.store.sql import SqlStore

__all__ = ["FIGURES", "FILL_ROWS", "JOBS", "registry"]

registry = flowq.Registry()
JOBS = 1_000_000
WARMUP, SAMPLES = 3, 15


@registry.workflow(name="wf0")
async def template(payload: dict[str, Any]) -> None:
    """The workflow of the job every row is copied from."""


FILL_ROWS = """
INSERT INTO flowq_jobs (
    workflow, payload, status, priority, attempts, max_attempts, run_at, ready_at,
    next_attempt_at, tags, idempotency_key, group_name, timeout_ms, force_kill_on_timeout,
    retry, dead_letter, dead_letter_job_id, progress, output, error_history, failure_reason,
    pending_reason, wait_until, wait_token_id, lease_id, locked_by, locked_at, created_at,
    updated_at, started_at, completed_at, last_failed_at, last_retried_at, last_cancelled_at,
    finished_at, parent_job_id, parent_outcome_seq)
SELECT
    s.workflow, t.payload, s.status, t.priority,
    CASE WHEN s.status = 'pending' THEN 0 ELSE 1 END, t.max_attempts,
    s.at, s.ready,
    NULL, ARRAY['tenant-' || (g % 100)], NULL, NULL, NULL, false,
    t.retry, NULL, NULL, NULL,
    CASE WHEN s.status = 'completed' THEN '{{"ok": true}}' END, t.error_history,
    CASE WHEN s.status = 'failed' THEN 'handler_error' END,
    NULL, s.wake, s.token,
    CASE WHEN s.status = 'processing' THEN 1 ELSE 0 END,
    CASE WHEN s.status = 'processing' THEN 'bench-worker' END,
    CASE WHEN s.status = 'processing' THEN s.at END,
    s.at, s.at,
    CASE WHEN s.status <> 'pending' THEN s.at END,
    CASE WHEN s.status = 'completed' THEN s.at + (g % 5000) * interval '1 millisecond' END,
    CASE WHEN s.status = 'failed' THEN s.at END, NULL,
    CASE WHEN s.status = 'cancelled' THEN s.at END,
    CASE WHEN s.status IN ('completed', 'failed', 'cancelled') THEN s.at END, NULL, NULL
FROM generate_series(1, :count) AS g
CROSS JOIN (SELECT * FROM flowq_jobs WHERE id = :template) AS t
CROSS JOIN LATERAL ({rows}) AS s
"""
"""Copies of the job ``:template``, ``:count`` of them (``g`` counts them). ``{rows}``
is a ``SELECT`` of each copy's ``workflow``, ``status``, ``at`` (its creation, start
and finish time), ``ready`` (its ``ready_at``), ``wake`` (``wait_until``) and ``token``
(``wait_token_id``); the other columns follow from its status."""

FILL = FILL_ROWS.format(
    rows="""SELECT 'wf' || (g % 10) AS workflow, x.status, x.at,
    CASE WHEN x.status = 'pending' THEN x.at END AS ready,
    CASE WHEN x.status = 'waiting' THEN x.at + interval '1 day' END AS wake,
    NULL AS token
    FROM (SELECT
        CASE WHEN g % 100 < 90 THEN 'completed' WHEN g % 100 < 95 THEN 'pending'
             WHEN g % 100 < 98 THEN 'failed' WHEN g % 100 < 99 THEN 'processing'
             ELSE 'waiting' END AS status,
        now() - (:count - g) * interval '100 milliseconds' AS at) AS x"""
)


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


async def _timed(call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return _summary(samples)


async def pages_ms(app: flowq.App) -> dict[str, Any]:
    """ms per page and per overview read with 1,000,000 jobs stored."""
    store = app.store
    if not isinstance(store, SqlStore) or store.engine.dialect.name != "postgresql":
        return {"skipped": "PostgreSQL only"}
    start = time.perf_counter()
    first = await _fill(app, store)
    return {"fill_s": round(time.perf_counter() - start, 1), **await _measure(app, first)}


async def _fill(app: flowq.App, store: SqlStore) -> int:
    """Add the template job and its 1,000,000 copies; return the template's id."""
    first = await app.start(template, {"n": 1})
    async with store.engine.begin() as connection:
        await connection.execute(text(FILL), {"count": JOBS, "template": first})
    async with store.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        # What autovacuum does to a table this size soon after: statistics for the
        # planner, and the visibility map that lets counts scan the status index only.
        await connection.execute(text("VACUUM ANALYZE flowq_jobs"))
    return first


async def _measure(app: flowq.App, first: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    middle = first + JOBS // 2
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(app)), base_url="http://bench"
    )
    async with client:
        for name, path in [
            ("overview", "/"),
            ("jobs_first_page", "/jobs"),
            ("jobs_failed", "/jobs?status=failed"),
            ("jobs_workflow", "/jobs?workflow=wf3"),
            ("jobs_tag", "/jobs?tags=tenant-7&tag_mode=all"),
            ("jobs_deep_cursor", f"/jobs?cursor={middle}"),
            ("jobs_search_key", "/jobs?q=no-such-key"),
            ("job_detail", f"/jobs/{middle}"),
            ("metrics", "/metrics"),
        ]:

            async def get(path: str = path) -> None:
                response = await client.get(path)
                assert response.status_code == 200, (path, response.status_code)

            results[f"dashboard_{name}_ms"] = await _timed(get)
            print(f"    {name}: {results[f'dashboard_{name}_ms']}", flush=True)
    reads: dict[str, Callable[[], Awaitable[Any]]] = {
        "count_jobs": lambda: app.store.count_jobs(timedelta(minutes=10), exact_up_to=EXACT_UP_TO),
        "workers": app.get_workers,
        "health_report": app.health_report,
        "newest_1000": lambda: app.get_jobs(limit=1000),
        "completed_1000": lambda: app.get_jobs(status="completed", limit=1000),
        "failed_1000": lambda: app.get_jobs(status="failed", limit=1000),
        "processing_200": lambda: app.get_jobs(status="processing", limit=200),
    }
    results["dashboard_reads_ms"] = {
        name: (await _timed(read))["p50_ms"] for name, read in reads.items()
    }
    return results


FIGURES: list[tuple[str, Any]] = [("dashboard_1m_jobs", pages_ms)]


async def _reuse(url: str) -> None:
    """Measure on ``url``, filling it first only if it holds too few jobs."""
    await flowq.App(url).migrate()
    async with flowq.App(url, registry=registry) as app:
        store = app.store
        assert isinstance(store, SqlStore)
        async with store.engine.connect() as connection:
            found = await connection.execute(
                text("SELECT min(id), count(*) FROM flowq_jobs WHERE workflow = 'wf0'")
            )
            first, count = found.one()
        if count < JOBS // 10:
            first = await _fill(app, store)
        print(await _measure(app, int(first)), flush=True)


if __name__ == "__main__":
    asyncio.run(_reuse(sys.argv[1]))
