"""SQLite through aiosqlite: the :class:`SqliteDialect` and its hot-path statements.

The hot paths run on the aiosqlite driver connection (no SQLAlchemy per statement),
each one ``BEGIN IMMEDIATE`` transaction of a few plain statements run whole in the
connection's thread (:func:`in_write_transaction`: one hop from the event loop per
transaction, not one per statement): the same rows and events as the general
SQLAlchemy path, several times cheaper per call. Values are
stored as SQLAlchemy stores them on SQLite (UTC datetimes as
``YYYY-MM-DD HH:MM:SS.ffffff`` text, tags as a JSON array, booleans as 0/1). The SET
clauses come from the job state machine (:mod:`flowq.store.transitions`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
from sqlalchemy import (
    ColumnElement,
    String,
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
    true,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from flowq.errors import DatabaseUnavailableError
from flowq.models import EventType, JobStatus, TagQuery
from flowq.replay import RecordedCall, recorded_call_of
from flowq.store import batch, rows, transitions
from flowq.store.base import ClaimedJob, Completion, Lease, NewJob, StoreCapabilities
from flowq.store.sql.dialect import ErrorKind
from flowq.store.sql.render import set_clause
from flowq.store.sql.schema import UtcDateTime, jobs

__all__ = [
    "BUSY_TIMEOUT_MS",
    "LOCK_WAIT_SECONDS",
    "PIN_BUSY_TIMEOUT_MS",
    "WAL_WATCH_SECONDS",
    "SqliteDialect",
    "in_write_transaction",
    "read_time",
    "stored_time",
]

BUSY_TIMEOUT_MS: Final = 30000
"""How long a SQLite statement waits for another connection's lock."""
PIN_BUSY_TIMEOUT_MS: Final = 50
"""The same for the hot paths' reserved connections, which retry in Python."""
LOCK_WAIT_SECONDS: Final = 30.0
WAL_WATCH_SECONDS: Final = 0.01
"""How often a listening worker looks at the WAL file for other processes' commits."""
"""How long the hot paths wait for the write lock (in short, cancellable tries)."""
_UNAVAILABLE = ("unable to open", "disk I/O error", "not a database", "readonly database")
_REFUSED = (
    "database or disk is full",
    "too many SQL variables",
    "Expression tree is too large",
    "string or blob too big",
    "out of memory",
)
_LAST_ID = (
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'flowq_jobs'), 0),"
    " COALESCE((SELECT MAX(id) FROM flowq_jobs), 0))"
)


class SqliteDialect:
    """SQLite through aiosqlite: WAL, a busy timeout, and ``BEGIN IMMEDIATE``.

    Every transaction takes the write lock at its start, so the read-then-write
    sequences of the store never meet a concurrent writer half way. SQLite has no
    notifications: other processes' commits are noticed by watching the WAL file.
    """

    name = "sqlite"
    capabilities = StoreCapabilities(notifications=True, poll_interval=0.5)

    def __init__(self) -> None:
        self._writer_queue: anyio.Lock | None = None

    # -- set-up ---------------------------------------------------------------------

    def create_engine(self, url: URL) -> AsyncEngine:
        """An engine whose connections use WAL and begin with ``BEGIN IMMEDIATE``."""
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

    async def reserve(self, driver: Any, purpose: str) -> None:
        """A short busy timeout: the hot paths wait for the lock in Python instead."""
        await driver.execute(f"PRAGMA busy_timeout = {PIN_BUSY_TIMEOUT_MS}")

    async def release(self, driver: Any, purpose: str) -> None:
        """Back to the pool's busy timeout."""
        await driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def reset(self) -> None:
        """Forget the queue of writers (it belongs to the event loop that made it)."""
        self._writer_queue = None

    async def table_bytes(self, connection: AsyncConnection) -> dict[str, int]:
        """The database file's size (pages in use), under ``"database"``."""
        pages = (await connection.exec_driver_sql("PRAGMA page_count")).scalar()
        size = (await connection.exec_driver_sql("PRAGMA page_size")).scalar()
        return {"database": int(pages or 0) * int(size or 0)}

    async def lock_migrations(self, connection: AsyncConnection) -> None:
        """BEGIN IMMEDIATE already serializes every writer."""

    async def create_schema(self, connection: AsyncConnection) -> None:
        """A SQLite file has one namespace: nothing to create."""

    def migration_statement(self, statement: str) -> str:
        """The statement as the file has it."""
        return statement

    async def schema_problem(self, connection: AsyncConnection) -> str | None:
        """Never a problem: a SQLite file has one namespace."""
        return None

    def classify(self, error: BaseException | None, *, invalidated: bool) -> ErrorKind:
        """Lost files, missing tables and locks by the driver's message."""
        if isinstance(error, OSError | TimeoutError):
            return "unavailable"
        message = str(error)
        if "no such table" in message:
            return "missing_table"
        if invalidated or any(m in message for m in _UNAVAILABLE):
            return "unavailable"
        if "database is locked" in message:
            return "busy"
        if any(m in message for m in _REFUSED):
            return "refused"
        return None

    # -- pieces of the general statements ---------------------------------------------

    async def allocate_ids(self, connection: AsyncConnection, count: int) -> list[int]:
        """Ids after the largest ever used (AUTOINCREMENT never reuses one)."""
        result = await connection.exec_driver_sql(_LAST_ID)
        last = int(result.scalar() or 0)
        return list(range(last + 1, last + 1 + count))

    def tag_condition(self, query: TagQuery) -> ColumnElement[bool]:
        """``json_each`` over the JSON array of tags (kept once each, as the values).

        The values travel as one JSON array parameter, so any number of them makes
        one small expression (SQLite indexes the ``IN (SELECT ...)`` list once).
        """
        values = list(query.values)
        if not values:
            if query.mode == "exact":
                return func.json_array_length(jobs.c.tags) == 0
            return false() if query.mode == "any" else true()
        each = func.json_each(jobs.c.tags).table_valued("value").alias()
        wanted = func.json_each(
            bindparam("tags", json.dumps(values), type_=Text, unique=True)
        ).table_valued("value")
        matching = each.c.value.in_(select(wanted.c.value).scalar_subquery())
        if query.mode == "any":
            return exists(select(literal_column("1")).select_from(each).where(matching))
        if query.mode == "none":
            return not_(exists(select(literal_column("1")).select_from(each).where(matching)))
        found = select(func.count()).select_from(each).where(matching).scalar_subquery()
        if query.mode == "all":
            return found == len(values)
        return and_(func.json_array_length(jobs.c.tags) == len(values), found == len(values))

    def one_of(
        self, column: ColumnElement[Any], values: Collection[int] | Collection[str]
    ) -> ColumnElement[bool]:
        """``column IN (SELECT value FROM json_each(:array))``: one JSON text parameter
        (SQLite allows 32,766 parameters by default)."""
        array = bindparam(None, json.dumps(list(values)), type_=String())
        each = func.json_each(array).table_valued("value").alias()
        return column.in_(select(each.c.value))

    def insert_into(self, table: Table) -> sqlite.Insert:
        """SQLite's INSERT."""
        return sqlite.insert(table)

    async def lock_group_claims(self, connection: AsyncConnection) -> None:
        """BEGIN IMMEDIATE already serializes every writer."""

    # -- wake-ups -------------------------------------------------------------------

    async def notify(self, connection: AsyncConnection, hint: str) -> None:
        """Nothing to send: other processes notice the commit in the WAL file."""

    async def listen(self, url: URL, on_wake: Callable[[str], None]) -> None:
        """Wake on other processes' commits: every commit appends to the database's
        WAL file, so a change of its size or modification time (looked at every
        :data:`WAL_WATCH_SECONDS`, one ``stat`` call) means work may be waiting. Own
        commits wake too (a claim then finds nothing new: harmless). An in-memory
        database has no file and no other process: nothing to watch."""
        if url.database is None or url.database in ("", ":memory:"):
            await anyio.sleep_forever()
            return
        wal = _wal_file(url.database)
        seen = _file_state(wal)
        while True:
            await anyio.sleep(WAL_WATCH_SECONDS)
            state = _file_state(wal)
            if state != seen:
                seen = state
                on_wake("jobs")

    # -- hot paths ------------------------------------------------------------------

    def _writers(self) -> anyio.Lock:
        """This process's queue of writers (made in the running event loop)."""
        if self._writer_queue is None:
            self._writer_queue = anyio.Lock(fast_acquire=True)
        return self._writer_queue

    async def add_plain_jobs(
        self, driver: Any, jobs: Sequence[NewJob], now: datetime
    ) -> list[int] | None:
        """Jobs without dependencies, with their ``added`` events, in one transaction
        (run whole in the connection's thread: one hop from the event loop)."""
        async with self._writers():
            ids: list[int] = await in_write_transaction(driver, _add_plain_jobs, jobs, now)
            return ids

    async def claim_jobs(
        self, driver: Any, worker_id: str, limit: int, workflows: Sequence[str], now: datetime
    ) -> list[ClaimedJob]:
        """Claim due jobs of ``workflows``: a look, the update, the events."""
        if not workflows:
            return []
        at = stored_time(now)
        # An idle worker polls: look without the write lock first, so that polling
        # never makes writers of other processes wait.
        if not await _fetch(driver, "SELECT 1 FROM flowq_jobs WHERE ready_at <= ? LIMIT 1", [at]):
            return []
        async with self._writers():
            claimed: list[ClaimedJob] = await in_write_transaction(
                driver, _claim_jobs, worker_id, limit, workflows, now
            )
            return claimed

    async def complete_jobs(
        self, driver: Any, completions: Sequence[Completion], now: datetime
    ) -> tuple[list[bool], bool]:
        """Complete held jobs; return which were recorded and whether any has dependants."""
        async with self._writers():
            done: tuple[list[bool], bool] = await in_write_transaction(
                driver, _complete_jobs, completions, now
            )
            return done

    async def park_job(
        self,
        driver: Any,
        lease: Lease,
        wait_until: datetime | None,
        metadata: str | None,
        now: datetime,
    ) -> bool:
        """The park and its event in one transaction."""
        async with self._writers():
            parked: bool = await in_write_transaction(
                driver, _park_job, lease, wait_until, metadata, now
            )
            return parked

    async def record_calls(
        self, driver: Any, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        """Store recorded calls of held jobs; return each as stored (an earlier success
        wins), None where the lease is stale."""
        async with self._writers():
            held = await in_write_transaction(driver, _record_calls, calls)
        return rows.as_stored(calls, held)

    async def load_history(self, driver: Any, job_id: int) -> list[RecordedCall]:
        """The job's recorded calls in position order."""
        found = await _fetch(driver, _HISTORY, [job_id])
        return [_call(row) for row in found]


# -- statements ---------------------------------------------------------------------


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


_DATETIME_COLUMNS: Final = frozenset(c.name for c in jobs.c if isinstance(c.type, UtcDateTime))
_INSERT_JOB: Final = (
    f"INSERT INTO flowq_jobs ({', '.join(rows.JOB_COLUMNS)}) VALUES ({_marks(rows.JOB_COLUMNS)})"
)
_INSERT_EVENT: Final = (
    "INSERT INTO flowq_job_events (job_id, event_type, at, metadata) VALUES (?, ?, ?, ?)"
)
_IDS_BY_KEY: Final = (
    "SELECT idempotency_key, id FROM flowq_jobs "
    "WHERE idempotency_key IN (SELECT value FROM json_each(?))"
)
"""Jobs with the keys of a JSON array (one parameter, whatever the batch's size)."""
_CLAIMABLE: Final = """
SELECT j.id, j.status, EXISTS (SELECT 1 FROM flowq_steps s WHERE s.job_id = j.id)
FROM flowq_jobs j
WHERE j.ready_at <= ? AND j.workflow IN ({workflows})
ORDER BY j.priority DESC, j.id LIMIT ?
"""
_CLAIMABLE_MERGED: Final = """
SELECT j.id, j.status, EXISTS (SELECT 1 FROM flowq_steps s WHERE s.job_id = j.id)
FROM ({branches} ORDER BY priority DESC, id LIMIT ?) c
JOIN flowq_jobs j ON j.id = c.id
ORDER BY c.priority DESC, c.id
"""
_CLAIMABLE_BRANCH: Final = (
    "SELECT id, priority FROM flowq_jobs WHERE workflow = ? AND ready_at <= ?"
)
_MERGED_CLAIM_WORKFLOWS: Final = 32
"""Up to this many workflows, a claim reads each one's due jobs in claim order from
``ix_flowq_jobs_claim_workflow`` and merges them (a compound SELECT), so due jobs
of other workflows cost nothing; with more, one scan skips them."""


def _claimable(workflows: Sequence[str], at: str | None, limit: int) -> tuple[str, list[Any]]:
    """The statement choosing the jobs a claim takes, and its parameters."""
    if len(workflows) > _MERGED_CLAIM_WORKFLOWS:
        return _CLAIMABLE.format(workflows=_marks(workflows)), [at, *workflows, limit]
    branches = " UNION ALL ".join(_CLAIMABLE_BRANCH for _ in workflows)
    parameters = [value for name in workflows for value in (name, at)]
    return _CLAIMABLE_MERGED.format(branches=branches), [*parameters, limit]


_CLAIM: Final = (
    "UPDATE flowq_jobs SET "
    + set_clause(transitions.CLAIM, {"now": "?1", "worker_id": "?2"}, str)
    + " WHERE id IN ({ids}) RETURNING "
    + ", ".join(rows.CLAIMED_COLUMNS)
)
_COMPLETE: Final = (
    "UPDATE flowq_jobs SET "
    + set_clause(transitions.COMPLETE, {"now": "?1", "output": "?2"}, str)
    + " WHERE id = ?3 AND lease_id = ?4 AND status = 'processing'"
)
_PARK: Final = (
    "UPDATE flowq_jobs SET "
    + set_clause(
        transitions.SUSPEND,
        {"now": "?1", "wait_until": "?2", "wait_token_id": "NULL", "ready_at": "?2"},
        str,
    )
    + " WHERE id = ?3 AND lease_id = ?4 AND status = 'processing'"
)
_RECORD: Final = """
INSERT INTO flowq_steps (job_id, seq, name, attempt, output, error, started_at, completed_at)
VALUES {rows}
ON CONFLICT (job_id, seq) DO UPDATE SET
    name = excluded.name, attempt = excluded.attempt, output = excluded.output,
    error = excluded.error, started_at = excluded.started_at, completed_at = excluded.completed_at
WHERE flowq_steps.error IS NOT NULL
RETURNING job_id, seq
"""
_RECORD_CHUNK: Final = 500
"""Calls per INSERT (8 parameters each, well under SQLite's parameter limit)."""
_CALLS: Final = f"SELECT {', '.join(rows.CALL_COLUMNS)} FROM flowq_steps WHERE job_id = ?"
_CALL: Final = f"{_CALLS} AND seq = ?"
_HISTORY: Final = f"{_CALLS} ORDER BY seq"


def stored_time(value: datetime | None) -> str | None:
    """A datetime as SQLAlchemy stores it on SQLite (naive UTC text)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _add_plain_jobs(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime) -> list[int]:
    keys = sorted({job.idempotency_key for job in jobs if job.idempotency_key is not None})
    existing: dict[str | None, int] = {}
    if keys:
        existing = dict(conn.execute(_IDS_BY_KEY, [json.dumps(keys)]).fetchall())
    count = batch.count_new_jobs(jobs, existing)
    [(last,)] = conn.execute(_LAST_ID).fetchall()
    first = int(last or 0) + 1
    plan = batch.plan_batch(jobs, existing, {}, {}, range(first, first + count))
    if plan.rows:
        values = [_job_values(rows.new_job_row(job, job_id, now)) for job_id, job in plan.rows]
        conn.executemany(_INSERT_JOB, values)
        at = stored_time(now)
        conn.executemany(
            _INSERT_EVENT, [(job_id, EventType.ADDED.value, at, None) for job_id, _ in plan.rows]
        )
    return plan.ids


def _claim_jobs(
    conn: sqlite3.Connection, worker_id: str, limit: int, workflows: Sequence[str], now: datetime
) -> list[ClaimedJob]:
    at = stored_time(now)
    previous = {
        job_id: (status, bool(has_history))
        for job_id, status, has_history in conn.execute(*_claimable(workflows, at, limit))
    }
    if not previous:
        return []
    claim = _CLAIM.format(ids=", ".join(str(int(i)) for i in sorted(previous)))
    found = [_claimed_row(values) for values in conn.execute(claim, [at, worker_id]).fetchall()]
    found.sort(key=lambda row: (-row["priority"], row["id"]))
    claimed = [
        ClaimedJob(
            rows.header_from_row(row),
            Lease(row["id"], row["lease_id"], worker_id),
            previous[row["id"]][0] == JobStatus.WAITING.value,
            row["payload"],
            previous[row["id"]][1],
        )
        for row in found
    ]
    conn.executemany(
        _INSERT_EVENT,
        [
            (
                c.job.id,
                EventType.PROCESSING.value,
                at,
                rows.event_metadata(transitions.processing_metadata(c)),
            )
            for c in claimed
        ],
    )
    return claimed


def _complete_jobs(
    conn: sqlite3.Connection, completions: Sequence[Completion], now: datetime
) -> tuple[list[bool], bool]:
    at = stored_time(now)
    done = [
        conn.execute(_COMPLETE, [at, c.output, c.lease.job_id, c.lease.lease_id]).rowcount == 1
        for c in completions
    ]
    finished = sorted(c.lease.job_id for c, ok in zip(completions, done, strict=True) if ok)
    if not finished:
        return done, False
    conn.executemany(
        _INSERT_EVENT, [(job_id, EventType.COMPLETED.value, at, None) for job_id in finished]
    )
    found = conn.execute(
        f"SELECT 1 FROM flowq_job_dependencies WHERE depends_on_id IN "
        f"({', '.join(str(int(i)) for i in finished)}) LIMIT 1"
    ).fetchall()
    return done, bool(found)


def _park_job(
    conn: sqlite3.Connection,
    lease: Lease,
    wait_until: datetime | None,
    metadata: str | None,
    now: datetime,
) -> bool:
    at = stored_time(now)
    until = None if wait_until is None else stored_time(wait_until)
    if conn.execute(_PARK, [at, until, lease.job_id, lease.lease_id]).rowcount != 1:
        return False
    conn.execute(_INSERT_EVENT, [lease.job_id, EventType.WAITING.value, at, metadata])
    return True


def _record_calls(
    conn: sqlite3.Connection, calls: Sequence[tuple[Lease, RecordedCall]]
) -> dict[tuple[int, int], RecordedCall | None]:
    wanted = sorted({lease.job_id for lease, _ in calls})
    leases = {
        (job_id, lease_id)
        for job_id, lease_id in conn.execute(
            f"SELECT id, lease_id FROM flowq_jobs WHERE status = 'processing' AND id IN "
            f"({', '.join(str(int(i)) for i in wanted)})"
        )
    }
    values = [
        (
            lease.job_id, call.seq, call.name, call.attempt, call.output, call.error,
            stored_time(call.started_at), stored_time(call.completed_at),
        )
        for lease, call in calls
        if (lease.job_id, lease.lease_id) in leases
    ]  # fmt: skip
    written: set[tuple[int, int]] = set()
    for start in range(0, len(values), _RECORD_CHUNK):
        chunk = values[start : start + _RECORD_CHUNK]
        sql = _RECORD.format(rows=", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk))
        found = conn.execute(sql, [value for row in chunk for value in row])
        written.update((job_id, seq) for job_id, seq in found)
    held: dict[tuple[int, int], RecordedCall | None] = {}
    for job_id, seq, *_ in values:
        if (job_id, seq) in written:
            held[(job_id, seq)] = None
        else:
            [row] = conn.execute(_CALL, [job_id, seq]).fetchall()
            held[(job_id, seq)] = _call(row)
    return held


async def in_write_transaction(db: Any, body: Callable[..., Any], *args: Any) -> Any:
    """``body(connection, *args)`` in one write transaction, run whole in the thread of
    the aiosqlite connection ``db`` on its sqlite3 connection: one hop from the event
    loop per transaction instead of one per statement. (``Connection._execute`` is how
    every aiosqlite method reaches its thread; aiosqlite is pinned accordingly.)

    If the caller is cancelled, the transaction still ends in its thread: rolled back
    if it had not begun or its body had not finished, so a cancelled claim claims
    nothing; committed if the cancellation came after the body.
    """
    abandoned = threading.Event()
    try:
        return await db._execute(_write, db._conn, abandoned, body, *args)
    except BaseException:
        abandoned.set()
        raise


def _write(
    conn: sqlite3.Connection, abandoned: threading.Event, body: Callable[..., Any], *args: Any
) -> Any:
    """``body(conn, *args)`` in a transaction taken at its start (``BEGIN IMMEDIATE``,
    retried while another process holds the lock, up to :data:`LOCK_WAIT_SECONDS`);
    rolled back if it raises or its caller gave up. Runs in the connection's thread."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.002
    while not abandoned.is_set():
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    else:
        return None
    try:
        result = body(conn, *args)
    except BaseException:
        conn.rollback()
        raise
    if abandoned.is_set():
        conn.rollback()
        return None
    conn.commit()
    return result


def _wal_file(database: str) -> Path:
    """The WAL file of the SQLite database file ``database``."""
    return Path(f"{Path(database).expanduser().absolute()}-wal")


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is written (None: there is no such file)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


def read_time(value: str | None) -> datetime | None:
    """Stored text back to an aware UTC datetime."""
    if value is None:
        return None
    try:
        # Stored times are naive UTC text: one parse, with the offset appended, is
        # several times faster than parsing and then replacing the tzinfo.
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:  # text with an offset of its own, or another layout
        return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _job_values(row: dict[str, Any]) -> tuple[Any, ...]:
    values = []
    for column in rows.JOB_COLUMNS:
        value = row[column]
        if column in _DATETIME_COLUMNS:
            value = stored_time(value)
        elif column == "tags":
            value = json.dumps(list(value))
        elif column == "force_kill_on_timeout":
            value = int(value)
        values.append(value)
    return tuple(values)


def _claimed_row(values: Sequence[Any]) -> dict[str, Any]:
    row = dict(zip(rows.CLAIMED_COLUMNS, values, strict=True))
    row["tags"] = tuple(json.loads(row["tags"]))
    return row


def _call(row: Sequence[Any]) -> RecordedCall:
    seq, name, attempt, output, error, started, completed = row
    return recorded_call_of(
        seq,
        name,
        attempt,
        output,
        error,
        read_time(started),  # type: ignore[arg-type]
        read_time(completed),  # type: ignore[arg-type]
    )


async def _fetch(db: Any, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
    async with db.execute(sql, parameters) as cursor:
        return list(await cursor.fetchall())
