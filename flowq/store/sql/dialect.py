"""What differs between PostgreSQL and SQLite, behind one protocol.

A :class:`SqlDialect` owns everything of its database that the shared SQL verbs do
not say in SQLAlchemy Core: the engine's settings, id allocation, tag conditions,
notifications, locks, error classification, and the one-round-trip statements of
the hot paths (adding plain jobs, claiming, completing, recording durable calls,
loading a history). The verbs of :class:`flowq.store.sql.SqlStore` call it and never
ask which database they are on. Implementations:
:class:`flowq.store.sql.postgres.PostgresDialect` and
:class:`flowq.store.sql.sqlite.SqliteDialect`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowq.models import TagQuery
from flowq.replay import RecordedCall
from flowq.store.base import ClaimedJob, Completion, Lease, NewJob, StoreCapabilities

__all__ = ["ErrorKind", "SqlDialect"]

ErrorKind = Literal["missing_table", "unavailable", "busy", "refused"] | None
"""What a driver error means to flowq (None: nothing flowq translates). "refused":
the server was reached but could not do the operation (statement timeout, full disk)."""


class SqlDialect(Protocol):
    """The database-specific pieces of :class:`flowq.store.sql.SqlStore`.

    The hot-path verbs run on a driver connection (asyncpg or aiosqlite) that
    ``SqlStore`` checks out, outside any SQLAlchemy transaction; each is one
    transaction of its own.
    """

    name: str
    """SQLAlchemy's name of the database (``postgresql`` or ``sqlite``)."""
    capabilities: StoreCapabilities
    """What a store on this database can do (see :class:`StoreCapabilities`)."""

    # -- set-up ---------------------------------------------------------------------

    def create_engine(self, url: URL) -> AsyncEngine:
        """An engine configured for flowq's transactions."""

    async def reserve(self, driver: Any, purpose: str) -> None:
        """Prepare a driver connection kept checked out for one hot path (``purpose``:
        ``"claim"``, ``"add"``, ``"record"`` or ``"complete"``)."""

    async def release(self, driver: Any, purpose: str) -> None:
        """Undo :meth:`reserve` before the connection goes back to the pool."""

    def reset(self) -> None:
        """Forget what belongs to the event loop the store ran in (it was closed)."""

    async def lock_migrations(self, connection: AsyncConnection) -> None:
        """Serialize concurrent migration runs until this transaction ends."""

    async def create_schema(self, connection: AsyncConnection) -> None:
        """Create the namespace the migrations go into, if the store has one of its
        own that is missing (a PostgreSQL schema)."""

    def migration_statement(self, statement: str) -> str:
        """A statement of a migration file as this store applies it."""

    async def schema_problem(self, connection: AsyncConnection) -> str | None:
        """Why the connection does not reach the store's own namespace, or None."""

    def classify(self, error: BaseException | None, *, invalidated: bool) -> ErrorKind:
        """Whether a driver error means a missing table, an unreachable database,
        a lock held too long, or something else (None)."""

    # -- pieces of the general statements ---------------------------------------------

    async def allocate_ids(self, connection: AsyncConnection, count: int) -> list[int]:
        """``count`` fresh, ascending job ids, inside the current transaction."""

    def tag_condition(self, query: TagQuery) -> ColumnElement[bool]:
        """A WHERE condition on ``flowq_jobs.tags``."""

    def one_of(
        self, column: ColumnElement[Any], values: Collection[int] | Collection[str]
    ) -> ColumnElement[bool]:
        """``column IN values`` with ONE bound parameter however many values there
        are (the databases cap a statement's parameters near 32,767): an array on
        PostgreSQL, a JSON array on SQLite. Ids and keys that grow with the data go
        through this, never through ``column.in_(values)``."""

    def insert_into(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT into ``table`` that supports ON CONFLICT."""

    async def lock_group_claims(self, connection: AsyncConnection) -> None:
        """Serialize group-limited claims of all workers until this transaction ends."""

    # -- wake-ups -------------------------------------------------------------------

    async def table_bytes(self, connection: AsyncConnection) -> dict[str, int]:
        """Bytes on disk of flowq's tables (or of the whole database)."""

    async def notify(self, connection: AsyncConnection, hint: str) -> None:
        """Tell other processes' workers ``hint`` when this transaction commits."""

    async def listen(self, url: URL, on_wake: Callable[[str], None]) -> None:
        """Deliver other processes' hints to ``on_wake`` until cancelled."""

    # -- hot paths (one transaction each, on a driver connection) ---------------------

    async def add_plain_jobs(
        self, driver: Any, jobs: Sequence[NewJob], now: datetime
    ) -> list[int] | None:
        """Insert jobs without dependencies with their ``added`` events; ids in input
        order, or None when the general path must do it (an idempotency key vanished
        under us)."""

    async def claim_jobs(
        self, driver: Any, worker_id: str, limit: int, workflows: Sequence[str], now: datetime
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` runnable jobs of ``workflows`` (sorted; no group
        limits), highest priority first, with their ``processing`` events."""

    async def complete_jobs(
        self, driver: Any, completions: Sequence[Completion], now: datetime
    ) -> tuple[list[bool], bool]:
        """Complete held jobs with their events; return which were recorded (input
        order) and whether a completed job has dependants (workers should look)."""

    async def record_calls(
        self, driver: Any, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        """``Store.record_calls``: each call as stored, None where the lease is stale."""

    async def park_job(
        self,
        driver: Any,
        lease: Lease,
        wait_until: datetime | None,
        metadata: str | None,
        now: datetime,
    ) -> bool:
        """Park a held job on a timer (no token or child to look at) with its
        ``waiting`` event (``metadata``, JSON text); False if the lease is stale."""

    async def load_history(self, driver: Any, job_id: int) -> list[RecordedCall]:
        """The job's recorded calls in position order."""
