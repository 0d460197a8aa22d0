"""Cron ticks enqueued exactly once by several `flowq worker` processes racing on them
(SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import flowq
from flowq.cron import CATCH_UP_ALL_LIMIT
from flowq_testing import FakeClock
from tests.acceptance import workloads
from tests.acceptance.processes import UNFINISHED, Workers, eventually, read_lines, status_counts

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCHEDULES = 20


async def test_racing_worker_processes_enqueue_each_tick_once(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """20 every-minute schedules last looked at two hours ago (catch_up="all": the 100
    latest missed ticks each) are enqueued by four worker processes started together,
    plus the ticks that come due while they run: every tick exactly once, without gaps,
    and every job run once."""
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    # An App whose clock stands two hours back stores schedules last looked at then.
    past_clock = FakeClock(two_hours_ago)
    async with flowq.App(database_url, registry=workloads.registry, clock=past_clock) as past:
        for n in range(SCHEDULES):
            await past.add_cron_job(
                f"minutely-{n}",
                "* * * * *",
                "acceptance.record",
                {"sleep": 0, "schedule": n},
                allow_overlap=True,
                catch_up="all",
            )
    names = ("w1", "w2", "w3", "w4")
    ran_files = {name: tmp_path / f"ran-by-{name}.txt" for name in names}
    procs = [
        await workers.start(
            database_url,
            "--concurrency",
            "20",
            name=name,
            env={workloads.RECORD_LOG_ENV: str(ran_files[name])},
        )
        for name in names
    ]
    expected = SCHEDULES * CATCH_UP_ALL_LIMIT

    async def caught_up_and_finished() -> bool:
        counts = await status_counts(app)
        return sum(counts.values()) >= expected and not any(counts.get(s) for s in UNFINISHED)

    async def state() -> str:
        return str(await status_counts(app))

    await eventually(caught_up_and_finished, f"{expected} ticks ran", state=state, watch=procs)
    for proc in procs:
        proc.signal(signal.SIGTERM)
    for proc in procs:
        assert await proc.exit_status(30) == 0, proc.describe()

    jobs = await app.get_jobs(limit=None)
    ticks = Counter((job.payload["schedule"], job.run_at) for job in jobs)
    twice = {tick: n for tick, n in ticks.items() if n > 1}
    assert not twice, f"ticks enqueued more than once: {list(twice)[:10]}"
    for n in range(SCHEDULES):
        runs = sorted(run_at for schedule, run_at in ticks if schedule == n)
        assert len(runs) >= CATCH_UP_ALL_LIMIT, (n, len(runs))
        gaps = [(a, b) for a, b in itertools.pairwise(runs) if b - a != timedelta(minutes=1)]
        assert not gaps, (n, gaps[:5])
    ran = Counter(int(line) for path in ran_files.values() for line in read_lines(path))
    assert set(ran) == {job.id for job in jobs}
    assert set(ran.values()) == {1}, "a scheduled job ran more than once"
