"""Enqueueing inside the caller's own transaction, and concurrent idempotent adds."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import flowq

pytestmark = pytest.mark.anyio

registry = flowq.Registry()


@registry.workflow(name="tx.notify")
async def notify(payload: dict[str, Any]) -> None:
    """A workflow to enqueue."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated-on-demand database of each dialect."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


async def test_job_commits_and_rolls_back_with_the_users_transaction(database_url: str) -> None:
    """A job added on the user's own engine exists only if the user's transaction commits."""
    async with flowq.App(database_url, registry=registry, auto_migrate=True) as app:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
                await connection.commit()
                async with connection.begin():
                    await connection.execute(text("INSERT INTO orders (id) VALUES (1)"))
                    kept = await app.start(notify, {"order": 1}, connection=connection)
                transaction = await connection.begin()
                await connection.execute(text("INSERT INTO orders (id) VALUES (2)"))
                dropped = await app.start(notify, {"order": 2}, connection=connection)
                await transaction.rollback()
                orders = (await connection.execute(text("SELECT id FROM orders"))).scalars()
                assert list(orders) == [1]
        finally:
            await engine.dispose()
        assert await app.get_job(kept) is not None
        assert [e.event_type for e in await app.get_job_events(kept)] == ["added"]
        assert await app.get_job(dropped) is None
        assert await app.get_job_events(dropped) == []


async def test_an_async_session_is_accepted_as_connection(database_url: str) -> None:
    """connection= takes an ORM AsyncSession too: the job joins the session's
    transaction and commits or rolls back with it."""
    async with flowq.App(database_url, registry=registry, auto_migrate=True) as app:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
            async with AsyncSession(engine) as session:
                await session.execute(text("INSERT INTO invoices (id) VALUES (1)"))
                kept = await app.start(notify, {"invoice": 1}, connection=session)
                await session.commit()
            async with AsyncSession(engine) as session:
                await session.execute(text("INSERT INTO invoices (id) VALUES (2)"))
                dropped = await app.add_job("tx.notify", {"invoice": 2}, connection=session)
                await session.rollback()
        finally:
            await engine.dispose()
        assert await app.get_job(kept) is not None
        assert await app.get_job(dropped) is None


async def test_connection_of_another_database_kind_is_refused(
    sqlite_url: str, tmp_path: Any
) -> None:
    """connection= must be on the same kind of database as the App."""
    async with flowq.App(sqlite_url, registry=registry, auto_migrate=True) as app:
        engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/x")
        connection = engine.connect()
        # The connection object is never opened: the dialect check comes first.
        with pytest.raises(flowq.ValidationError, match="postgresql"):
            await app.start(notify, {}, connection=connection)  # type: ignore[arg-type]
        await engine.dispose()
        assert await app.get_jobs() == []


@pytest.mark.postgres
async def test_concurrent_adds_with_one_key_make_one_job(postgres_url: str) -> None:
    """Twenty concurrent starts with the same idempotency key all return one job id."""
    ids: list[int] = []
    async with flowq.App(postgres_url, registry=registry) as app:

        async def add(n: int) -> None:
            ids.append(await app.start(notify, {"n": n}, idempotency_key="only-once"))

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(add, n)
        assert len(set(ids)) == 1
        assert len(await app.get_jobs()) == 1
        assert len(await app.get_job_events(ids[0])) == 1
