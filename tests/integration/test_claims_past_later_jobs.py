"""Claims pass over jobs due later (delayed, waiting on a timer, retrying after a
backoff) that come first in claim order, by their claim-index entries alone
(migration 0006 put ``ready_at`` in the claim indexes): a long-sleeping backlog of a
workflow does not make each claim of that workflow read its rows."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

import flowq
from flowq.store.sql import SqlStore
from flowq.store.sql.postgres import claim_statement
from flowq_testing import FakeClock

pytestmark = [pytest.mark.anyio]
LATER = 300
registry = flowq.Registry()


@registry.workflow(name="sleepy")
async def sleepy(payload: dict[str, Any]) -> None:
    """Never run here: the tests drive the store verbs themselves."""


@registry.workflow(name="sleepy.other")
async def other(payload: dict[str, Any]) -> None:
    """A second workflow, for the merged claim of several."""


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind."""
    name = "postgres_url" if request.param == "postgres" else "sqlite_url"
    found: str = request.getfixturevalue(name)
    return found


async def _add_later_then_due(app: flowq.App) -> tuple[list[int], list[int]]:
    """:data:`LATER` jobs of each workflow due tomorrow, then 4 due ones of each (at
    higher ids, so the later ones come first in claim order)."""
    later, due = [], []
    for workflow in (sleepy, other):
        later += await app.add_jobs(
            [flowq.JobSpec(workflow, {"n": n}, delay=timedelta(days=1)) for n in range(LATER)]
        )
    for workflow in (sleepy, other):
        due += await app.add_jobs([flowq.JobSpec(workflow, {"n": n}) for n in range(4)])
    return later, due


async def test_claims_pass_over_jobs_due_later_and_take_them_when_due(url: str) -> None:
    """Due jobs are claimed in claim order past the jobs due later; those are claimed
    once their time comes."""
    clock = FakeClock()
    store = SqlStore(url, clock=clock)
    await store.migrate()
    try:
        async with flowq.App(store=store, registry=registry, clock=clock) as app:
            later, due = await _add_later_then_due(app)
            workflows = [sleepy.name, other.name]
            claimed = [c.job.id for c in await store.claim_jobs("w", 10, workflows)]
            assert claimed == sorted(due)
            assert await store.claim_jobs("w", 10, [sleepy.name]) == []
            clock.advance(timedelta(days=1))
            claimed = [c.job.id for c in await store.claim_jobs("w", 3, [sleepy.name])]
            assert claimed == later[:3]
    finally:
        await store.close()


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a JSON plan, depth first."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


@pytest.mark.postgres
@pytest.mark.parametrize("workflows", [("sleepy",), ("sleepy", "sleepy.other")])
async def test_postgres_claims_read_no_row_of_a_job_due_later(
    postgres_url: str, workflows: tuple[str, ...]
) -> None:
    """The claim as the claim connection runs it (a generic plan) checks due times in
    ``ix_flowq_jobs_claim_workflow``: no row of the jobs due later is read and
    dropped by a filter."""
    store = SqlStore(postgres_url)
    await store.migrate()
    try:
        async with flowq.App(store=store, registry=registry) as app:
            await _add_later_then_due(app)
            async with store.engine.connect() as connection:
                await connection.exec_driver_sql("ANALYZE flowq_jobs")
                await connection.commit()
                driver: Any = (await connection.get_raw_connection()).driver_connection
                transaction = driver.transaction()
                await transaction.start()
                try:  # rolled back: the claim is not kept
                    await driver.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    await driver.execute(f"PREPARE claim AS {claim_statement(workflows, 4)}")
                    names = "{" + ",".join(f'"{name}"' for name in workflows) + "}"
                    found = await driver.fetchval(
                        f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim(now(), '{names}', 'w')"
                    )
                finally:
                    await transaction.rollback()
                    await driver.execute("DEALLOCATE ALL")
    finally:
        await store.close()
    document = json.loads(found) if isinstance(found, str) else found  # a codec may decode
    nodes = _nodes(document[0]["Plan"])
    scans = [node for node in nodes if node.get("Index Name") == "ix_flowq_jobs_claim_workflow"]
    assert len(scans) == len(workflows)
    for scan in scans:
        assert "ready_at" in scan.get("Index Cond", ""), scan
        assert scan.get("Rows Removed by Filter", 0) == 0, scan
