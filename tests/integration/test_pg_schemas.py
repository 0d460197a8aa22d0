"""Two flowq installations in two PostgreSQL schemas of one database never see, run,
wake or block each other's jobs; migrations create and fill each schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import flowq
from flowq.store.sql import SqlStore
from flowq.store.sql.migrate import latest_version
from tests.pg_server import asyncpg_dsn, dropping_schemas

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

SCHEMA_A = "jobs_a"
SCHEMA_B = 'Jobs "B" it\'s'
"""Mixed case, a space, double and single quotes: every identifier must be quoted."""


@pytest.fixture
def two_schemas(postgres_url: str) -> Iterator[str]:
    """The test database (flowq's tables in ``public``); the schemas are dropped after."""
    with dropping_schemas(postgres_url, SCHEMA_A, SCHEMA_B) as url:
        yield url


def _registry(runs: list[str], name: str) -> flowq.Registry:
    registry = flowq.Registry()

    @registry.workflow(name="shared.name")
    async def record(payload: dict[str, int]) -> str:
        runs.append(f"{name}:{payload['n']}")
        return name

    return registry


@pytest.fixture
async def apps(two_schemas: str) -> AsyncIterator[tuple[flowq.App, flowq.App, list[str]]]:
    """An App in schema A and one in schema B (migrated), sharing one list of runs."""
    runs: list[str] = []
    app_a = flowq.App(two_schemas, schema=SCHEMA_A, registry=_registry(runs, "a"))
    app_b = flowq.App(two_schemas, schema=SCHEMA_B, registry=_registry(runs, "b"))
    await app_a.migrate()
    await app_b.migrate()
    async with app_a, app_b:
        yield app_a, app_b, runs


async def test_migrate_creates_each_schema_once(two_schemas: str) -> None:
    """migrate creates a missing schema and applies every migration inside it; a
    second run applies nothing; each schema has its own functions notifying on its own
    channel; the tables in public are untouched."""
    every = latest_version("postgresql")
    for schema in (SCHEMA_A, SCHEMA_B):
        store = SqlStore(two_schemas, schema=schema)
        try:
            assert len(await store.migrate()) == every
            assert await store.migrate() == []
            await store.open()
        finally:
            await store.close()
    connection = await asyncpg.connect(asyncpg_dsn(two_schemas))
    try:
        found = await connection.fetch(
            "SELECT n.nspname, p.prosrc FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE p.proname = 'flowq_notify_new_jobs'"
        )
        bodies = {row["nspname"]: row["prosrc"] for row in found}
        assert set(bodies) == {"public", SCHEMA_A, SCHEMA_B}
        assert "'flowq_jobs'" in bodies["public"]
        assert "flowq_jobs.jobs_a" in bodies[SCHEMA_A]
        assert "flowq_jobs.Jobs \"B\" it''s" in bodies[SCHEMA_B]
        tables = await connection.fetch(
            "SELECT table_schema, count(*) FROM information_schema.tables "
            "WHERE table_name LIKE 'flowq%' GROUP BY table_schema"
        )
        counts = {row[0]: row[1] for row in tables}
        assert counts[SCHEMA_A] == counts[SCHEMA_B] == counts["public"]
    finally:
        await connection.close()


async def test_jobs_stay_in_their_schema(
    two_schemas: str, apps: tuple[flowq.App, flowq.App, list[str]]
) -> None:
    """A job added in one schema is invisible to the other App and never run by its
    worker, though both register the same workflow name; public sees neither."""
    app_a, app_b, runs = apps
    id_a = await app_a.add_job("shared.name", {"n": 1})
    id_b = await app_b.add_job("shared.name", {"n": 2})
    assert [job.id for job in await app_a.get_jobs()] == [id_a]
    assert [job.id for job in await app_b.get_jobs()] == [id_b]
    await app_a.create_worker(notify=False).run_until_idle()
    assert runs == ["a:1"]
    job_b = await app_b.get_job(id_b)
    assert job_b is not None and job_b.status == flowq.JobStatus.PENDING
    await app_b.create_worker(notify=False).run_until_idle()
    assert runs == ["a:1", "b:2"]
    assert await app_a.result(id_a, timeout=5) == "a"
    assert await app_b.result(id_b, timeout=5) == "b"
    async with flowq.App(two_schemas) as public:
        assert await public.get_jobs() == []


async def test_notifications_stay_in_their_schema(
    two_schemas: str, apps: tuple[flowq.App, flowq.App, list[str]]
) -> None:
    """A job added in B wakes B's listener and not A's: A's listener then receives a
    marker sent on A's channel after B's job was committed, and nothing before it."""
    _app_a, app_b, _runs = apps
    heard: dict[str, list[str]] = {"a": [], "b": []}
    connected = {"a": anyio.Event(), "b": anyio.Event()}
    got = {"a": anyio.Event(), "b": anyio.Event()}

    def hearing(name: str) -> Any:
        def on_wake(hint: str) -> None:
            if not connected[name].is_set():
                connected[name].set()  # the hint every (re)connection delivers
                return
            heard[name].append(hint)
            got[name].set()

        return on_wake

    # Listeners of other store objects: the adding App's own local wake-ups are not
    # involved, only LISTEN/NOTIFY.
    store_a = SqlStore(two_schemas, schema=SCHEMA_A)
    store_b = SqlStore(two_schemas, schema=SCHEMA_B)
    try:
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(store_a.listen, hearing("a"))
                tasks.start_soon(store_b.listen, hearing("b"))
                await connected["a"].wait()
                await connected["b"].wait()
                await app_b.add_job("shared.name", {"n": 1})
                await got["b"].wait()
                async with store_a.engine.begin() as connection:
                    await store_a.dialect.notify(connection, "marker")
                await got["a"].wait()
                tasks.cancel_scope.cancel()
    finally:
        await store_a.close()
        await store_b.close()
    assert heard["a"] == ["marker"]
    assert heard["b"] and "marker" not in heard["b"]


async def test_locks_are_per_schema(apps: tuple[flowq.App, flowq.App, list[str]]) -> None:
    """While B's migration and group-claim locks are held, A migrates and a worker of
    A with group limits claims and runs a job."""
    app_a, app_b, runs = apps
    store_b: Any = app_b.store
    async with store_b.engine.begin() as held:
        await store_b.dialect.lock_migrations(held)
        await store_b.dialect.lock_group_claims(held)
        with anyio.fail_after(10):
            assert await app_a.migrate() == []
            job_id = await app_a.add_job("shared.name", {"n": 3}, group="g")
            await app_a.create_worker(notify=False, group_concurrency=1).run_until_idle()
            assert await app_a.result(job_id, timeout=5) == "a"
    assert runs == ["a:3"]


async def test_connection_must_search_the_schema(
    two_schemas: str, apps: tuple[flowq.App, flowq.App, list[str]]
) -> None:
    """start(connection=) on a schema's App: a connection that finds flowq's tables in
    public is refused with ValidationError naming both; one whose search_path starts
    with the schema adds the job in the caller's transaction."""
    app_a, _app_b, _runs = apps
    plain = create_async_engine(app_a.store.url)  # type: ignore[attr-defined]
    searching = create_async_engine(
        app_a.store.url,  # type: ignore[attr-defined]
        connect_args={"server_settings": {"search_path": f"{SCHEMA_A}, public"}},
    )
    try:
        async with plain.begin() as connection:
            with pytest.raises(flowq.ValidationError, match=f"'public'.*'{SCHEMA_A}'"):
                await app_a.add_job("shared.name", {"n": 1}, connection=connection)
        async with searching.begin() as connection:
            job_id = await app_a.add_job("shared.name", {"n": 2}, connection=connection)
    finally:
        await plain.dispose()
        await searching.dispose()
    assert [job.id for job in await app_a.get_jobs()] == [job_id]
