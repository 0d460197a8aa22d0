"""A dependant added while its prerequisite completes, on PostgreSQL under READ COMMITTED.

Adding a job with dependencies locks its prerequisites (FOR SHARE) and counts those
not completed into the new job's ``blocked_by``. A completion that starts while such
an add is open waits for the prerequisite's row; its statement's snapshot was taken
before the add committed, so the statement itself cannot see the new dependant. The
``flowq_jobs_unblock_dependants`` trigger runs its statements with fresh snapshots
after the prerequisite's row is updated, so it does. The test holds the add's
transaction open until the completion is seen waiting for it (``pg_blocking_pids``),
then commits: the dependant must become claimable.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from sqlalchemy import text

import flowq
from flowq.store.base import Completion
from flowq.store.sql import SqlStore
from flowq_testing import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

registry = flowq.Registry()


@registry.workflow(name="races.job")
async def job(payload: dict[str, Any]) -> None:
    """Never run here: the test drives the store verbs itself."""


async def _wait_until_blocked_by(store: SqlStore, pid: int) -> None:
    """Return once some session waits for a lock held by session ``pid``."""
    with anyio.fail_after(10):
        while True:
            async with store.engine.connect() as connection:
                result = await connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE CAST(:pid AS integer) = ANY(pg_blocking_pids(pid))"
                    ),
                    {"pid": pid},
                )
                if result.scalar_one():
                    return
            await anyio.sleep(0.01)


async def test_dependant_added_while_its_prerequisite_completes(postgres_url: str) -> None:
    """The completion waits for the add's lock; after both, the dependant is claimable."""
    clock = FakeClock()
    store = SqlStore(postgres_url, clock=clock)
    try:
        async with flowq.App(store=store, registry=registry, clock=clock) as app:
            prerequisite = await app.start(job, {})
            [claimed] = await store.claim_jobs("w", 1, ["races.job"])
            done: list[bool] = []

            async def complete() -> None:
                done.extend(await store.complete_jobs([Completion(claimed.lease, None)]))

            async with store.engine.connect() as connection, anyio.create_task_group() as tasks:
                transaction = await connection.begin()
                [dependant] = await app.add_jobs(
                    [flowq.JobSpec(job, {}, depends_on=[prerequisite])], connection=connection
                )
                pid = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
                tasks.start_soon(complete)
                await _wait_until_blocked_by(store, pid)
                await transaction.commit()
            assert done == [True]
            stored = await app.get_job(dependant)
            assert stored is not None and stored.pending_reason is None
            [released] = await store.claim_jobs("w", 10, ["races.job"])
            assert released.job.id == dependant
    finally:
        await store.close()
