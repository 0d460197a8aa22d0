"""The SQL store: every verb of :class:`flowq.store.base.Store` on PostgreSQL or SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, delete, exists, func, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowq import codec
from flowq.clock import Clock, SystemClock
from flowq.errors import DatabaseError, DatabaseUnavailableError, SchemaError, ValidationError
from flowq.models import ErrorEntry, EventType, FailureReason, Job, JobEvent, JobStatus, TagQuery
from flowq.store import migrate, records
from flowq.store.base import CLEANUP_BATCH_SIZE, ClaimedJob, JobFilter, Lease, NewJob
from flowq.store.batch import plan_batch
from flowq.store.dialects import SqlDialect, dialect_for_url, normalize_url
from flowq.store.schema import job_dependencies, job_events, jobs, steps, tokens

__all__ = ["SqlStore"]

_prerequisite = jobs.alias("prerequisite")
_LIVE = (JobStatus.PENDING.value, JobStatus.PROCESSING.value, JobStatus.WAITING.value)
_CANCELLABLE = (JobStatus.PENDING.value, JobStatus.WAITING.value)
_RACE_RETRIES = 5
_RUN_AT_OPS = {
    "eq": lambda c, v: c == v,
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
}


class SqlStore:
    """flowq's tables in PostgreSQL (asyncpg) or SQLite (aiosqlite).

    Args:
        url: A database URL; ``postgresql://`` and ``sqlite:///`` pick flowq's drivers.
        clock: Where "now" comes from (the system clock by default).
    """

    def __init__(self, url: str | URL, *, clock: Clock | None = None) -> None:
        self.url = normalize_url(url)
        self.clock: Clock = clock or SystemClock()
        self.dialect: SqlDialect = dialect_for_url(self.url)
        self._engine: AsyncEngine | None = None

    def __repr__(self) -> str:
        return f"SqlStore({self.url.render_as_string(hide_password=True)!r})"

    # -- connection and schema ------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (created on first use)."""
        if self._engine is None:
            self._engine = self.dialect.create_engine(self.url)
        return self._engine

    async def open(self) -> None:
        """Connect and check that the schema is current.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
            SchemaError: The schema is missing or of another version.
        """
        async with self._transaction() as connection:
            found = await migrate.applied_version(connection)
        wanted = migrate.latest_version(self.dialect.name)
        if found < wanted:
            raise SchemaError(
                f"the flowq schema in {self._safe_url()} is at version {found}, this flowq needs "
                f"{wanted}: run `flowq migrate --database-url {self._safe_url()}`"
            )
        if found > wanted:
            raise SchemaError(
                f"the flowq schema in {self._safe_url()} is at version {found}, newer than this "
                f"flowq knows ({wanted}): upgrade flowq"
            )

    async def close(self) -> None:
        """Dispose of the connection pool."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def migrate(self) -> list[str]:
        """Apply missing migrations; return the names applied."""
        async with self._transaction() as connection:
            return await migrate.apply_migrations(connection, self.clock.now())

    def _safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def _schema_missing(self) -> SchemaError:
        return SchemaError(
            f"{self._safe_url()} has no flowq tables: run "
            f"`flowq migrate --database-url {self._safe_url()}` (or `await app.migrate()`)"
        )

    @asynccontextmanager
    async def _transaction(
        self, connection: AsyncConnection | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction (or the caller's), with driver errors made readable."""
        if connection is not None:
            if connection.dialect.name != self.dialect.name:
                raise ValidationError(
                    f"connection= is a {connection.dialect.name} connection but this App "
                    f"stores jobs in {self.dialect.name}"
                )
            yield connection
            return
        try:
            async with self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            kind = self.dialect.classify(exc)
            if kind == "missing_table":
                raise self._schema_missing() from exc
            if kind == "unavailable":
                raise DatabaseUnavailableError(
                    f"cannot use the database at {self._safe_url()}: {exc.orig}"
                ) from exc
            raise
        except (OSError, TimeoutError) as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to {self._safe_url()}: {exc}. Is the server running and the "
                "URL right?"
            ) from exc

    # -- adding ---------------------------------------------------------------------

    async def add_jobs(self, new_jobs: Sequence[NewJob], *, connection: Any = None) -> list[int]:
        """Insert jobs with their ``added`` events; ids in input order."""
        if not new_jobs:
            return []
        for _ in range(_RACE_RETRIES):
            try:
                return await self._add_jobs_once(new_jobs, connection)
            except _IdempotencyRace:
                if connection is not None:
                    raise DatabaseError(
                        "a concurrent transaction added a job with the same idempotency key; "
                        "roll back and retry"
                    ) from None
        raise DatabaseError("could not add jobs: idempotency keys kept changing under us")

    async def _add_jobs_once(self, new_jobs: Sequence[NewJob], connection: Any) -> list[int]:
        async with self._transaction(connection) as conn:
            now = self.clock.now()
            keys = [job.idempotency_key for job in new_jobs if job.idempotency_key is not None]
            existing = await self._ids_by_key(conn, keys)
            explicit = {d for job in new_jobs for d in job.depends_on if isinstance(d, int)}
            statuses = await self._lock_statuses(conn, explicit)
            tag_matches = {
                tags: await self._live_ids_with_tags(conn, tags)
                for tags in {job.depends_on_tags for job in new_jobs if job.depends_on_tags}
            }
            fresh_count = sum(1 for job in new_jobs if job.idempotency_key not in existing) or 1
            plan = plan_batch(
                new_jobs,
                existing,
                statuses,
                tag_matches,
                await self.dialect.allocate_ids(conn, fresh_count),
            )
            if plan.rows:
                inserted = await self._insert_rows(
                    conn, [records.new_job_row(job, job_id, now) for job_id, job in plan.rows]
                )
                if inserted != {job_id for job_id, _ in plan.rows}:
                    # Another transaction took an idempotency key meanwhile: retry cleanly.
                    raise _IdempotencyRace()
                if plan.edges:
                    await conn.execute(
                        insert(job_dependencies),
                        [{"job_id": a, "depends_on_id": b} for a, b in plan.edges],
                    )
                await self._add_events(
                    conn,
                    [
                        (job_id, EventType.ADDED, plan.added_metadata.get(job_id))
                        for job_id, _ in plan.rows
                    ],
                    now,
                )
            return plan.ids

    async def _ids_by_key(self, conn: AsyncConnection, keys: list[str]) -> dict[str | None, int]:
        if not keys:
            return {}
        result = await conn.execute(
            select(jobs.c.idempotency_key, jobs.c.id).where(jobs.c.idempotency_key.in_(keys))
        )
        return dict(result.all())

    async def _lock_statuses(
        self, conn: AsyncConnection, ids: Collection[int]
    ) -> dict[int, tuple[str, bool]]:
        """Status and "will retry" of prerequisites, locked against concurrent change."""
        if not ids:
            return {}
        result = await conn.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.ready_at.is_not(None))
            .where(jobs.c.id.in_(sorted(ids)))
            .with_for_update(read=True)
        )
        return {job_id: (status, bool(ready)) for job_id, status, ready in result}

    async def _live_ids_with_tags(self, conn: AsyncConnection, tags: tuple[str, ...]) -> list[int]:
        result = await conn.execute(
            select(jobs.c.id)
            .where(jobs.c.status.in_(_LIVE), self.dialect.tag_condition(TagQuery(tags, "all")))
            .order_by(jobs.c.id)
            .with_for_update(read=True)
        )
        return list(result.scalars())

    async def _insert_rows(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[int]:
        statement = (
            self.dialect.insert()
            .on_conflict_do_nothing(
                index_elements=[jobs.c.idempotency_key],
                index_where=jobs.c.idempotency_key.is_not(None),
            )
            .returning(jobs.c.id)
        )
        result = await conn.execute(statement, rows)
        return set(result.scalars())

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
                    "metadata": codec.encode(dict(meta), what="event metadata") if meta else None,
                }
                for job_id, event_type, meta in events
            ],
        )

    # -- reading --------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        """The job, or ``None``."""
        found = await self._select_jobs(jobs.c.id == job_id, limit=1)
        return found[0] if found else None

    async def get_jobs(
        self, where: JobFilter, *, limit: int | None = None, cursor: int | None = None
    ) -> list[Job]:
        """Matching jobs, newest first."""
        condition = self._condition(where)
        if cursor is not None:
            condition = and_(condition, jobs.c.id < cursor)
        return await self._select_jobs(condition, limit=limit)

    async def _select_jobs(self, condition: ColumnElement[bool], *, limit: int | None) -> list[Job]:
        async with self._transaction() as conn:
            query = select(jobs).where(condition).order_by(jobs.c.id.desc())
            if limit is not None:
                query = query.limit(limit)
            rows = (await conn.execute(query)).mappings().all()
            if not rows:
                return []
            edges = await conn.execute(
                select(job_dependencies.c.job_id, job_dependencies.c.depends_on_id)
                .where(job_dependencies.c.job_id.in_([row["id"] for row in rows]))
                .order_by(job_dependencies.c.job_id, job_dependencies.c.depends_on_id)
            )
        depends: dict[int, list[int]] = {}
        for job_id, prerequisite in edges:
            depends.setdefault(job_id, []).append(prerequisite)
        return [records.job_from_row(row, tuple(depends.get(row["id"], ()))) for row in rows]

    def _condition(self, where: JobFilter) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if where.statuses:
            parts.append(jobs.c.status.in_([status.value for status in where.statuses]))
        if where.workflow is not None:
            parts.append(jobs.c.workflow == where.workflow)
        if where.tags is not None:
            parts.append(self.dialect.tag_condition(where.tags))
        if where.priority is not None:
            parts.append(jobs.c.priority == where.priority)
        for op, value in where.run_at:
            parts.append(_RUN_AT_OPS[op](jobs.c.run_at, value))
        return and_(*parts) if parts else jobs.c.id.is_not(None)

    async def get_job_events(self, job_id: int) -> list[JobEvent]:
        """The job's events, oldest first."""
        async with self._transaction() as conn:
            result = await conn.execute(
                select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
            )
            return [
                JobEvent(
                    id=row.id,
                    job_id=row.job_id,
                    event_type=EventType(row.event_type),
                    at=row.at,
                    metadata=codec.decode(row.metadata) if row.metadata else {},
                )
                for row in result
            ]

    # -- changing -------------------------------------------------------------------

    async def cancel_job(self, job_id: int) -> bool:
        """Cancel a pending or waiting job and its dependants."""
        async with self._transaction() as conn:
            row = await self._lock_job(conn, job_id)
            if row is None or row.status not in _CANCELLABLE:
                return False
            await self._cancel(conn, [job_id], {"reason": "cancel_job"})
            return True

    async def cancel_jobs(self, where: JobFilter) -> int:
        """Cancel every pending or waiting job matching ``where``."""
        async with self._transaction() as conn:
            condition = and_(self._condition(where), jobs.c.status.in_(_CANCELLABLE))
            ids = list(
                (await conn.execute(select(jobs.c.id).where(condition).with_for_update())).scalars()
            )
            await self._cancel(conn, ids, {"reason": "cancel_all_upcoming_jobs"})
            return len(ids)

    async def _cancel(
        self, conn: AsyncConnection, ids: list[int], metadata: dict[str, Any]
    ) -> None:
        if not ids:
            return
        now = self.clock.now()
        await conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(ids))
            .values(
                status=JobStatus.CANCELLED.value,
                ready_at=None,
                wait_until=None,
                wait_token_id=None,
                pending_reason=None,
                last_cancelled_at=now,
                finished_at=now,
                updated_at=now,
            )
        )
        await self._add_events(conn, [(i, EventType.CANCELLED, metadata) for i in ids], now)
        await self._cancel_dependants(conn, ids, "dependency_cancelled")

    async def _cancel_dependants(
        self, conn: AsyncConnection, prerequisites: list[int], reason: str
    ) -> None:
        """Cancel, transitively, pending and waiting jobs that depend on ``prerequisites``.

        ``reason`` (``dependency_cancelled`` or ``dependency_failed``) and the
        prerequisite go into the ``cancelled`` events of direct dependants; jobs further
        down the chain get ``dependency_cancelled``.
        """
        while prerequisites:
            result = await conn.execute(
                select(job_dependencies.c.job_id, func.min(job_dependencies.c.depends_on_id))
                .join(jobs, jobs.c.id == job_dependencies.c.job_id)
                .where(
                    job_dependencies.c.depends_on_id.in_(prerequisites),
                    jobs.c.status.in_(_CANCELLABLE),
                )
                .group_by(job_dependencies.c.job_id)
            )
            causes = dict(result.all())
            if not causes:
                return
            now = self.clock.now()
            await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(causes)))
                .values(
                    status=JobStatus.CANCELLED.value,
                    ready_at=None,
                    wait_until=None,
                    wait_token_id=None,
                    pending_reason=None,
                    last_cancelled_at=now,
                    finished_at=now,
                    updated_at=now,
                )
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

    async def retry_job(self, job_id: int) -> bool:
        """Make a failed job runnable now, granting at least one more attempt."""
        async with self._transaction() as conn:
            row = await self._lock_job(conn, job_id)
            if row is None or row.status != JobStatus.FAILED.value:
                return False
            now = self.clock.now()
            max_attempts = max(row.max_attempts, row.attempts + 1)
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    status=JobStatus.PENDING.value,
                    ready_at=now,
                    next_attempt_at=None,
                    max_attempts=max_attempts,
                    last_retried_at=now,
                    finished_at=None,
                    updated_at=now,
                )
            )
            await self._add_events(
                conn, [(job_id, EventType.RETRIED, {"max_attempts": max_attempts})], now
            )
            return True

    async def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> bool:
        """Apply ``changes`` to a pending job; False if not pending or nothing changed."""
        async with self._transaction() as conn:
            row = await self._lock_job(conn, job_id)
            if row is None or row.status != JobStatus.PENDING.value:
                return False
            values = _column_values(changes)
            current = row._mapping
            changed = {
                column: value
                for column, value in values.items()
                if _stored(current[column]) != _stored(value)
            }
            if not changed:
                return False
            now = self.clock.now()
            if "run_at" in changed:
                changed["ready_at"] = changed["run_at"]
            await conn.execute(
                update(jobs).where(jobs.c.id == job_id).values(**changed, updated_at=now)
            )
            fields = sorted(
                _FIELD_OF_COLUMN.get(column, column) for column in changed if column != "ready_at"
            )
            await self._add_events(conn, [(job_id, EventType.EDITED, {"fields": fields})], now)
            return True

    async def edit_jobs(self, where: JobFilter, changes: Mapping[str, Any]) -> int:
        """Apply ``changes`` to every pending job matching ``where``."""
        values = _column_values(changes)
        if not values:
            return 0
        if "run_at" in values:
            values["ready_at"] = values["run_at"]
        async with self._transaction() as conn:
            now = self.clock.now()
            condition = and_(self._condition(where), jobs.c.status == JobStatus.PENDING.value)
            ids = list(
                (await conn.execute(select(jobs.c.id).where(condition).with_for_update())).scalars()
            )
            if not ids:
                return 0
            await conn.execute(
                update(jobs).where(jobs.c.id.in_(ids)).values(**values, updated_at=now)
            )
            fields = sorted(_FIELD_OF_COLUMN.get(c, c) for c in values if c != "ready_at")
            await self._add_events(
                conn, [(i, EventType.EDITED, {"fields": fields}) for i in ids], now
            )
            return len(ids)

    # -- running --------------------------------------------------------------------

    async def claim_jobs(
        self, worker_id: str, limit: int, workflows: Collection[str] | None = None
    ) -> list[ClaimedJob]:
        """Lock up to ``limit`` runnable jobs, highest priority first, then oldest."""
        async with self._transaction() as conn:
            now = self.clock.now()
            unfinished_prerequisite = exists(
                select(job_dependencies.c.job_id)
                .join(_prerequisite, _prerequisite.c.id == job_dependencies.c.depends_on_id)
                .where(
                    job_dependencies.c.job_id == jobs.c.id,
                    _prerequisite.c.status != JobStatus.COMPLETED.value,
                )
            )
            candidates = select(jobs.c.id, jobs.c.status).where(
                jobs.c.ready_at <= now, ~unfinished_prerequisite
            )
            if workflows is not None:
                candidates = candidates.where(jobs.c.workflow.in_(sorted(workflows)))
            chosen = dict(
                (
                    await conn.execute(
                        candidates.order_by(jobs.c.priority.desc(), jobs.c.id)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            if not chosen:
                return []
            resumed = jobs.c.status == JobStatus.WAITING.value
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(chosen)))
                .values(
                    status=JobStatus.PROCESSING.value,
                    attempts=jobs.c.attempts + case((resumed, 0), else_=1),
                    started_at=case((resumed, jobs.c.started_at), else_=now),
                    lease_id=jobs.c.lease_id + 1,
                    locked_by=worker_id,
                    locked_at=now,
                    ready_at=None,
                    next_attempt_at=None,
                    wait_until=None,
                    wait_token_id=None,
                    pending_reason=None,
                    updated_at=now,
                )
                .returning(*jobs.c)
            )
            rows = sorted(result.mappings().all(), key=lambda r: (-r["priority"], r["id"]))
            claimed = []
            for row in rows:
                was_waiting = chosen[row["id"]] == JobStatus.WAITING.value
                job = records.job_from_row(row, ())
                claimed.append(
                    ClaimedJob(job, Lease(job.id, row["lease_id"], worker_id), was_waiting)
                )
            await self._add_events(
                conn,
                [
                    (
                        c.job.id,
                        EventType.PROCESSING,
                        {"worker_id": worker_id, "attempt": c.job.attempts, "resumed": c.resumed},
                    )
                    for c in claimed
                ],
                now,
            )
            return claimed

    def _leased(self, lease: Lease) -> ColumnElement[bool]:
        return and_(
            jobs.c.id == lease.job_id,
            jobs.c.lease_id == lease.lease_id,
            jobs.c.status == JobStatus.PROCESSING.value,
        )

    async def complete_job(self, lease: Lease, output: str | None) -> bool:
        """Mark the job completed; False when the lease is stale."""
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(self._leased(lease))
                .values(
                    status=JobStatus.COMPLETED.value,
                    output=output,
                    completed_at=now,
                    finished_at=now,
                    locked_by=None,
                    locked_at=None,
                    updated_at=now,
                )
                .returning(jobs.c.id)
            )
            if result.first() is None:
                return False
            await self._add_events(conn, [(lease.job_id, EventType.COMPLETED, None)], now)
            return True

    async def fail_job(
        self, lease: Lease, error: ErrorEntry, *, reason: FailureReason, retry_at: datetime | None
    ) -> bool:
        """Record a failed attempt: retry later, or fail permanently (cascade, dead letter)."""
        async with self._transaction() as conn:
            row = (
                await conn.execute(select(jobs).where(self._leased(lease)).with_for_update())
            ).first()
            if row is None:
                return False
            now = self.clock.now()
            will_retry = retry_at is not None and row.attempts < row.max_attempts
            history = (*records.decode_errors(row.error_history), error)
            values: dict[str, Any] = {
                "status": JobStatus.FAILED.value,
                "failure_reason": reason.value,
                "error_history": records.encode_errors(history),
                "last_failed_at": now,
                "next_attempt_at": retry_at if will_retry else None,
                "ready_at": retry_at if will_retry else None,
                "finished_at": None if will_retry else now,
                "locked_by": None,
                "locked_at": None,
                "updated_at": now,
            }
            dead_letter_id = None
            if not will_retry and row.dead_letter is not None:
                dead_letter_id = await self._add_dead_letter(conn, row._mapping, error, reason, now)
                values["dead_letter_job_id"] = dead_letter_id
            await conn.execute(update(jobs).where(jobs.c.id == lease.job_id).values(**values))
            await self._add_events(
                conn,
                [
                    (
                        lease.job_id,
                        EventType.FAILED,
                        {
                            "message": error.message,
                            "type": error.type,
                            "attempt": row.attempts,
                            "reason": reason.value,
                            "will_retry": will_retry,
                            "retry_at": retry_at.isoformat() if will_retry and retry_at else None,
                            "dead_letter_job_id": dead_letter_id,
                        },
                    )
                ],
                now,
            )
            if not will_retry:
                await self._cancel_dependants(conn, [lease.job_id], "dependency_failed")
            return True

    async def _add_dead_letter(
        self,
        conn: AsyncConnection,
        row: Mapping[str, Any],
        error: ErrorEntry,
        reason: FailureReason,
        now: datetime,
    ) -> int:
        from flowq.options import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY

        [job_id] = await self.dialect.allocate_ids(conn, 1)
        job = NewJob(
            workflow=row["dead_letter"],
            payload=records.dead_letter_payload(row, error, reason),
            priority=row["priority"],
            max_attempts=DEFAULT_MAX_ATTEMPTS,
            run_at=now,
            retry=DEFAULT_RETRY,
            timeout=None,
            force_kill_on_timeout=False,
            tags=(),
            idempotency_key=None,
            group=None,
            depends_on=(),
            depends_on_tags=(),
            dead_letter=None,
        )
        await conn.execute(insert(jobs), [records.new_job_row(job, job_id, now)])
        await self._add_events(
            conn, [(job_id, EventType.ADDED, {"dead_letter_for": row["id"]})], now
        )
        return job_id

    async def suspend_job(
        self, lease: Lease, *, wait_until: datetime | None, token_id: str | None
    ) -> bool:
        """Park the job as waiting until ``wait_until`` or the token's completion."""
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(self._leased(lease))
                .values(
                    status=JobStatus.WAITING.value,
                    wait_until=wait_until,
                    wait_token_id=token_id,
                    ready_at=wait_until,
                    locked_by=None,
                    locked_at=None,
                    updated_at=now,
                )
                .returning(jobs.c.id)
            )
            if result.first() is None:
                return False
            meta = {"until": wait_until.isoformat() if wait_until else None, "token_id": token_id}
            await self._add_events(conn, [(lease.job_id, EventType.WAITING, meta)], now)
            return True

    # -- maintenance ----------------------------------------------------------------

    async def reclaim_stuck_jobs(self, older_than: timedelta) -> int:
        """Return processing jobs locked longer than max(older_than, timeout) to pending."""
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                select(jobs.c.id, jobs.c.locked_at, jobs.c.locked_by, jobs.c.timeout_ms)
                .where(
                    jobs.c.status == JobStatus.PROCESSING.value,
                    jobs.c.locked_at <= now - older_than,
                )
                .with_for_update(skip_locked=True)
            )
            stuck = [
                (row.id, row.locked_by)
                for row in result
                if row.locked_at
                <= now - max(older_than, records.from_ms(row.timeout_ms) or timedelta(0))
            ]
            if not stuck:
                return 0
            await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_([job_id for job_id, _ in stuck]))
                .values(
                    status=JobStatus.PENDING.value,
                    ready_at=now,
                    locked_by=None,
                    locked_at=None,
                    updated_at=now,
                )
            )
            await self._add_events(
                conn,
                [(job_id, EventType.RECLAIMED, {"worker_id": worker}) for job_id, worker in stuck],
                now,
            )
            return len(stuck)

    async def cleanup_old_jobs(self, older_than: timedelta) -> int:
        """Delete finished jobs (with their events, steps, edges and tokens) in batches."""
        total = 0
        while True:
            async with self._transaction() as conn:
                cutoff = self.clock.now() - older_than
                ids = list(
                    (
                        await conn.execute(
                            select(jobs.c.id)
                            .where(jobs.c.finished_at.is_not(None), jobs.c.finished_at <= cutoff)
                            .order_by(jobs.c.finished_at)
                            .limit(CLEANUP_BATCH_SIZE)
                            .with_for_update(skip_locked=True)
                        )
                    ).scalars()
                )
                if ids:
                    for table in (job_events, steps, job_dependencies, tokens):
                        await conn.execute(delete(table).where(table.c.job_id.in_(ids)))
                    await conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < CLEANUP_BATCH_SIZE:
                return total

    async def cleanup_old_job_events(self, older_than: timedelta) -> int:
        """Delete events written at or before now - ``older_than``, in batches."""
        total = 0
        while True:
            async with self._transaction() as conn:
                cutoff = self.clock.now() - older_than
                batch = (
                    select(job_events.c.id)
                    .where(job_events.c.at <= cutoff)
                    .order_by(job_events.c.id)
                    .limit(CLEANUP_BATCH_SIZE)
                    .scalar_subquery()
                )
                result = await conn.execute(delete(job_events).where(job_events.c.id.in_(batch)))
            deleted = int(result.rowcount or 0)
            total += deleted
            if deleted < CLEANUP_BATCH_SIZE:
                return total


class _IdempotencyRace(Exception):
    """A concurrent insert took an idempotency key between our check and our insert."""


_FIELD_OF_COLUMN = {"group_name": "group", "timeout_ms": "timeout"}
_COLUMN_OF_FIELD = {field: column for column, field in _FIELD_OF_COLUMN.items()}


def _column_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "timeout":
            value = records.to_ms(value)
        elif name == "retry":
            value = records.encode_retry(value)
        elif name == "tags":
            value = tuple(value)
        values[_COLUMN_OF_FIELD.get(name, name)] = value
    return values


def _stored(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value
