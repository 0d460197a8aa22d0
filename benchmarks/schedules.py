"""What cron schedules cost (``python -m benchmarks.run --suite schedules``).

- ``cron_idle_look_ms``: one look at 10,000 active schedules of which none is due (what
  a worker's schedule ticker does every few seconds and whenever a tick may be due):
  median and p95 ms per look, wall clock, one worker's round trips included.
- ``cron_idle_look_server_ms`` (PostgreSQL): the server's execution time of that
  look's statements (``EXPLAIN ANALYZE``), i.e. the database time per look.
- ``cron_enqueue_1000_s``: seconds to enqueue the due ticks of 1,000 schedules (one
  job each), as workers do when they all come due together.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import flowq
from flowq.schedules import new_schedule
from flowq.store import schedule_rows
from flowq.store.sql import SqlStore
from flowq.store.sql.schema import cron_schedules
from flowq_testing import FakeClock

__all__ = ["FIGURES", "registry"]

registry = flowq.Registry()
START = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)


@registry.workflow(name="bench.scheduled")
async def scheduled(payload: dict[str, Any]) -> None:
    """The workflow every schedule starts."""


async def _fill(app: flowq.App, count: int, expression: str) -> None:
    """Store ``count`` schedules at once (one multi-row insert)."""
    store = app.store
    assert isinstance(store, SqlStore)
    rows = []
    for n in range(count):
        new = new_schedule(
            scheduled,
            name=f"bench-{n}",
            cron_expression=expression,
            timezone="UTC",
            allow_overlap=False,
            catch_up="latest",
            payload={"n": n},
            options={},
        )
        rows.append(schedule_rows.new_schedule_row(new, app.clock.now()))
    async with store.engine.begin() as conn:
        for first in range(0, count, 1000):
            await conn.execute(cron_schedules.insert(), rows[first : first + 1000])


async def idle_look_ms(app: flowq.App) -> dict[str, float]:
    """ms per look at 10,000 schedules, none due."""
    app.clock = app.store.clock = FakeClock(START)
    await _fill(app, 10_000, "0 0 1 1 *")  # next due in a year
    samples = []
    for _ in range(300):
        began = time.perf_counter()
        due = await app.store.enqueue_due_schedules()
        samples.append((time.perf_counter() - began) * 1000)
        assert due.enqueued == 0
    samples.sort()
    result = {"p50_ms": samples[len(samples) // 2], "p95_ms": samples[int(len(samples) * 0.95)]}
    store = app.store
    assert isinstance(store, SqlStore)
    if store.dialect.name == "postgresql":
        result["server_ms"] = await _server_ms(store)
    return result


async def _server_ms(store: SqlStore) -> float:
    """The server's execution time of the idle look's statements (EXPLAIN ANALYZE,
    best of 20 each)."""
    statements = [
        "SELECT * FROM flowq_cron_schedules WHERE status = 'active' AND next_run_at <= $1 "
        "ORDER BY next_run_at LIMIT 100 FOR UPDATE SKIP LOCKED",
        "SELECT min(next_run_at) FROM flowq_cron_schedules WHERE status = 'active'",
    ]
    total = 0.0
    async with store.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        for statement in statements:
            args = (START,) if "$1" in statement else ()
            times = []
            for _ in range(20):
                plan = await raw.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
                data = json.loads(plan) if isinstance(plan, str) else plan
                times.append(float(data[0]["Execution Time"]))
            total += min(times)
    return total


async def enqueue_1000_s(app: flowq.App) -> float:
    """Seconds to enqueue one due tick of each of 1,000 schedules."""
    clock = FakeClock(START)
    app.clock = app.store.clock = clock
    await _fill(app, 1000, "* * * * *")
    clock.advance(timedelta(seconds=30))
    began = time.perf_counter()
    enqueued = await app.enqueue_due_cron_jobs()
    elapsed = time.perf_counter() - began
    assert enqueued == 1000, enqueued
    return elapsed


FIGURES: list[tuple[str, Any]] = [
    ("cron_idle_look_ms", idle_look_ms),
    ("cron_enqueue_1000_s", enqueue_1000_s),
]
