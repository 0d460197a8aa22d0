"""For tests that talk to the test PostgreSQL server directly (asyncpg), beside flowq:
statements run on a connection of their own, schemas a test creates dropped after it,
and the count of LISTENing sessions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg
from sqlalchemy.engine import make_url

from flowq.store.sql import urls
from flowq.store.sql.pg_schema import quote_identifier


def asyncpg_dsn(database_url: str) -> str:
    """The plain ``postgresql://`` form of a flowq PostgreSQL URL, for asyncpg (as the
    worker's LISTEN connection makes it: ``ssl=`` becomes ``sslmode=``)."""
    return urls.asyncpg_dsn(make_url(database_url))


async def on_the_server(database_url: str, *statements: str) -> None:
    """Run ``statements`` in order on one new connection to the URL's database."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def dropping_schemas(database_url: str, *schemas: str) -> Iterator[str]:
    """Yields ``database_url``; afterwards drops ``schemas`` (if they exist) with what
    is in them. For synchronous fixtures (it runs its own event loop)."""
    try:
        yield database_url
    finally:
        drops = (f"DROP SCHEMA IF EXISTS {quote_identifier(s)} CASCADE" for s in schemas)
        asyncio.run(on_the_server(database_url, *drops))


async def listening_sessions(admin: asyncpg.Connection) -> int:
    """How many sessions of ``admin``'s database are LISTENing (a worker's wake-up line)."""
    found: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
    )
    return found
