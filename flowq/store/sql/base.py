"""The SQL store's foundation: the dialect, engine, transactions, error translation,
and helpers every SQL verb shares."""

from __future__ import annotations

import importlib
import shlex
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import (
    ColumnElement,
    Row,
    and_,
    event,
    func,
    insert,
    not_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from flowq.clock import Clock
from flowq.errors import (
    DatabaseBusyError,
    DatabaseError,
    DatabaseRefusedError,
    DatabaseUnavailableError,
    SchemaError,
    ValidationError,
)
from flowq.models import EventType, JobStatus
from flowq.store import rows, transitions
from flowq.store.base import JobFilter, Lease, StoreCapabilities
from flowq.store.sql import migrate, render
from flowq.store.sql.dialect import ErrorKind, SqlDialect
from flowq.store.sql.schema import job_dependencies, job_events, jobs
from flowq.store.sql.urls import safe_url
from flowq.store.wakeups import LocalWakeups
from flowq.system_clock import SystemClock

__all__ = ["UPCOMING", "SqlBase", "dialect_for_url", "held", "normalize_url"]

UPCOMING = and_(jobs.c.finished_at.is_(None), jobs.c.status != JobStatus.PROCESSING.value)
"""Jobs still to run: pending, waiting, or failed and due to retry
(``transitions.is_upcoming``)."""
_RUN_AT_OPS = {
    "eq": lambda c, v: c == v,
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
}
_DIALECTS: dict[str, tuple[str, str, str]] = {
    "postgresql": ("flowq.store.sql.postgres", "PostgresDialect", "asyncpg"),
    "sqlite": ("flowq.store.sql.sqlite", "SqliteDialect", "aiosqlite"),
}
"""Backend -> (module, dialect class, driver): a dialect is imported when a URL needs
it, so a missing driver only matters to the database that uses it."""
_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def held(leases: Sequence[Lease]) -> ColumnElement[bool]:
    """Rows still held by these leases (same lease id, still processing).

    Written so that both databases find the rows by primary key: the plain ``id IN``
    is what SQLite can look up (not the row-value ``IN``), and the status check is in
    a form no index answers. Otherwise the planners read every processing job through
    ``ix_flowq_jobs_status_id`` (PostgreSQL's statistics rarely see one, so it looks
    cheap), or, on a SQLite file with statistics, the whole table.
    """
    return and_(
        jobs.c.id.in_([x.job_id for x in leases]),
        tuple_(jobs.c.id, jobs.c.lease_id).in_([(x.job_id, x.lease_id) for x in leases]),
        (jobs.c.status == JobStatus.PROCESSING.value).is_(true()),
    )


def normalize_url(url: str | URL) -> URL:
    """Accept ``postgresql://``, ``postgres://`` and ``sqlite://`` with flowq's drivers.

    Raises:
        ValidationError: Another kind of database.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError):
        raise ValidationError(f"cannot read {safe_url(url)!r} as a database URL") from None
    driver = _DRIVERS.get(parsed.get_backend_name())
    if driver is None:
        raise ValidationError(
            f"unsupported database URL {safe_url(parsed)!r}; "
            "use postgresql+asyncpg://... or sqlite+aiosqlite:///path.db"
        )
    return parsed.set(drivername=driver)


def dialect_for_url(url: URL, schema: str | None = None) -> SqlDialect:
    """A new dialect object for a normalized URL (and a PostgreSQL schema).

    Raises:
        DatabaseError: The database's driver is not installed (the message names it).
        ValidationError: A schema that PostgreSQL cannot use, or any schema on SQLite.
    """
    if schema is not None and url.get_backend_name() != "postgresql":
        raise ValidationError(
            f"schema {schema!r} given for the {url.get_backend_name()} database "
            f"{safe_url(url)!r}: schemas are PostgreSQL's; a SQLite file is one "
            "namespace (use another file to keep two installations apart)"
        )
    module_name, class_name, driver = _DIALECTS[url.get_backend_name()]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != driver:
            raise
        raise DatabaseError(
            f"the {url.get_backend_name()} driver {driver!r} is not installed: "
            f"pip install {driver} (flowq-durable depends on it; was it installed with "
            "--no-deps?)"
        ) from exc
    kind = getattr(module, class_name)
    dialect: SqlDialect = kind() if schema is None else kind(schema)
    return dialect


class SqlBase:
    """Connections, transactions and the helpers every SQL verb shares.

    Args:
        url: A database URL; ``postgresql://`` and ``sqlite:///`` pick flowq's drivers.
        clock: Where "now" comes from (the system clock by default).
        schema: PostgreSQL only: the schema holding flowq's tables (None: wherever
            the connection's ``search_path`` leads, usually ``public``).
    """

    fast_paths: bool = True
    """Whether adding jobs without dependencies and claiming without group limits take
    the dialect's one-round-trip statements (the default) or the general SQLAlchemy
    statements. Both do the same; the contract suite runs both."""

    def __init__(
        self, url: str | URL, *, clock: Clock | None = None, schema: str | None = None
    ) -> None:
        self.url = normalize_url(url)
        self.clock: Clock = clock or SystemClock()
        self.dialect: SqlDialect = dialect_for_url(self.url, schema)
        self.schema = schema
        self._engine: AsyncEngine | None = None
        self._pins: dict[str, _Pin] = {}
        self.wakeups = LocalWakeups()

    def __repr__(self) -> str:
        if self.schema is not None:
            return f"SqlStore({safe_url(self.url)!r}, schema={self.schema!r})"
        return f"SqlStore({safe_url(self.url)!r})"

    @property
    def capabilities(self) -> StoreCapabilities:
        """Its dialect's: notifications, and a 2 s poll on PostgreSQL, 0.5 s on SQLite."""
        return self.dialect.capabilities

    # -- connection and schema ------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (created on first use)."""
        if self._engine is None:
            self._engine = self.dialect.create_engine(self.url)
            event.listen(self._engine.sync_engine, "handle_error", self._on_driver_error)
        return self._engine

    def _on_driver_error(self, context: ExceptionContext) -> None:
        """Tell SQLAlchemy a dropped connection is one (it then renews the pool), also
        when the driver reports it in a way SQLAlchemy does not recognize."""
        error = context.original_exception
        if self.dialect.classify(error, invalidated=False) == "unavailable":
            context.is_disconnect = True

    async def open(self) -> None:
        """Connect and check that the schema is current.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
            SchemaError: The schema is missing or of another version.
        """
        async with self._transaction() as connection:
            problem = await self.dialect.schema_problem(connection)
            if problem is not None:
                raise SchemaError(f"cannot use {self._where()}: {problem}")
            found = await migrate.applied_version(connection)
        wanted = migrate.latest_version(self.dialect.name)
        if found < wanted:
            raise SchemaError(
                f"the flowq schema in {self._where()} is at version {found}, this flowq needs "
                f"{wanted}: run `{self._migrate_command()}`"
            )
        if found > wanted:
            raise SchemaError(
                f"the flowq schema in {self._where()} is at version {found}, newer than this "
                f"flowq knows ({wanted}): upgrade flowq"
            )

    async def listen(self, on_wake: Callable[[str], None], *, remote: bool = True) -> None:
        """Call ``on_wake(hint)`` whenever work may be waiting, until cancelled.

        Hints come from this process's own writes and, on PostgreSQL with
        ``remote``, from other processes through LISTEN/NOTIFY (reconnecting when
        the listening connection drops).
        """
        self.wakeups.add_listener(on_wake)
        try:
            if remote:
                await self.dialect.listen(self.url, on_wake)
            else:
                await anyio.sleep_forever()
        finally:
            self.wakeups.remove_listener(on_wake)

    def _wake(self, hint: str) -> None:
        self.wakeups.wake(hint)

    async def close(self) -> None:
        """Dispose of the connection pool."""
        pins, self._pins = self._pins, {}
        self.dialect.reset()
        for purpose, pin in pins.items():
            if pin.connection is not None:
                async with pin.lock:
                    await self._unpin(pin.connection, pin.driver, purpose)
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def migrate(self) -> list[str]:
        """Apply missing migrations; return the names applied."""
        async with self._transaction() as connection:
            return await migrate.apply_migrations(connection, self.dialect, self.clock.now())

    def _safe_url(self) -> str:
        return safe_url(self.url)

    def _where(self) -> str:
        """The database, and the schema if the store has one."""
        if self.schema is None:
            return self._safe_url()
        return f"{self._safe_url()} (schema {self.schema!r})"

    def _migrate_command(self) -> str:
        command = f"flowq migrate --database-url {self._safe_url()}"
        if self.schema is None:
            return command
        return f"{command} --schema {shlex.quote(self.schema)}"

    def _schema_missing(self) -> SchemaError:
        return SchemaError(
            f"{self._where()} has no flowq tables: run `{self._migrate_command()}` "
            "(or `await app.migrate()`)"
        )

    @asynccontextmanager
    async def _transaction(
        self, connection: AsyncConnection | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction (or the caller's: an ``AsyncConnection``, or an
        ``AsyncSession`` whose connection is used), with driver errors made readable."""
        async with self._readable_errors():
            if connection is not None:
                if isinstance(connection, AsyncSession):
                    connection = await connection.connection()
                self._check_connection(connection)
                problem = await self.dialect.schema_problem(connection)
                if problem is not None:
                    raise ValidationError(f"connection= cannot be used: {problem}")
                yield connection
                return
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _driver(self, purpose: str | None = None) -> AsyncIterator[Any]:
        """A driver (asyncpg) connection outside any transaction: each statement on
        it commits by itself. The dialects' hot paths use this.

        With ``purpose``, a connection kept checked out for that purpose is used when
        it is free (the worker's batchers issue one statement at a time per purpose),
        which saves the pool's check-out and reset on every statement; otherwise a
        pooled connection is checked out for this one use.
        """
        pin = self._pins.setdefault(purpose, _Pin()) if purpose is not None else None
        if purpose is None or pin is None or pin.lock.locked():
            async with self._readable_errors(), self.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                try:
                    yield raw.driver_connection
                except Exception as exc:
                    await self._after_driver_error(exc, conn)
                    raise
            return
        async with pin.lock, self._readable_errors():
            if pin.connection is None:
                pin.connection = await self.engine.connect()
                pin.driver = (await pin.connection.get_raw_connection()).driver_connection
                await self.dialect.reserve(pin.driver, purpose)
            try:
                yield pin.driver
            except Exception as exc:
                connection, driver = pin.connection, pin.driver
                pin.connection, pin.driver = None, None
                if not await self._after_driver_error(exc, connection):
                    await self._unpin(connection, driver, purpose)
                raise

    async def _unpin(self, connection: AsyncConnection, driver: Any, purpose: str) -> None:
        """Give a pinned connection back to the pool as :meth:`dialect.reserve` found it;
        one that cannot be set back is dropped instead."""
        try:
            await self.dialect.release(driver, purpose)
        except Exception:  # it must not go back half set up
            await connection.invalidate()
        else:
            await connection.close()

    async def _after_driver_error(self, error: Exception, connection: AsyncConnection) -> bool:
        """On a lost connection, drop it and renew the pool; True if it was dropped."""
        if self.dialect.classify(error, invalidated=False) != "unavailable":
            return False
        # The server dropped us (restart, failover, pg_terminate_backend): the other
        # pooled connections are most likely dead too. Start a new pool.
        await connection.invalidate()
        await self.engine.dispose(close=False)
        return True

    @asynccontextmanager
    async def _readable_errors(self) -> AsyncIterator[None]:
        """Turn driver errors that mean "no schema" or "no database" into flowq errors.

        A connection pool that stays exhausted past its timeout (every connection
        held while the server does not answer) is the database being unavailable.
        """
        try:
            yield
        except PoolTimeoutError as exc:
            raise DatabaseUnavailableError(
                f"no free connection to {self._safe_url()} (the pool stayed exhausted: "
                f"{str(exc).splitlines()[0]})"
            ) from exc
        except DBAPIError as exc:
            kind = self.dialect.classify(exc.orig, invalidated=exc.connection_invalidated)
            raise self._readable(kind, exc.orig or exc) from exc
        except Exception as exc:
            kind = self.dialect.classify(exc, invalidated=False)
            if kind is None:
                raise
            raise self._readable(kind, exc) from exc

    def _readable(self, kind: ErrorKind, error: BaseException) -> BaseException:
        if kind == "missing_table":
            return self._schema_missing()
        if kind == "unavailable":
            return DatabaseUnavailableError(
                f"cannot use the database at {self._safe_url()}: {error}. Is the server "
                "running and the URL right?"
            )
        if kind == "refused":
            return DatabaseRefusedError(
                f"the database at {self._safe_url()} could not carry out the operation: "
                f"{type(error).__name__}: {error}"
            )
        if kind == "busy":
            return DatabaseBusyError(
                f"{self._safe_url()} is busy ({error}); the operation can be retried. On "
                "SQLite, do not call the App while your own connection holds an open write "
                "transaction (except with connection=)."
            )
        return error

    def _check_connection(self, connection: Any) -> None:
        if not isinstance(connection, AsyncConnection):
            raise ValidationError(
                "connection= takes a SQLAlchemy AsyncConnection or AsyncSession, got "
                f"{connection!r}"
            )
        kind = connection.engine.dialect.name
        if kind != self.dialect.name:
            raise ValidationError(
                f"connection= is a {kind} connection but this App stores jobs in "
                f"{self.dialect.name}"
            )

    # -- helpers shared by the verbs --------------------------------------------------

    async def _add_events(
        self,
        conn: AsyncConnection,
        events: Sequence[tuple[int, EventType, Mapping[str, Any] | None]],
        now: datetime,
    ) -> None:
        if not events:
            return
        await conn.execute(
            insert(job_events),
            [
                {
                    "job_id": job_id,
                    "event_type": event_type.value,
                    "at": now,
                    "metadata": rows.event_metadata(meta),
                }
                for job_id, event_type, meta in events
            ],
        )

    def _condition(self, where: JobFilter) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if where.statuses:
            parts.append(jobs.c.status.in_([status.value for status in where.statuses]))
        if where.will_retry is not None:
            retrying = and_(
                jobs.c.status == JobStatus.FAILED.value, jobs.c.next_attempt_at.is_not(None)
            )
            parts.append(retrying if where.will_retry else not_(retrying))
        if where.workflow is not None:
            parts.append(jobs.c.workflow == where.workflow)
        if where.tags is not None:
            parts.append(self.dialect.tag_condition(where.tags))
        if where.priority is not None:
            parts.append(jobs.c.priority == where.priority)
        for op, value in where.run_at:
            parts.append(_RUN_AT_OPS[op](jobs.c.run_at, value))
        return and_(*parts) if parts else jobs.c.id.is_not(None)

    async def _cancel(
        self, conn: AsyncConnection, ids: list[int], metadata: dict[str, Any]
    ) -> None:
        if not ids:
            return
        now = self.clock.now()
        await conn.execute(
            update(jobs)
            .where(self.dialect.one_of(jobs.c.id, ids))
            .values(render.values(transitions.CANCEL, now))
        )
        await self._add_events(conn, [(i, EventType.CANCELLED, metadata) for i in ids], now)
        await self._cancel_dependants(conn, ids, "dependency_cancelled")

    async def _cancel_dependants(
        self, conn: AsyncConnection, prerequisites: list[int], reason: str
    ) -> None:
        """Cancel, transitively, upcoming jobs that depend on ``prerequisites``.

        Each level of the chain is one SELECT and one UPDATE with one parameter for
        its ids, so a job may have any number of dependants.

        ``reason`` (``dependency_cancelled`` or ``dependency_failed``) and the
        prerequisite go into the ``cancelled`` events of direct dependants; jobs further
        down the chain get ``dependency_cancelled``.
        """
        while prerequisites:
            result = await conn.execute(
                select(job_dependencies.c.job_id, func.min(job_dependencies.c.depends_on_id))
                .join(jobs, jobs.c.id == job_dependencies.c.job_id)
                .where(
                    self.dialect.one_of(job_dependencies.c.depends_on_id, prerequisites),
                    UPCOMING,
                )
                .group_by(job_dependencies.c.job_id)
            )
            causes = dict(result.all())
            if not causes:
                return
            now = self.clock.now()
            await conn.execute(
                update(jobs)
                .where(self.dialect.one_of(jobs.c.id, list(causes)))
                .values(render.values(transitions.CANCEL, now))
            )
            await self._add_events(
                conn,
                [
                    (
                        job_id,
                        EventType.CANCELLED,
                        {"reason": reason, "dependency": cause},
                    )
                    for job_id, cause in sorted(causes.items())
                ],
                now,
            )
            prerequisites = sorted(causes)
            reason = "dependency_cancelled"

    async def _lock_job(self, conn: AsyncConnection, job_id: int) -> Row[Any] | None:
        result = await conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update())
        return result.first()


class _Pin:
    """A connection kept checked out for one purpose, and who is using it."""

    def __init__(self) -> None:
        self.lock = anyio.Lock(fast_acquire=True)
        self.connection: AsyncConnection | None = None
        self.driver: Any = None
