"""Fresh, empty databases for the migration tests: SQLite files and PostgreSQL databases.

``new_database`` is parametrized over both dialects and hands out a factory; every call
returns the URL of another empty database. PostgreSQL databases are created with unique
names next to the admin URL ``FLOWQ_TEST_POSTGRES_URL`` and dropped afterwards. When that
server cannot be reached the PostgreSQL cases are skipped, or fail when
``FLOWQ_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres?ssl=disable"

NewDatabase = Callable[[], Awaitable[str]]


@asynccontextmanager
async def postgres_databases() -> AsyncIterator[NewDatabase]:
    """A factory of fresh PostgreSQL databases, all dropped on exit."""
    admin_url = make_url(os.environ.get("FLOWQ_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    admin_url = admin_url.set(drivername="postgresql+asyncpg")
    shown = admin_url.render_as_string(hide_password=True)
    admin = create_async_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"timeout": 10}
    )
    created: list[str] = []
    try:
        unreachable = None
        try:
            async with admin.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
        except (OSError, TimeoutError, DBAPIError) as exc:
            unreachable = f"PostgreSQL at {shown} (FLOWQ_TEST_POSTGRES_URL) is unreachable: {exc}"
        if unreachable is not None:
            if os.environ.get("FLOWQ_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"{unreachable}; FLOWQ_REQUIRE_POSTGRES=1 requires it", pytrace=False)
            pytest.skip(unreachable)

        async def new_database() -> str:
            name = f"flowq_mig_{uuid.uuid4().hex[:12]}"
            async with admin.connect() as connection:
                await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            created.append(name)
            return admin_url.set(database=name).render_as_string(hide_password=False)

        yield new_database
    finally:
        try:
            if created:
                async with admin.connect() as connection:
                    for name in created:
                        await connection.exec_driver_sql(
                            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                        )
        finally:
            await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def dialect(request: pytest.FixtureRequest) -> str:
    """The dialect under test: ``sqlite`` or ``postgresql``."""
    return str(request.param)


@pytest.fixture
async def new_database(dialect: str, tmp_path: Path) -> AsyncIterator[NewDatabase]:
    """A factory: each call returns the URL of another empty database of ``dialect``."""
    if dialect == "postgresql":
        async with postgres_databases() as factory:
            yield factory
        return
    counter = itertools.count(1)

    async def new_sqlite_database() -> str:
        return f"sqlite+aiosqlite:///{tmp_path / f'flowq_{next(counter)}.db'}"

    yield new_sqlite_database
