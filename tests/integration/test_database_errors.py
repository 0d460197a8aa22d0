"""Database errors say what happened: a statement timeout or a full disk is not
"is the server running?"."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

import flowq
from flowq.store.sql import SqlStore
from tests.pg_server import asyncpg_dsn

pytestmark = pytest.mark.anyio


def _registry() -> flowq.Registry:
    registry = flowq.Registry()

    @registry.workflow(name="wf")
    async def wf(payload: Any) -> None:
        return None

    return registry


@pytest.mark.postgres
async def test_a_statement_timeout_on_postgres_is_reported_as_such(postgres_url: str) -> None:
    """With statement_timeout set and the jobs table locked by another session, a
    read raises DatabaseRefusedError carrying the server's message, not the
    "is the server running" hint."""
    url = make_url(postgres_url)
    dsn = asyncpg_dsn(postgres_url)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{url.database}" SET statement_timeout = 200')
        async with flowq.App(postgres_url, registry=_registry()) as app:
            await app.add_job("wf")
            locker = await asyncpg.connect(dsn)
            try:
                async with locker.transaction():
                    await locker.execute("LOCK TABLE flowq_jobs IN ACCESS EXCLUSIVE MODE")
                    with pytest.raises(flowq.DatabaseRefusedError) as raised:
                        await app.get_jobs()
            finally:
                await locker.close()
            assert "statement timeout" in str(raised.value)
            assert "Is the server running" not in str(raised.value)
            assert isinstance(raised.value, flowq.DatabaseError)
            assert len(await app.get_jobs()) == 1
    finally:
        await admin.close()


async def test_a_full_disk_on_sqlite_is_reported_as_such(sqlite_url: str) -> None:
    """When SQLite cannot grow the file ("database or disk is full", forced with
    PRAGMA max_page_count), add_job raises DatabaseRefusedError saying so, and
    nothing is written."""
    async with flowq.App(sqlite_url, registry=_registry(), auto_migrate=True) as app:
        await app.add_job("wf")

    def cap_pages(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    app = flowq.App(sqlite_url, registry=_registry())
    assert isinstance(app.store, SqlStore)
    event.listen(app.store.engine.sync_engine, "connect", cap_pages)
    async with app:
        with pytest.raises(flowq.DatabaseRefusedError, match="database or disk is full") as raised:
            await app.add_job("wf", {"blob": "x" * 2_000_000})
        assert "Is the server running" not in str(raised.value)
        assert len(await app.get_jobs()) == 1
