"""Migration 0003 on a database that already holds jobs waiting on prerequisites: they
are counted as blocked (out of the claim index) and released by the completion of
their last prerequisite, like jobs added after it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

import flowq
from flowq.store.base import Completion
from flowq.store.sql import SqlStore
from flowq.store.sql.migrate import load_migrations
from flowq_testing import FakeClock
from tests.migration.conftest import NewDatabase

pytestmark = pytest.mark.anyio

registry = flowq.Registry()


@registry.workflow(name="backfill.job")
async def job(payload: dict[str, Any]) -> None:
    """Never run here: the test drives the store verbs itself."""


_INSERT = text(
    "INSERT INTO flowq_jobs (id, workflow, payload, status, priority, attempts, max_attempts, "
    "run_at, ready_at, tags, force_kill_on_timeout, retry, error_history, lease_id, "
    "created_at, updated_at, finished_at) VALUES (:id, 'backfill.job', '{}', :status, 0, 0, 3, "
    ":at, :ready_at, :tags, false, :retry, '[]', 0, :at, :at, :finished_at)"
)
_RETRY = '{"delay_ms": 1000, "backoff": true, "max_delay_ms": 3600000, "jitter": true}'


async def _database_at_version_2(url: str, dialect: str, at: datetime) -> None:
    """Migrations 1 and 2, then: 1 pending, 2 completed; 3 waits on 1 and 2, 4 on 2."""
    store = SqlStore(url)
    try:
        async with store.engine.begin() as connection:
            for migration in load_migrations(dialect)[:2]:
                for statement in migration.statements:
                    await connection.exec_driver_sql(statement)
                await connection.execute(
                    text("INSERT INTO flowq_schema_version VALUES (:version, :name, :at)"),
                    {"version": migration.version, "name": migration.name, "at": at},
                )
            tags = [] if dialect == "postgresql" else "[]"
            moment = at if dialect == "postgresql" else at.replace(tzinfo=None).isoformat(" ")
            for job_id, status in (
                (1, "pending"),
                (2, "completed"),
                (3, "pending"),
                (4, "pending"),
            ):
                done = moment if status == "completed" else None
                await connection.execute(
                    _INSERT,
                    {
                        "id": job_id,
                        "status": status,
                        "at": moment,
                        "ready_at": None if done else moment,
                        "tags": tags,
                        "retry": _RETRY,
                        "finished_at": done,
                    },
                )
            await connection.execute(
                text("INSERT INTO flowq_job_dependencies VALUES (3, 1), (3, 2), (4, 2)")
            )
    finally:
        await store.close()


async def test_jobs_waiting_before_the_migration_are_blocked_until_released(
    dialect: str, new_database: NewDatabase
) -> None:
    """Job 3 (waiting on pending job 1) is blocked; job 4 (its prerequisite completed)
    stays claimable; completing job 1 releases job 3."""
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    url = await new_database()
    await _database_at_version_2(url, dialect, clock.now())
    store = SqlStore(url, clock=clock)
    try:
        assert (await store.migrate())[0] == "0003_blocked_dependants"  # and later ones
        async with flowq.App(store=store, registry=registry, clock=clock) as app:
            blocked = await app.get_job(3)
            assert blocked is not None and blocked.pending_reason is not None
            claimed = {c.job.id: c for c in await store.claim_jobs("w", 10, ["backfill.job"])}
            assert sorted(claimed) == [1, 4]
            assert await store.complete_jobs([Completion(claimed[1].lease, None)]) == [True]
            [released] = await store.claim_jobs("w", 10, ["backfill.job"])
            assert released.job.id == 3
    finally:
        await store.close()
