"""PostgreSQL through asyncpg: the :class:`PostgresDialect` and its hot-path statements.

Each hot path is ONE statement on the asyncpg connection, outside an explicit
transaction (a single statement is its own transaction), with its events written by
a data-modifying CTE of the same statement. The SET clauses come from the job state
machine (:mod:`flowq.store.transitions`), rendered once here.
"""

from __future__ import annotations

import functools
import logging
import operator
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, Final

import anyio
import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    func,
    not_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flowq import codec
from flowq.models import JobStatus, RetryPolicy, TagQuery
from flowq.replay import RecordedCall, recorded_call_of
from flowq.store import rows, transitions
from flowq.store.base import ClaimedJob, Completion, Lease, NewJob, StoreCapabilities
from flowq.store.sql import pg_schema
from flowq.store.sql.dialect import ErrorKind
from flowq.store.sql.render import set_clause
from flowq.store.sql.schema import jobs
from flowq.store.sql.urls import asyncpg_dsn, engine_url, safe_url

__all__ = [
    "ADD_JOBS",
    "CHANNEL",
    "CLAIM_JOBS",
    "COMPLETE_JOBS",
    "LOAD_HISTORY",
    "MERGED_CLAIM_WORKFLOWS",
    "PARK_JOB",
    "POOL_SIZE",
    "RECORD_CALLS",
    "SKIPPABLE_PER_WORKFLOW",
    "PostgresDialect",
    "claim_statement",
]

CHANNEL: Final = pg_schema.DEFAULT_CHANNEL
"""The notification channel workers LISTEN on (a store with a schema has its own:
:func:`flowq.store.sql.pg_schema.channel_for`)."""
POOL_SIZE: Final = 30
"""Most connections of an App's pool, kept once opened (a worker's LISTEN connection
is not one of them)."""
_MIGRATION_LOCK: Final = 4711020250
_GROUP_CLAIM_LOCK: Final = 4711020251
log = logging.getLogger("flowq")

_UNAVAILABLE_CLASSES = {"08", "28", "3D", "53", "57"}
_BUSY_STATES = {"40P01", "40001", "55P03"}  # deadlock, serialization failure, lock timeout
# statement timeout or cancel, disk full, out of memory, program limits, disk I/O
_REFUSED_STATES = {"57014", "53100", "53200", "58030"}
_REFUSED_CLASSES = {"54"}


def _flag(value: object) -> bool:
    text = value[-1] if isinstance(value, tuple) else value
    return str(text).lower() in ("1", "true", "yes", "on")


def _unique_statement_name() -> str:
    return f"__flowq_{uuid.uuid4().hex}__"


_INDEXED_OVERLAP: Final = 32
"""The most "any"/"none" tag values matched through the GIN index."""


class PostgresDialect:
    """PostgreSQL through asyncpg: LISTEN/NOTIFY wakes workers of every process.

    Args:
        schema: The schema of flowq's tables (checked by
            :func:`flowq.store.sql.pg_schema.check_schema`); None: wherever the
            connection's own ``search_path`` leads. With a schema, connections open
            with ``search_path`` set to it, and the notification channel and
            advisory-lock keys are the schema's own.
    """

    name = "postgresql"
    capabilities = StoreCapabilities(notifications=True, poll_interval=2.0)

    def __init__(self, schema: str | None = None) -> None:
        self.schema = None if schema is None else pg_schema.check_schema(schema)
        self.channel = pg_schema.channel_for(self.schema)
        self._migration_lock = pg_schema.lock_key(_MIGRATION_LOCK, self.schema)
        self._group_claim_lock = pg_schema.lock_key(_GROUP_CLAIM_LOCK, self.schema)
        self._complete_jobs = pg_schema.with_channel(COMPLETE_JOBS, self.channel)
        self._prepares = True  # server-side prepared statements (not ?pgbouncer=1)

    # -- set-up ---------------------------------------------------------------------

    def create_engine(self, url: URL) -> AsyncEngine:
        """A pooled engine: up to :data:`POOL_SIZE` connections, opened as needed and
        kept (recycled hourly). With fewer kept and the rest as overflow, closed as
        soon as returned, a worker whose jobs park (a transaction each) opened and
        closed a connection every ten jobs or so at concurrency 50: a server process
        each time, and worker memory. ``?pgbouncer=1`` in the URL turns off
        server-side prepared statements (of SQLAlchemy and asyncpg), which a PgBouncer
        in transaction pooling mode before 1.21 cannot route; use it with
        ``notify=False`` workers.

        With a schema, each connection starts with ``search_path`` set to it (a
        startup parameter: no statement pays for it). ``sslmode=`` (libpq's spelling)
        and ``ssl=`` (the asyncpg dialect's) both work."""
        options: dict[str, Any] = {
            "pool_size": POOL_SIZE,
            "max_overflow": 0,
            "pool_recycle": 3600,
        }
        connect_args: dict[str, Any] = {}
        url = engine_url(url)
        self._prepares = not _flag(url.query.get("pgbouncer"))
        if not self._prepares:
            url = url.difference_update_query(["pgbouncer"]).update_query_dict(
                {"prepared_statement_cache_size": "0"}
            )
            connect_args["statement_cache_size"] = 0
            connect_args["prepared_statement_name_func"] = _unique_statement_name
        if self.schema is not None:
            connect_args["server_settings"] = {"search_path": pg_schema.search_path(self.schema)}
        if connect_args:
            options["connect_args"] = connect_args
        return create_async_engine(url, **options)

    async def reserve(self, driver: Any, purpose: str) -> None:
        """The claim connection plans its statements once (generic plans).

        Left to choose, PostgreSQL re-plans every claim (its estimate for the actual
        ``now`` looks cheaper than the generic plan), and planning costs more than
        running a claim: ~0.3 ms on an empty queue, ~1 ms next to a million finished
        jobs, where the planner reads the ends of the ``ready_at`` index. The claim's
        generic plan is the same as its custom one (see :func:`claim_statement`).
        Not behind PgBouncer (``?pgbouncer=1``): a session setting would reach other
        clients there, and statements are not prepared anyway.
        """
        if purpose == "claim" and self._prepares:
            await driver.execute("SET plan_cache_mode = force_generic_plan")

    async def release(self, driver: Any, purpose: str) -> None:
        """Undo :meth:`reserve` before the connection goes back to the pool."""
        if purpose == "claim" and self._prepares:
            await driver.execute("RESET plan_cache_mode")

    def reset(self) -> None:
        """Nothing belongs to an event loop."""

    async def table_bytes(self, connection: AsyncConnection) -> dict[str, int]:
        """Each flowq table's size with its indexes and TOAST."""
        result = await connection.exec_driver_sql(
            "SELECT relname, pg_total_relation_size(relid) FROM pg_catalog.pg_statio_user_tables "
            "WHERE relname LIKE 'flowq\\_%' AND schemaname = current_schema() ORDER BY relname"
        )
        found: list[Any] = list(result.all())
        return {str(name): int(size) for name, size in found}

    async def lock_migrations(self, connection: AsyncConnection) -> None:
        """A transaction-level advisory lock (the schema's own)."""
        await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({self._migration_lock})")

    async def create_schema(self, connection: AsyncConnection) -> None:
        """With a schema: create it unless it exists (checked first, so a role without
        CREATE on the database can migrate a schema made for it)."""
        if self.schema is None:
            return
        found = await connection.execute(
            text("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :name"),
            {"name": self.schema},
        )
        if found.first() is None:
            quoted = pg_schema.quote_identifier(self.schema)
            await connection.exec_driver_sql(f"CREATE SCHEMA {quoted}")

    def migration_statement(self, statement: str) -> str:
        """``statement`` notifying on the schema's channel."""
        return pg_schema.with_channel(statement, self.channel)

    async def schema_problem(self, connection: AsyncConnection) -> str | None:
        """With a schema: what is wrong when the connection's first schema is another
        one (a PgBouncer that dropped the ``search_path`` startup parameter, a caller's
        connection), else None. A schema not created yet is no problem here: the
        tables are missing, which the caller reports."""
        if self.schema is None:
            return None
        found = await connection.exec_driver_sql(
            "SELECT current_schema(), current_setting('search_path')"
        )
        row: Any = found.one()
        first, path = row[0], row[1]
        if first is None or first == self.schema:
            return None
        return (
            f"the connection's search_path is {path!r}, which finds flowq's tables in "
            f"{first!r}, not in the schema {self.schema!r} (see 'PostgreSQL schemas' in "
            "docs/operations.md)"
        )

    def classify(self, error: BaseException | None, *, invalidated: bool) -> ErrorKind:
        """Lost connections, missing tables and lock conflicts by SQLSTATE."""
        if isinstance(error, OSError | TimeoutError | asyncpg.ConnectionDoesNotExistError):
            return "unavailable"
        if isinstance(error, asyncpg.InterfaceError) and "closed" in str(error):
            return "unavailable"
        if isinstance(error, asyncpg.InternalClientError):
            return "unavailable"  # the protocol state is broken: the connection is unusable
        state = str(getattr(error, "sqlstate", "") or "")
        if state == "42P01":
            return "missing_table"
        if state in _BUSY_STATES:
            return "busy"
        if state in _REFUSED_STATES or state[:2] in _REFUSED_CLASSES:
            return "refused"
        if invalidated or state[:2] in _UNAVAILABLE_CLASSES:
            return "unavailable"
        return None

    # -- pieces of the general statements ---------------------------------------------

    async def allocate_ids(self, connection: AsyncConnection, count: int) -> list[int]:
        """Ids from the table's sequence."""
        result = await connection.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('flowq_jobs', 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"count": count},
        )
        return sorted(row[0] for row in result)

    def tag_condition(self, query: TagQuery) -> ColumnElement[bool]:
        """Array operators on the ``text[]`` column, the values one parameter.

        ``@>`` (all, exact) and a short ``&&`` (any, none) use the GIN index. A GIN
        scan costs per value, so more than :data:`_INDEXED_OVERLAP` values are tested
        row by row against a JSONB object of them, built once per statement, whose
        keys ``?|`` finds by binary search.
        """
        tags = type_coerce(jobs.c.tags, postgresql.ARRAY(Text))
        values = list(query.values)
        if query.mode in ("all", "exact"):
            contains: ColumnElement[bool] = tags.contains(values)
            if query.mode == "all":
                return contains
            return and_(contains, func.cardinality(jobs.c.tags) == len(values))
        overlaps: ColumnElement[bool]
        if len(values) <= _INDEXED_OVERLAP:
            overlaps = tags.overlap(values)
        else:
            keys = codec.encode(dict.fromkeys(values, 1), what="tag query")
            param = bindparam("tag_keys", keys, type_=Text, unique=True)
            table = select(cast(param, postgresql.JSONB)).scalar_subquery()
            overlaps = type_coerce(table, postgresql.JSONB).has_any(tags)
        return overlaps if query.mode == "any" else not_(overlaps)

    def one_of(
        self, column: ColumnElement[Any], values: Collection[int] | Collection[str]
    ) -> ColumnElement[bool]:
        """``column = ANY(:array)``: one ``bigint[]`` or ``text[]`` parameter."""
        element = Text() if isinstance(column.type, String) else BigInteger()
        array = bindparam(None, list(values), type_=postgresql.ARRAY(element))
        return column == any_(array)

    def insert_into(self, table: Table) -> postgresql.Insert:
        """PostgreSQL's INSERT."""
        return postgresql.insert(table)

    async def lock_group_claims(self, connection: AsyncConnection) -> None:
        """A transaction-level advisory lock."""
        await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({self._group_claim_lock})")

    # -- wake-ups -------------------------------------------------------------------

    async def notify(self, connection: AsyncConnection, hint: str) -> None:
        """``pg_notify`` on the schema's channel (delivered at commit)."""
        await connection.execute(
            text("SELECT pg_notify(:channel, :hint)"), {"channel": self.channel, "hint": hint}
        )

    async def listen(self, url: URL, on_wake: Callable[[str], None]) -> None:
        """LISTEN on a dedicated connection; reconnect with backoff when it drops.

        After every (re)connection ``on_wake("jobs")`` is called, since hints sent
        while disconnected were lost.
        """
        dsn = asyncpg_dsn(url)
        backoff = 0.1
        while True:
            try:
                # Shielded (at most its timeout): a connect cancelled midway leaves
                # asyncpg a future nobody reads ("Future exception was never retrieved:
                # unexpected connection_lost() call"). A cancellation meanwhile is
                # delivered at the next await, and the connection closed below.
                with anyio.CancelScope(shield=True):
                    connection = await asyncpg.connect(dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning(
                    "flowq: cannot LISTEN on %s (%s); retrying in %.1fs",
                    safe_url(url),
                    exc,
                    backoff,
                )
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            lost = anyio.Event()
            try:
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(
                    self.channel,
                    lambda _c, _pid, channel, payload: _deliver(on_wake, payload, channel),
                )
                backoff = 0.1
                on_wake("jobs")
                await lost.wait()
                log.warning(
                    "flowq: the LISTEN connection to %s dropped; reconnecting", safe_url(url)
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await connection.close(timeout=2)

    # -- hot paths ------------------------------------------------------------------

    async def add_plain_jobs(
        self, driver: Any, jobs: Sequence[NewJob], now: datetime
    ) -> list[int] | None:
        """Jobs and their events in one statement; None when an idempotency key
        vanished between the insert and the look-up of its job (a concurrent cleanup)."""
        found = await driver.fetch(ADD_JOBS, *_add_arguments(jobs, now))
        ids = [row["id"] if row["inserted"] else None for row in found]
        missing = sorted({row["idempotency_key"] for row in found if not row["inserted"]})
        if missing:
            existing = await driver.fetch(
                "SELECT idempotency_key, id FROM flowq_jobs WHERE idempotency_key = ANY($1)",
                missing,
            )
            by_key = {row["idempotency_key"]: row["id"] for row in existing}
            for index, row in enumerate(found):
                if ids[index] is None:
                    ids[index] = by_key.get(row["idempotency_key"])
        if any(job_id is None for job_id in ids):
            return None
        return [job_id for job_id in ids if job_id is not None]

    async def claim_jobs(
        self, driver: Any, worker_id: str, limit: int, workflows: Sequence[str], now: datetime
    ) -> list[ClaimedJob]:
        """The claim and its events in one statement."""
        statement = claim_statement(tuple(workflows), operator.index(limit))
        found = await driver.fetch(statement, now, workflows, worker_id)
        return [
            ClaimedJob(
                rows.header_from_row(row),
                Lease(row["id"], row["lease_id"], worker_id),
                row["previous_status"] == JobStatus.WAITING.value,
                row["payload"],
                row["has_history"],
            )
            for row in found
        ]

    async def complete_jobs(
        self, driver: Any, completions: Sequence[Completion], now: datetime
    ) -> tuple[list[bool], bool]:
        """Completions, their events and the dependants' wake-up in one statement."""
        found = await driver.fetch(
            self._complete_jobs,
            [c.lease.job_id for c in completions],
            [c.lease.lease_id for c in completions],
            [c.output for c in completions],
            now,
        )
        done = {row["id"] for row in found}
        woke = any(row["has_dependants"] for row in found)
        return [c.lease.job_id in done for c in completions], woke

    async def record_calls(
        self, driver: Any, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        """The calls of held jobs in one statement; an earlier success is kept."""
        found = await driver.fetch(
            RECORD_CALLS,
            [lease.job_id for lease, _ in calls],
            [lease.lease_id for lease, _ in calls],
            *([getattr(call, column) for _, call in calls] for column in rows.CALL_COLUMNS),
        )
        held = {
            (row["job_id"], row["seq"]): None if row["stored"] else rows.recorded_call(row)
            for row in found
        }
        return rows.as_stored(calls, held)

    async def park_job(
        self,
        driver: Any,
        lease: Lease,
        wait_until: datetime | None,
        metadata: str | None,
        now: datetime,
    ) -> bool:
        """The park and its event in one statement."""
        parked = await driver.fetchval(
            PARK_JOB, lease.job_id, lease.lease_id, wait_until, now, metadata
        )
        return bool(parked)

    async def load_history(self, driver: Any, job_id: int) -> list[RecordedCall]:
        """The job's recorded calls in position order."""
        found = await driver.fetch(LOAD_HISTORY, job_id)
        return [recorded_call_of(*row) for row in found]  # the columns in field order


def _add_arguments(jobs: Sequence[NewJob], now: datetime) -> list[Any]:
    """The 14 parameters of :data:`ADD_JOBS` (arrays of column values, now, then the
    ``unresolved_options`` array)."""
    tags: dict[tuple[str, ...], str] = {}  # jobs of a batch mostly share these
    retries: dict[RetryPolicy, str] = {}
    for job in jobs:
        if job.tags not in tags:
            tags[job.tags] = codec.encode(list(job.tags), what="tags")
        if job.retry not in retries:
            retries[job.retry] = rows.encode_retry(job.retry)
    return [
        [job.workflow for job in jobs],
        [job.payload for job in jobs],
        [job.priority for job in jobs],
        [job.max_attempts for job in jobs],
        [job.run_at for job in jobs],
        [tags[job.tags] for job in jobs],
        [job.idempotency_key for job in jobs],
        [job.group for job in jobs],
        [rows.to_ms(job.timeout) for job in jobs],
        [job.force_kill_on_timeout for job in jobs],
        [retries[job.retry] for job in jobs],
        [job.dead_letter for job in jobs],
        now,
        [rows.options_mask(job.unresolved_options) for job in jobs],
    ]


def _old(column: str) -> str:
    return f"j.{column}"


_CLAIM_SET = set_clause(transitions.CLAIM, {"now": "$1", "worker_id": "$3"}, _old)
_COMPLETE_SET = set_clause(transitions.COMPLETE, {"now": "$4", "output": "i.output"}, _old)
_CLAIMED = ", ".join(f"j.{column}" for column in rows.CLAIMED_COLUMNS)

ADD_JOBS: Final = """
WITH input AS MATERIALIZED (
    SELECT nextval('flowq_jobs_id_seq'::regclass) AS id, t.*
    FROM unnest(
        $1::text[], $2::text[], $3::int[], $4::int[], $5::timestamptz[], $6::text[],
        $7::text[], $8::text[], $9::bigint[], $10::bool[], $11::text[], $12::text[],
        $14::int[]
    ) WITH ORDINALITY AS t(
        workflow, payload, priority, max_attempts, run_at, tags, idempotency_key,
        group_name, timeout_ms, force_kill_on_timeout, retry, dead_letter,
        unresolved_options, ord
    )
), inserted AS (
    INSERT INTO flowq_jobs (
        id, workflow, payload, status, priority, attempts, max_attempts, run_at, ready_at,
        tags, idempotency_key, group_name, timeout_ms, force_kill_on_timeout, retry,
        dead_letter, unresolved_options, error_history, lease_id, created_at, updated_at
    )
    SELECT
        id, workflow, payload, 'pending', priority, 0, max_attempts,
        COALESCE(run_at, $13), COALESCE(run_at, $13),
        CASE WHEN tags = '[]' THEN '{}'::text[]
            ELSE ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)) END,
        idempotency_key, group_name,
        timeout_ms, force_kill_on_timeout, retry, dead_letter, unresolved_options, '[]', 0,
        $13, $13
    FROM input
    ORDER BY ord
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), events AS (
    INSERT INTO flowq_job_events (job_id, event_type, at)
    SELECT id, 'added', $13 FROM inserted
)
SELECT input.ord, input.id, input.idempotency_key, inserted.id IS NOT NULL AS inserted
FROM input LEFT JOIN inserted ON inserted.id = input.id
ORDER BY input.ord
"""
"""Jobs without dependencies and their ``added`` events (the 14 parameters of
:func:`_add_arguments`)."""

_CLAIM_CHOSEN: Final = """
    SELECT j.id, j.status AS previous_status
    FROM flowq_jobs j
    WHERE j.ready_at <= $1
      AND j.workflow = ANY($2::text[])
    ORDER BY j.priority DESC, j.id
    LIMIT {limit}
    FOR UPDATE OF j SKIP LOCKED
"""
_CLAIM_CHOSEN_MERGED: Final = """
    SELECT j.id, j.status AS previous_status
    FROM ({branches}) c
    JOIN flowq_jobs j ON j.id = c.id
    WHERE j.ready_at <= $1
      AND j.workflow = ANY($2::text[])
    ORDER BY c.rank, c.id
    LIMIT {limit}
    FOR UPDATE OF j SKIP LOCKED
"""
_CLAIM_CHOSEN_ONE: Final = """
    SELECT j.id, j.status AS previous_status
    FROM flowq_jobs j
    WHERE j.workflow = {name}
      AND j.ready_at <= $1
      AND j.workflow = ANY($2::text[])
    ORDER BY - j.priority, j.id
    LIMIT {limit}
    FOR UPDATE OF j SKIP LOCKED
"""
_CLAIM_BRANCH: Final = (
    "(SELECT id, - priority AS rank FROM flowq_jobs WHERE workflow = {name} "
    "AND ready_at <= $1 ORDER BY - priority, id LIMIT {limit})"
)
SKIPPABLE_PER_WORKFLOW: Final = 500
"""How many due jobs of one workflow a merged claim may find locked by concurrent
claims and skip: each branch reads at most the limit plus this many (the LIMIT in
the branch is what makes PostgreSQL read the index in order)."""
MERGED_CLAIM_WORKFLOWS: Final = 32
"""Up to this many workflows, a claim reads each one's jobs from
``ix_flowq_jobs_claim_workflow`` and merges them in claim order."""

CLAIM_JOBS: Final = f"""
WITH chosen AS ({{chosen}}), claimed AS (
    UPDATE flowq_jobs j SET {_CLAIM_SET}
    FROM chosen c
    WHERE j.id = c.id
    RETURNING {_CLAIMED}, c.previous_status,
        EXISTS (SELECT 1 FROM flowq_steps s WHERE s.job_id = j.id) AS has_history
), events AS (
    INSERT INTO flowq_job_events (job_id, event_type, at, metadata)
    SELECT id, 'processing', $1, json_build_object(
        'worker_id', $3::text, 'attempt', attempts, 'resumed', previous_status = 'waiting'
    )::text
    FROM claimed
)
SELECT * FROM claimed ORDER BY priority DESC, id
"""
"""Claim due jobs of some workflows: ``$1`` now, ``$2`` the workflows, ``$3`` the
worker id. The metadata is ``transitions.processing_metadata``'s.
A job waiting for prerequisites has no ``ready_at`` (``transitions.UNBLOCK``).
``{chosen}`` is filled in by :func:`claim_statement`."""


@functools.lru_cache(maxsize=512)
def claim_statement(workflows: tuple[str, ...], limit: int) -> str:
    """:data:`CLAIM_JOBS` for a worker running ``workflows``, claiming up to ``limit``.

    Up to :data:`MERGED_CLAIM_WORKFLOWS` workflows, each one's due jobs are read in
    claim order from ``ix_flowq_jobs_claim_workflow`` (one branch per workflow,
    merged lazily, locking only the rows taken), so due jobs of other workflows cost
    nothing. What makes PostgreSQL's planner read that index in order rather than
    walk ``ix_flowq_jobs_claim`` or sort every due job (checked with generic and
    custom plans, 100,000 foreign and 30,000 own due jobs): the names are SQL
    literals (with a parameter it does not see each branch's order), the order is
    ``(-priority, id)``, which only that index gives, and each branch has a LIMIT.
    With more workflows, one scan in claim order skips the jobs of the others.

    The limit is a literal too: the claim connection runs generic plans (see
    :meth:`PostgresDialect.reserve`), and a generic plan of ``LIMIT $n`` expects a
    tenth of the table, which turns the claim's update into a merge join along the
    whole primary key. A worker asks for 1 to ``batch_size`` jobs: that many
    statements, each prepared once per connection.
    """
    names = sorted(set(workflows))
    if not names or len(names) > MERGED_CLAIM_WORKFLOWS:
        return CLAIM_JOBS.format(chosen=_CLAIM_CHOSEN.format(limit=limit))
    if len(names) == 1:
        chosen = _CLAIM_CHOSEN_ONE.format(name=_literal(names[0]), limit=limit)
        return CLAIM_JOBS.format(chosen=chosen)
    branches = " UNION ALL ".join(
        _CLAIM_BRANCH.format(name=_literal(name), limit=limit + SKIPPABLE_PER_WORKFLOW)
        for name in names
    )
    merged = _CLAIM_CHOSEN_MERGED.format(branches=branches, limit=limit)
    return CLAIM_JOBS.format(chosen=merged)


def _literal(value: str) -> str:
    """``value`` as an escape string constant, whatever ``standard_conforming_strings``."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


_PROCESSING: Final = "(j.status = 'processing') IS TRUE"
"""The held rows' status check, in a form no index answers: statistics rarely see a
processing job, so the planner would otherwise take ``ix_flowq_jobs_status_id`` and
read every processing job (once per input row, in a nested loop) instead of the few
given ids through the primary key."""

COMPLETE_JOBS: Final = f"""
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(id, lease_id, output)
), locked AS MATERIALIZED (
    -- Lock rows in id order, as every statement that locks several job rows does:
    -- concurrent batches of one worker must not deadlock each other.
    SELECT j.id FROM flowq_jobs j JOIN input i ON j.id = i.id AND j.lease_id = i.lease_id
    WHERE {_PROCESSING} ORDER BY j.id FOR UPDATE OF j
), completed AS (
    UPDATE flowq_jobs j SET {_COMPLETE_SET}
    FROM input i JOIN locked l ON l.id = i.id
    WHERE j.id = i.id AND j.lease_id = i.lease_id AND {_PROCESSING}
    RETURNING j.id, j.has_dependants
), events AS (
    INSERT INTO flowq_job_events (job_id, event_type, at)
    SELECT id, 'completed', $4 FROM completed ORDER BY id
)
SELECT id, has_dependants,
    CASE WHEN has_dependants THEN pg_notify('{CHANNEL}', 'jobs') END AS notified
FROM completed
"""
"""Complete held jobs: ``$1`` ids, ``$2`` lease ids, ``$3`` outputs, ``$4`` now. The
``flowq_jobs_unblock_dependants`` trigger counts them down on their dependants."""

RECORD_CALLS: Final = f"""
WITH input AS (
    SELECT * FROM unnest(
        $1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::int[], $6::text[], $7::text[],
        $8::timestamptz[], $9::timestamptz[]
    ) AS t(job_id, lease_id, seq, name, attempt, output, error, started_at, completed_at)
), held AS (
    SELECT i.* FROM input i
    JOIN flowq_jobs j ON j.id = i.job_id AND j.lease_id = i.lease_id AND {_PROCESSING}
    ORDER BY j.id
    FOR SHARE OF j
), recorded AS (
    INSERT INTO flowq_steps (job_id, seq, name, attempt, output, error, started_at, completed_at)
    SELECT job_id, seq, name, attempt, output, error, started_at, completed_at FROM held
    ON CONFLICT (job_id, seq) DO UPDATE SET
        name = excluded.name, attempt = excluded.attempt, output = excluded.output,
        error = excluded.error, started_at = excluded.started_at,
        completed_at = excluded.completed_at
    WHERE flowq_steps.error IS NOT NULL
    RETURNING job_id, seq
)
-- Every held call, with the row already recorded at its position when the insert
-- neither added nor replaced one (a success is never replaced). The statement's
-- snapshot shows that row as it was, which is as it stays.
SELECT h.job_id, h.seq, r.seq IS NOT NULL AS stored,
    s.name, s.attempt, s.output, s.error, s.started_at, s.completed_at
FROM held h
LEFT JOIN recorded r ON r.job_id = h.job_id AND r.seq = h.seq
LEFT JOIN flowq_steps s ON r.seq IS NULL AND s.job_id = h.job_id AND s.seq = h.seq
"""
"""Record calls of held jobs: job ids, lease ids, then one array per
:data:`flowq.store.rows.CALL_COLUMNS` column."""

_PARK_SET = set_clause(
    transitions.SUSPEND,
    {"now": "$4", "wait_until": "$3", "wait_token_id": "NULL", "ready_at": "$3"},
    _old,
)
PARK_JOB: Final = f"""
WITH parked AS (
    UPDATE flowq_jobs j SET {_PARK_SET}
    WHERE j.id = $1 AND j.lease_id = $2 AND {_PROCESSING}
    RETURNING j.id
), events AS (
    INSERT INTO flowq_job_events (job_id, event_type, at, metadata)
    SELECT id, 'waiting', $4, $5 FROM parked
)
SELECT count(*) FROM parked
"""
"""Park a held job on a timer: ``$1`` id, ``$2`` lease id, ``$3`` the wake time (NULL:
none), ``$4`` now, ``$5`` the event's metadata."""

LOAD_HISTORY: Final = f"""
SELECT {", ".join(rows.CALL_COLUMNS)}
FROM flowq_steps WHERE job_id = $1 ORDER BY seq
"""
"""A job's recorded calls in position order."""


def _deliver(on_wake: Callable[[str], None], payload: str, channel: str) -> None:
    """Hand a NOTIFY payload to the listener; one that it cannot read (sent by
    something else than flowq) is logged in one line, without a traceback."""
    try:
        on_wake(payload)
    except Exception as exc:
        log.warning(
            "flowq: ignored a malformed notification %r on %s (%s: %s)",
            payload[:200], channel, type(exc).__name__, exc,
        )  # fmt: skip
