"""Shared fixtures: databases for every test (a file on SQLite, a fresh database on PostgreSQL),
and an App with a fake clock on each kind of store (``app``).

PostgreSQL tests use the server at ``FLOWQ_TEST_POSTGRES_URL`` (default: the local
server). Without it they are skipped with a visible reason, unless
``FLOWQ_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns that into a failure.
Each test gets its own database, copied from a migrated template database.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.util import await_

import flowq
from flowq.store.sql import SqlStore, urls
from flowq_testing import FakeClock, InMemoryStore

POSTGRES_URL = os.environ.get(
    "FLOWQ_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres?ssl=disable"
)
"""The server the tests use. The local one has TLS off: ``ssl=disable`` skips asking for
it at each connection (asyncpg leaves an unread future behind when a connection is
cancelled while it asks, which the test runner reports as an error)."""
REQUIRE_POSTGRES = os.environ.get("FLOWQ_REQUIRE_POSTGRES") == "1"
SQLITE_MAX_VARIABLES = 32766
"""SQLite's default cap on a statement's parameters (SQLITE_MAX_VARIABLE_NUMBER since
3.32). Some builds raise it (Debian's: 250,000); the tests run every SQLite
connection with the default, so that a statement whose parameters grow with the data
fails here as it would on most users' machines."""


@event.listens_for(Engine, "connect")
def _default_sqlite_limits(dbapi_connection: Any, _record: Any) -> None:
    driver = getattr(dbapi_connection, "driver_connection", None)
    if isinstance(driver, aiosqlite.Connection):
        # aiosqlite has no setlimit: run sqlite3's in the thread that owns the connection.
        setlimit = driver._conn.setlimit
        await_(
            driver._execute(setlimit, sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, SQLITE_MAX_VARIABLES)
        )


@pytest.fixture
def anyio_backend() -> str:
    """flowq runs on asyncio (asyncpg needs it)."""
    return "asyncio"


def _dsn(database: str | None = None) -> str:
    url = make_url(POSTGRES_URL)
    if database is not None:
        url = url.set(database=database)
    return urls.asyncpg_dsn(url)


async def _admin(*statements: str) -> None:
    connection = await asyncpg.connect(_dsn(), timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _run(coroutine: object) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database, created once per test session."""
    name = f"flowq_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        _run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = (
            f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()} is not reachable: {exc}"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (FLOWQ_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)

    async def migrate() -> None:
        store = SqlStore(_dsn(name))
        try:
            await store.migrate()
        finally:
            await store.close()

    _run(migrate())
    yield name
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """The URL of a fresh, migrated, empty PostgreSQL database for this test."""
    name = f"flowq_t_{uuid.uuid4().hex[:12]}"
    _run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a fresh SQLite file for this test (not migrated)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'flowq.db'}"


@pytest.fixture(autouse=True)
def _no_outage_in_progress() -> None:
    """Each test starts without a database outage left over from another one (the
    outage log is per process)."""
    from flowq.outages import database_outages

    database_outages.reset()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each kind of store: in memory (None), a SQLite file, a fresh PostgreSQL database
    (the integration and dashboard tests; the acceptance tests have their own)."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def registry() -> flowq.Registry:
    """A registry of its own for each test."""
    return flowq.Registry()


@pytest.fixture
def clock() -> FakeClock:
    """Time moves only when a test moves it."""
    return FakeClock()


@pytest.fixture
async def app(
    database_url: str | None, registry: flowq.Registry, clock: FakeClock
) -> AsyncIterator[flowq.App]:
    """An App on each kind of store (:func:`database_url`) with a fake clock (the
    integration and dashboard tests; the acceptance tests have their own)."""
    if database_url is None:
        app = flowq.App(store=InMemoryStore(), registry=registry, clock=clock)
    else:
        app = flowq.App(database_url, registry=registry, clock=clock, auto_migrate=True)
    async with app:
        yield app
