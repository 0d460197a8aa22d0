"""SQL verbs of the client API: adding, reading and changing jobs."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flowq.errors import DatabaseError
from flowq.models import EventType, Job, JobEvent, JobStatus, TagQuery
from flowq.store import batch, rows, transitions
from flowq.store.base import JobFilter, NewJob
from flowq.store.sql import render
from flowq.store.sql.base import UPCOMING, SqlBase
from flowq.store.sql.schema import job_dependencies, job_events, jobs

__all__ = ["SqlJobVerbs"]

_RACE_RETRIES = 5


class SqlJobVerbs(SqlBase):
    """Adding, reading, cancelling, retrying and editing jobs."""

    # -- adding ---------------------------------------------------------------------

    async def add_jobs(self, new_jobs: Sequence[NewJob], *, connection: Any = None) -> list[int]:
        """Insert jobs with their ``added`` events; ids in input order."""
        if not new_jobs:
            return []
        if self.fast_paths and connection is None and _plain(new_jobs):
            async with self._driver("add") as driver:
                ids = await self.dialect.add_plain_jobs(driver, new_jobs, self.clock.now())
            if ids is not None:
                self._wake("jobs")
                return ids
        for _ in range(_RACE_RETRIES):
            try:
                ids = await self._add_jobs_once(new_jobs, connection)
                self._wake("jobs")
                return ids
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
            # A batch reference to a duplicate names an existing job: its status counts.
            statuses = await self._lock_statuses(conn, explicit | set(existing.values()))
            tag_matches = {
                tags: await self._live_ids_with_tags(conn, tags)
                for tags in {job.depends_on_tags for job in new_jobs if job.depends_on_tags}
            }
            fresh_count = batch.count_new_jobs(new_jobs, existing)
            fresh_ids = await self.dialect.allocate_ids(conn, fresh_count) if fresh_count else []
            plan = batch.plan_batch(new_jobs, existing, statuses, tag_matches, fresh_ids)
            if plan.rows:
                prerequisites = {target for _, target in plan.edges}
                inserted = await self._insert_rows(
                    conn,
                    [
                        transitions.block(
                            rows.new_job_row(job, job_id, now)
                            | {"has_dependants": job_id in prerequisites},
                            plan.blocked.get(job_id, 0),
                        )
                        for job_id, job in plan.rows
                    ],
                )
                if inserted != {job_id for job_id, _ in plan.rows}:
                    # Another transaction took an idempotency key meanwhile: retry cleanly.
                    raise _IdempotencyRace()
                if plan.edges:
                    await conn.execute(
                        insert(job_dependencies),
                        [{"job_id": a, "depends_on_id": b} for a, b in plan.edges],
                    )
                    # Completing them now counts them down on their dependants (the
                    # flowq_jobs_unblock_dependants trigger); the rows are locked.
                    await conn.execute(
                        update(jobs)
                        .where(
                            self.dialect.one_of(jobs.c.id, sorted(prerequisites - inserted)),
                            jobs.c.has_dependants.is_(False),
                        )
                        .values(has_dependants=True)
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
            select(jobs.c.idempotency_key, jobs.c.id).where(
                self.dialect.one_of(jobs.c.idempotency_key, keys)
            )
        )
        return dict(result.all())

    async def _lock_statuses(
        self, conn: AsyncConnection, ids: Collection[int]
    ) -> dict[int, tuple[str, bool]]:
        """Status and "will retry" of prerequisites, locked against concurrent change
        (FOR NO KEY UPDATE: the add may set their ``has_dependants``)."""
        if not ids:
            return {}
        result = await conn.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.ready_at.is_not(None))
            .where(self.dialect.one_of(jobs.c.id, sorted(ids)))
            .with_for_update(key_share=True)
        )
        return {job_id: (status, bool(ready)) for job_id, status, ready in result}

    async def _live_ids_with_tags(self, conn: AsyncConnection, tags: tuple[str, ...]) -> list[int]:
        result = await conn.execute(
            select(jobs.c.id)
            .where(jobs.c.finished_at.is_(None), self.dialect.tag_condition(TagQuery(tags, "all")))
            .order_by(jobs.c.id)
            .with_for_update(key_share=True)
        )
        return list(result.scalars())

    async def _insert_rows(self, conn: AsyncConnection, values: list[dict[str, Any]]) -> set[int]:
        statement = (
            self.dialect.insert_into(jobs)
            .on_conflict_do_nothing(
                index_elements=[jobs.c.idempotency_key],
                index_where=jobs.c.idempotency_key.is_not(None),
            )
            .returning(jobs.c.id)
        )
        result = await conn.execute(statement, values)
        return set(result.scalars())

    # -- reading --------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        """The job, or ``None``."""
        found = await self._select_jobs(jobs.c.id == job_id, limit=1)
        return found[0] if found else None

    async def get_job_by_key(self, idempotency_key: str) -> Job | None:
        """The job with this idempotency key (its unique index), or ``None``."""
        found = await self._select_jobs(jobs.c.idempotency_key == idempotency_key, limit=1)
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
            found = (await conn.execute(query)).mappings().all()
            if not found:
                return []
            edges = await conn.execute(
                select(job_dependencies.c.job_id, job_dependencies.c.depends_on_id)
                .where(self.dialect.one_of(job_dependencies.c.job_id, [r["id"] for r in found]))
                .order_by(job_dependencies.c.job_id, job_dependencies.c.depends_on_id)
            )
        depends: dict[int, list[int]] = {}
        for job_id, prerequisite in edges:
            depends.setdefault(job_id, []).append(prerequisite)
        return [rows.job_from_row(row, tuple(depends.get(row["id"], ()))) for row in found]

    async def get_job_events(self, job_id: int) -> list[JobEvent]:
        """The job's events, oldest first."""
        async with self._transaction() as conn:
            result = await conn.execute(
                select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
            )
            return [rows.event_from_row(row) for row in result.mappings()]

    # -- changing -------------------------------------------------------------------

    async def cancel_job(self, job_id: int) -> bool:
        """Cancel an upcoming or running job (and its dependants); False if finished."""
        async with self._transaction() as conn:
            row = await self._lock_job(conn, job_id)
            if row is None:
                return False
            if row.status == JobStatus.PROCESSING.value:
                now = self.clock.now()
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(render.values(transitions.CANCEL_RUNNING, now))
                )
                meta = {"reason": "cancel_job", "worker_id": row.locked_by, "was_running": True}
                await self._add_events(conn, [(job_id, EventType.CANCELLED, meta)], now)
                await self._cancel_dependants(conn, [job_id], "dependency_cancelled")
                await self.dialect.notify(conn, f"cancel:{job_id}")
            elif transitions.is_upcoming(row._mapping):
                await self._cancel(conn, [job_id], {"reason": "cancel_job"})
            else:
                return False
        self._wake(f"cancel:{job_id}")
        return True

    async def cancel_jobs(self, where: JobFilter) -> int:
        """Cancel every upcoming job matching ``where``; return the count."""
        async with self._transaction() as conn:
            ids = await self._lock_ids(conn, and_(self._condition(where), UPCOMING))
            await self._cancel(conn, ids, {"reason": "cancel_all_upcoming_jobs"})
            return len(ids)

    async def _lock_ids(self, conn: AsyncConnection, condition: ColumnElement[bool]) -> list[int]:
        query = select(jobs.c.id).where(condition).order_by(jobs.c.id).with_for_update()
        return list((await conn.execute(query)).scalars())

    async def retry_job(self, job_id: int) -> bool:
        """Make a failed job runnable now, granting at least one more attempt."""
        async with self._transaction() as conn:
            row = await self._lock_job(conn, job_id)
            if row is None or row.status != JobStatus.FAILED.value:
                return False
            now = self.clock.now()
            values = transitions.RETRY.values(row._mapping, now)
            await conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            meta = {"max_attempts": values["max_attempts"]}
            await self._add_events(conn, [(job_id, EventType.RETRIED, meta)], now)
            await self.dialect.notify(conn, "jobs")
        self._wake("jobs")
        return True

    async def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> bool:
        """Apply ``changes`` to a pending job; False if not pending or nothing changed."""
        values = rows.column_values(changes)
        async with self._transaction() as conn:
            row = await self._lock_job(conn, job_id)
            if row is None or row.status != JobStatus.PENDING.value:
                return False
            changed = rows.changed_columns(row._mapping, values)
            if not changed:
                return False
            now = self.clock.now()
            edit = transitions.EDIT.values(row._mapping, now)
            await conn.execute(update(jobs).where(jobs.c.id == job_id).values(**changed, **edit))
            meta = {"fields": rows.edited_fields(changed)}
            await self._add_events(conn, [(job_id, EventType.EDITED, meta)], now)
            if "run_at" in changed:
                await self.dialect.notify(conn, "jobs")
        if "run_at" in changed:
            self._wake("jobs")
        return True

    async def edit_jobs(self, where: JobFilter, changes: Mapping[str, Any]) -> int:
        """Apply ``changes`` to every pending job matching ``where`` where a value
        differs; return how many changed."""
        values = rows.column_values(changes)
        if not values:
            return 0
        async with self._transaction() as conn:
            now = self.clock.now()
            condition = and_(self._condition(where), jobs.c.status == JobStatus.PENDING.value)
            found = await conn.execute(
                select(jobs).where(condition).order_by(jobs.c.id).with_for_update()
            )
            # Rows that change the same columns to the same values share a statement
            # (the values differ only in unresolved_options, per row).
            by_change: dict[tuple[Any, ...], tuple[dict[str, Any], list[int]]] = {}
            events = []
            for row in found.mappings():
                changed = rows.changed_columns(row, values)
                if changed:
                    key = (tuple(sorted(changed)), changed.get("unresolved_options"))
                    by_change.setdefault(key, (changed, []))[1].append(row["id"])
                    events.append(
                        (row["id"], EventType.EDITED, {"fields": rows.edited_fields(changed)})
                    )
            edit = render.values(transitions.EDIT, now)
            for changed, ids in by_change.values():
                await conn.execute(
                    update(jobs)
                    .where(self.dialect.one_of(jobs.c.id, ids))
                    .values(**changed, **edit)
                )
            await self._add_events(conn, events, now)
            return len(events)


def _plain(new_jobs: Sequence[NewJob]) -> bool:
    """Whether no job of the batch has dependencies (the one-statement path applies)."""
    return not any(
        job.depends_on or job.depends_on_tags or job.parent_job_id is not None for job in new_jobs
    )


class _IdempotencyRace(Exception):
    """A concurrent insert took an idempotency key between our check and our insert."""
