"""SQL claims read each workflow's due jobs from its own index range and merge them
(``flowq.store.sql.postgres.claim_statement``, where names are SQL literals, and the
SQLite claim); more than ``MERGED_CLAIM_WORKFLOWS`` workflows fall back to one scan."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import make_url

import flowq
from flowq.store.sql import SqlStore
from flowq.store.sql.postgres import MERGED_CLAIM_WORKFLOWS
from flowq_testing import FakeClock

pytestmark = [pytest.mark.anyio]

ODD_NAMES = ["it's", "back\\slash", "quote'\\'; DROP TABLE flowq_jobs; --", "{braces}"]
MANY_NAMES = [f"many.{n:02d}" for n in range(MERGED_CLAIM_WORKFLOWS + 3)]
registry = flowq.Registry()


async def _noop(payload: dict[str, Any]) -> None:
    """Never run here: the tests drive the store verbs themselves."""


for _name in [*ODD_NAMES, *MANY_NAMES, "other"]:
    registry.workflow(name=_name)(type(_noop)(_noop.__code__, globals(), "noop"))


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind."""
    name = "postgres_url" if request.param == "postgres" else "sqlite_url"
    found: str = request.getfixturevalue(name)
    return found


@pytest.mark.parametrize("names", [ODD_NAMES, MANY_NAMES], ids=["odd names", "many"])
async def test_claims_take_listed_workflows_in_claim_order(url: str, names: list[str]) -> None:
    """Jobs of the listed workflows are claimed by priority, then id, across
    workflows; jobs of other workflows stay."""
    clock = FakeClock()
    store = SqlStore(url, clock=clock)
    await store.migrate()
    try:
        async with flowq.App(store=store, registry=registry, clock=clock) as app:
            other = await app.add_job("other", {}, priority=50)
            priorities = {}
            for index, name in enumerate(names):
                priorities[await app.add_job(name, {}, priority=index % 3)] = index % 3
            expected = sorted(priorities, key=lambda job_id: (-priorities[job_id], job_id))
            claimed = []
            while found := await store.claim_jobs("w", 3, names):
                claimed += [c.job.id for c in found]
            assert claimed == expected
            job = await app.get_job(other)
            assert job is not None and job.status is flowq.JobStatus.PENDING
    finally:
        await store.close()


async def _plan_cache_modes(store: SqlStore) -> tuple[str, str]:
    """The setting on the claim connection, and on a connection from the pool."""
    async with store._driver("claim") as claim_driver:
        on_claim = await claim_driver.fetchval("SHOW plan_cache_mode")
        async with store._driver() as pooled:
            on_pool = await pooled.fetchval("SHOW plan_cache_mode")
    return str(on_claim), str(on_pool)


@pytest.mark.postgres
@pytest.mark.parametrize("limit", [1, 7, 40])
async def test_postgres_claims_plan_once_and_keep_it_to_the_claim_connection(
    postgres_url: str, limit: int
) -> None:
    """The claim connection runs generic plans (re-planning cost more than a claim),
    with the limit in the statement, so each limit claims exactly that many; the
    pool's other connections keep PostgreSQL's default."""
    store = SqlStore(postgres_url)
    await store.migrate()
    try:
        async with flowq.App(store=store, registry=registry) as app:
            await app.add_jobs([flowq.JobSpec("other", {}) for _ in range(3 * limit)])
            for _ in range(3):  # past the planner's five custom plans in all
                assert len(await store.claim_jobs("w", limit, ["other"])) == limit
            assert await _plan_cache_modes(store) == ("force_generic_plan", "auto")
    finally:
        await store.close()


@pytest.mark.postgres
async def test_behind_pgbouncer_the_claim_connection_keeps_the_default_plans(
    postgres_url: str,
) -> None:
    """With ``?pgbouncer=1`` nothing is set on a session (it would reach other clients
    of the pooler): claims still work."""
    store = SqlStore(make_url(postgres_url).update_query_dict({"pgbouncer": "1"}))
    await store.migrate()
    try:
        async with flowq.App(store=store, registry=registry) as app:
            await app.add_jobs([flowq.JobSpec("other", {}) for _ in range(2)])
            assert len(await store.claim_jobs("w", 2, ["other"])) == 2
            assert await _plan_cache_modes(store) == ("auto", "auto")
    finally:
        await store.close()
