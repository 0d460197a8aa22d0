"""A worker and the maintenance verbs over more rows than a statement may have
parameters, and maintenance that one bad job cannot block (issue 7, item 3)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text

import flowq
from flowq import JobStatus
from flowq.store import rows
from flowq.store.base import NewToken
from flowq.store.sql import SqlStore
from flowq.store.sql.runs import RECLAIM_CHUNK
from flowq.store.sql.schema import tokens
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio

VOLUME = 40_000
SQL_STORES = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def add_dependants(app: flowq.App, workflow: flowq.Workflow[Any, Any], root: int) -> None:
    for _ in range(0, VOLUME, 5000):
        await app.add_jobs([flowq.JobSpec(workflow, {}, depends_on=[root])] * 5000)


def sql_store(app: flowq.App) -> SqlStore:
    assert isinstance(app.store, SqlStore)
    return app.store


async def status_of(app: flowq.App, job_id: int) -> str:
    """Read straight from the table (the job's row may not decode)."""
    async with sql_store(app).engine.connect() as conn:
        found = await conn.execute(
            text("SELECT status FROM flowq_jobs WHERE id = :id"), {"id": job_id}
        )
        return str(found.scalar_one())


@pytest.mark.slow
async def test_a_worker_survives_a_job_with_40000_dependants_failing_for_good(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """The failure is recorded, every dependant is cancelled, and the worker runs on."""

    @registry.workflow(name="doomed", max_attempts=1)
    async def doomed(payload: dict[str, Any]) -> None:
        raise RuntimeError("no")

    @registry.workflow(name="after")
    async def after(payload: dict[str, Any]) -> str:
        return "ran"

    root = await app.start(doomed, {})
    await add_dependants(app, after, root)
    await app.create_worker(concurrency=4).run_until_idle()
    job = await app.get_job(root)
    assert job is not None and job.status is JobStatus.FAILED
    assert len(await app.get_jobs(status="cancelled", limit=None)) == VOLUME
    later = await app.start(after, {})
    await app.create_worker(concurrency=4).run_until_idle()
    assert await app.result(later, timeout=5) == "ran"


@SQL_STORES
async def test_one_bad_job_does_not_block_reclaim(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A stuck job whose failure cannot be written (its row does not decode) is logged
    and left processing; every other stuck job, in every chunk, is taken back."""

    @registry.workflow(name="work")
    async def work(payload: dict[str, Any]) -> None:
        """Never runs here."""

    half = RECLAIM_CHUNK + 100
    await app.add_jobs([flowq.JobSpec(work, {})] * half)
    [bad, last_try] = await app.add_jobs([flowq.JobSpec(work, {}, max_attempts=1)] * 2)
    await app.add_jobs([flowq.JobSpec(work, {})] * half)
    dependant = await app.start(work, {}, depends_on=[last_try])
    claimed = await app.store.claim_jobs("gone", 3 * RECLAIM_CHUNK, ["work"])
    assert len(claimed) == 2 * half + 2
    async with sql_store(app).engine.begin() as conn:
        await conn.execute(
            text("UPDATE flowq_jobs SET error_history = 'not json' WHERE id = :id"), {"id": bad}
        )
    clock.advance(timedelta(minutes=11))
    with caplog.at_level(logging.ERROR, logger="flowq.maintenance"):
        assert await app.reclaim_stuck_jobs(10) == 2 * half + 1
        assert await app.reclaim_stuck_jobs(10) == 0
    assert await status_of(app, bad) == "processing"
    assert await status_of(app, last_try) == "failed"
    assert await status_of(app, dependant) == "cancelled"
    assert len(await app.get_jobs(status="pending", limit=None)) == 2 * half
    logged = [r for r in caplog.records if r.name == "flowq.maintenance"]
    assert len(logged) == 2 and all(str(bad) in r.getMessage() for r in logged)


@pytest.mark.slow
@SQL_STORES
async def test_expire_40000_timed_out_tokens(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Token expiry settles any number of timed-out tokens (in chunks) and wakes the
    jobs that wait on them."""

    @registry.workflow(name="approval")
    async def approval(payload: dict[str, Any], ctx: flowq.Context) -> bool:
        token = await ctx.create_token(timeout="1h")
        return (await ctx.wait_for_token(token)).ok

    job_id = await app.start(approval, {})
    await app.create_worker().run_until_idle()
    now = clock.now()
    rows_ = [
        rows.token_row(
            NewToken(id=f"bulk-{i:05}", tags=(), timeout_at=now + timedelta(minutes=1)), None, now
        )
        for i in range(VOLUME)
    ]
    async with sql_store(app).engine.begin() as conn:
        await conn.execute(insert(tokens), rows_)
    clock.advance(timedelta(hours=2))
    assert await app.expire_timed_out_tokens() == VOLUME + 1
    assert await app.expire_timed_out_tokens() == 0
    await app.create_worker().run_until_idle()
    assert await app.result(job_id, timeout=5) is False
