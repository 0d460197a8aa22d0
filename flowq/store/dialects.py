"""What differs between PostgreSQL and SQLite, behind one small interface."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import asyncpg
from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    and_,
    bindparam,
    event,
    exists,
    false,
    func,
    literal_column,
    not_,
    select,
    text,
    true,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from flowq.errors import DatabaseUnavailableError, ValidationError
from flowq.models import TagQuery
from flowq.store.schema import jobs

BUSY_TIMEOUT_MS = 30000
"""How long a SQLite statement waits for another connection's lock."""
PIN_BUSY_TIMEOUT_MS = 50
"""The same for the hot paths' reserved connections, which retry in Python."""
CHANNEL = "flowq_jobs"
"""The PostgreSQL notification channel workers LISTEN on."""
log = logging.getLogger("flowq")

ErrorKind = Literal["missing_table", "unavailable", "busy"] | None
_PG_UNAVAILABLE_CLASSES = {"08", "28", "3D", "53", "57"}
_PG_BUSY_STATES = {"40P01", "40001", "55P03"}  # deadlock, serialization failure, lock timeout
_SQLITE_UNAVAILABLE = ("unable to open", "disk I/O error", "not a database", "readonly database")

__all__ = [
    "ErrorKind",
    "PostgresDialect",
    "SqlDialect",
    "SqliteDialect",
    "dialect_for_url",
    "normalize_url",
]


class SqlDialect(Protocol):
    """The dialect-specific pieces of :class:`flowq.store.sql.SqlStore`."""

    name: str

    def create_engine(self, url: URL) -> AsyncEngine:
        """An engine configured for flowq's transactions."""

    async def allocate_ids(self, connection: AsyncConnection, count: int) -> list[int]:
        """``count`` fresh, ascending job ids, inside the current transaction."""

    def tag_condition(self, query: TagQuery) -> ColumnElement[bool]:
        """A WHERE condition on ``flowq_jobs.tags``."""

    def insert(self) -> postgresql.Insert | sqlite.Insert:
        """An INSERT into ``flowq_jobs`` that supports ON CONFLICT."""

    def insert_into(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT into ``table`` that supports ON CONFLICT."""

    def classify(self, error: BaseException | None, *, invalidated: bool) -> ErrorKind:
        """Whether a driver error means a missing table, an unreachable database,
        a lock held too long, or something else (None)."""

    async def notify(self, connection: AsyncConnection, hint: str) -> None:
        """Tell other processes' workers ``hint`` when this transaction commits."""

    async def lock_group_claims(self, connection: AsyncConnection) -> None:
        """Serialize group-limited claims of all workers until this transaction ends."""

    async def reserve(self, driver: Any) -> None:
        """Prepare a driver connection kept checked out for the hot paths."""

    async def release(self, driver: Any) -> None:
        """Undo :meth:`reserve` before the connection goes back to the pool."""

    async def listen(self, url: URL, on_wake: Callable[[str], None]) -> None:
        """Deliver other processes' hints to ``on_wake`` until cancelled."""


def normalize_url(url: str | URL) -> URL:
    """Accept ``postgresql://``, ``postgres://`` and ``sqlite://`` with flowq's drivers."""
    parsed = make_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValidationError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}; "
        "use postgresql+asyncpg://... or sqlite+aiosqlite:///path.db"
    )


def _flag(value: object) -> bool:
    text = value[-1] if isinstance(value, tuple) else value
    return str(text).lower() in ("1", "true", "yes", "on")


def _unique_statement_name() -> str:
    return f"__flowq_{uuid.uuid4().hex}__"


def dialect_for_url(url: URL) -> SqlDialect:
    """The dialect object for a normalized URL."""
    return PostgresDialect() if url.get_backend_name() == "postgresql" else SqliteDialect()


class PostgresDialect:
    """PostgreSQL through asyncpg."""

    name = "postgresql"

    def create_engine(self, url: URL) -> AsyncEngine:
        """A pooled engine. ``?pgbouncer=1`` in the URL turns off server-side prepared
        statements (of SQLAlchemy and asyncpg), which a PgBouncer in transaction
        pooling mode before 1.21 cannot route; use it with ``notify=False`` workers."""
        options: dict[str, Any] = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 3600}
        if _flag(url.query.get("pgbouncer")):
            url = url.difference_update_query(["pgbouncer"]).update_query_dict(
                {"prepared_statement_cache_size": "0"}
            )
            options["connect_args"] = {
                "statement_cache_size": 0,
                "prepared_statement_name_func": _unique_statement_name,
            }
        return create_async_engine(url, **options)

    async def allocate_ids(self, connection: AsyncConnection, count: int) -> list[int]:
        result = await connection.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('flowq_jobs', 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"count": count},
        )
        return sorted(row[0] for row in result)

    def tag_condition(self, query: TagQuery) -> ColumnElement[bool]:
        tags = type_coerce(jobs.c.tags, postgresql.ARRAY(Text))
        values = list(query.values)
        contains: ColumnElement[bool] = tags.contains(values)
        overlaps: ColumnElement[bool] = tags.overlap(values)
        if query.mode == "all":
            return contains
        if query.mode == "any":
            return overlaps
        if query.mode == "none":
            return not_(overlaps)
        return and_(contains, tags.contained_by(values))

    def insert(self) -> postgresql.Insert:
        return postgresql.insert(jobs)

    def insert_into(self, table: Table) -> postgresql.Insert:
        return postgresql.insert(table)

    async def notify(self, connection: AsyncConnection, hint: str) -> None:
        await connection.execute(
            text("SELECT pg_notify(:channel, :hint)"), {"channel": CHANNEL, "hint": hint}
        )

    async def lock_group_claims(self, connection: AsyncConnection) -> None:
        await connection.execute(text("SELECT pg_advisory_xact_lock(4711020251)"))

    async def reserve(self, driver: Any) -> None:
        """Nothing to prepare on PostgreSQL."""

    async def release(self, driver: Any) -> None:
        """Nothing to undo on PostgreSQL."""

    async def listen(self, url: URL, on_wake: Callable[[str], None]) -> None:
        """LISTEN on a dedicated connection; reconnect with backoff when it drops.

        After every (re)connection ``on_wake("jobs")`` is called, since hints sent
        while disconnected were lost.
        """
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        backoff = 0.1
        while True:
            try:
                connection = await asyncpg.connect(dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("flowq: cannot LISTEN on %s (%s); retrying in %.1fs", url, exc, backoff)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            lost = anyio.Event()
            try:
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(
                    CHANNEL, lambda _c, _pid, _channel, payload: on_wake(payload)
                )
                backoff = 0.1
                on_wake("jobs")
                await lost.wait()
                log.warning("flowq: the LISTEN connection to %s dropped; reconnecting", url)
            finally:
                with anyio.CancelScope(shield=True):
                    await connection.close(timeout=2)

    def classify(self, error: BaseException | None, *, invalidated: bool) -> ErrorKind:
        if isinstance(error, OSError | TimeoutError | asyncpg.ConnectionDoesNotExistError):
            return "unavailable"
        if isinstance(error, asyncpg.InterfaceError) and "closed" in str(error):
            return "unavailable"
        if isinstance(error, asyncpg.InternalClientError):
            return "unavailable"  # the protocol state is broken: the connection is unusable
        state = str(getattr(error, "sqlstate", "") or "")
        if state == "42P01":
            return "missing_table"
        if state in _PG_BUSY_STATES:
            return "busy"
        if invalidated or state[:2] in _PG_UNAVAILABLE_CLASSES:
            return "unavailable"
        return None


class SqliteDialect:
    """SQLite through aiosqlite: WAL, a busy timeout, and ``BEGIN IMMEDIATE``.

    Every transaction takes the write lock at its start, so the read-then-write
    sequences of the store never meet a concurrent writer half way.
    """

    name = "sqlite"

    def create_engine(self, url: URL) -> AsyncEngine:
        options: dict[str, Any] = {}
        if url.database in (None, "", ":memory:"):
            options["poolclass"] = StaticPool
        else:
            folder = Path(url.database).expanduser().absolute().parent
            if not folder.is_dir():
                raise DatabaseUnavailableError(
                    f"cannot open the SQLite database {url.database!r}: the folder {folder} "
                    "does not exist"
                )
        engine = create_async_engine(url, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    async def allocate_ids(self, connection: AsyncConnection, count: int) -> list[int]:
        result = await connection.exec_driver_sql(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'flowq_jobs'), 0),"
            " COALESCE((SELECT MAX(id) FROM flowq_jobs), 0))"
        )
        last = int(result.scalar() or 0)
        return list(range(last + 1, last + 1 + count))

    def tag_condition(self, query: TagQuery) -> ColumnElement[bool]:
        values = list(query.values)
        if query.mode == "all":
            return and_(true(), *(self._has_tag([value]) for value in values))
        if query.mode == "any":
            return self._has_tag(values) if values else false()
        if query.mode == "none":
            return not_(self._has_tag(values)) if values else true()
        return and_(
            func.json_array_length(jobs.c.tags) == len(values),
            *(self._has_tag([value]) for value in values),
        )

    def _has_tag(self, values: list[str]) -> ColumnElement[bool]:
        each = func.json_each(jobs.c.tags).table_valued("value").alias()
        return exists(
            select(literal_column("1"))
            .select_from(each)
            .where(each.c.value.in_(bindparam("tags", values, expanding=True, unique=True)))
        )

    def insert(self) -> sqlite.Insert:
        return sqlite.insert(jobs)

    def insert_into(self, table: Table) -> sqlite.Insert:
        return sqlite.insert(table)

    async def notify(self, connection: AsyncConnection, hint: str) -> None:
        """SQLite has no notifications: other processes poll."""

    async def lock_group_claims(self, connection: AsyncConnection) -> None:
        """BEGIN IMMEDIATE already serializes every writer."""

    async def reserve(self, driver: Any) -> None:
        """A short busy timeout: the hot paths wait for the lock in Python instead."""
        await driver.execute(f"PRAGMA busy_timeout = {PIN_BUSY_TIMEOUT_MS}")

    async def release(self, driver: Any) -> None:
        """Back to the pool's busy timeout."""
        await driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    async def listen(self, url: URL, on_wake: Callable[[str], None]) -> None:
        """Nothing to listen to: other processes' work is found by polling."""
        await anyio.sleep_forever()

    def classify(self, error: BaseException | None, *, invalidated: bool) -> ErrorKind:
        if isinstance(error, OSError | TimeoutError):
            return "unavailable"
        message = str(error)
        if "no such table" in message:
            return "missing_table"
        if invalidated or any(m in message for m in _SQLITE_UNAVAILABLE):
            return "unavailable"
        if "database is locked" in message:
            return "busy"
        return None
