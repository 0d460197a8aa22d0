"""Statements on the rows a worker holds find them by primary key, not by reading
every processing job (``ix_flowq_jobs_status_id``) or the whole table: their cost
stays that of the jobs named, however many jobs run elsewhere. Checked on the plans
the databases choose after ``ANALYZE``, which rarely sees a processing job."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

import flowq
from flowq.store.base import Lease
from flowq.store.sql import SqlStore
from flowq.store.sql.base import held
from flowq.store.sql.postgres import COMPLETE_JOBS, RECORD_CALLS
from flowq.store.sql.schema import jobs

pytestmark = [pytest.mark.anyio]
registry = flowq.Registry()


@registry.workflow(name="held.noop")
async def noop(payload: dict[str, Any]) -> None:
    """Never run: the tests claim jobs on the store."""


async def _running(store: SqlStore) -> list[Lease]:
    """2,000 jobs, 200 of them claimed (processing), statistics refreshed."""
    async with flowq.App(store=store, registry=registry) as app:
        await app.add_jobs([flowq.JobSpec(noop, {}) for _ in range(2000)])
    claimed = await store.claim_jobs("w", 200, ["held.noop"])
    async with store.engine.connect() as connection:
        await connection.exec_driver_sql("ANALYZE")
        await connection.commit()
    return [job.lease for job in claimed]


def _statement(leases: list[Lease]) -> Any:
    return update(jobs).where(held(leases)).values(priority=1)


async def test_sqlite_finds_held_rows_by_primary_key(sqlite_url: str) -> None:
    store = SqlStore(sqlite_url)
    await store.migrate()
    try:
        leases = await _running(store)
        sql = str(
            _statement(leases[:3]).compile(
                dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
            )
        )
        async with store.engine.connect() as connection:
            plan = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all()
        details = " / ".join(str(row[-1]) for row in plan)
        assert "USING INTEGER PRIMARY KEY" in details, details
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_finds_held_rows_by_primary_key(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    await store.migrate()
    try:
        leases = (await _running(store))[:10]
        ids = [lease.job_id for lease in leases]
        lease_ids = [lease.lease_id for lease in leases]
        heartbeat = str(
            select(jobs.c.id)
            .where(held(leases))
            .compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        )
        async with store._driver() as driver:
            transaction = driver.transaction()
            await transaction.start()
            try:
                plans = {
                    "heartbeat": await driver.fetch("EXPLAIN " + heartbeat),
                    "complete": await driver.fetch(
                        "EXPLAIN " + COMPLETE_JOBS, ids, lease_ids, ["null"] * 10, None
                    ),
                    "record": await driver.fetch(
                        "EXPLAIN " + RECORD_CALLS,
                        ids,
                        lease_ids,
                        [1] * 10,
                        ["s"] * 10,
                        [1] * 10,
                        ["1"] * 10,
                        [None] * 10,
                        [None] * 10,
                        [None] * 10,
                    ),
                }
            finally:
                await transaction.rollback()
        for name, rows in plans.items():
            text = "\n".join(row[0] for row in rows)
            assert "ix_flowq_jobs_status_id" not in text, f"{name}:\n{text}"
            assert "flowq_jobs_pkey" in text, f"{name}:\n{text}"
    finally:
        await store.close()
