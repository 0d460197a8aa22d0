"""The SQL store: every verb of :class:`flowq.store.base.Store` on PostgreSQL or SQLite."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flowq.models import ErrorEntry, EventType, FailureReason, JobStatus
from flowq.store import records
from flowq.store.base import CLEANUP_BATCH_SIZE, ClaimedJob, Lease
from flowq.store.schema import job_dependencies, job_events, jobs, steps, tokens
from flowq.store.sqljobs import SqlJobVerbs

__all__ = ["SqlStore"]

_prerequisite = jobs.alias("prerequisite")


class SqlStore(SqlJobVerbs):
    """flowq's tables in PostgreSQL (asyncpg) or SQLite (aiosqlite).

    Args:
        url: A database URL; ``postgresql://`` and ``sqlite:///`` pick flowq's drivers.
        clock: Where "now" comes from (the system clock by default).
    """

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
                    failure_reason=None,
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
            await self._fail_row(conn, row._mapping, error, reason, retry_at)
            return True

    async def _fail_row(
        self,
        conn: AsyncConnection,
        row: Mapping[Any, Any],
        error: ErrorEntry,
        reason: FailureReason,
        retry_at: datetime | None,
    ) -> None:
        """Write a failed attempt of a locked job row, with everything that follows."""
        now = self.clock.now()
        values, will_retry = records.failure_values(row, error, reason, retry_at, now)
        dead_letter_id = None
        if not will_retry and row["dead_letter"] is not None:
            [dead_letter_id] = await self.dialect.allocate_ids(conn, 1)
            letter = records.dead_letter_job(row, error, reason, now)
            await conn.execute(insert(jobs), [records.new_job_row(letter, dead_letter_id, now)])
            meta = {"dead_letter_for": row["id"]}
            await self._add_events(conn, [(dead_letter_id, EventType.ADDED, meta)], now)
            values["dead_letter_job_id"] = dead_letter_id
        await conn.execute(update(jobs).where(jobs.c.id == row["id"]).values(**values))
        meta = records.failed_metadata(row, error, reason, values, dead_letter_id)
        await self._add_events(conn, [(row["id"], EventType.FAILED, meta)], now)
        if not will_retry:
            await self._cancel_dependants(conn, [row["id"]], "dependency_failed")

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
        """Take back processing jobs locked longer than max(older_than, their timeout).

        A job with attempts left returns to pending (its next claim is a new attempt);
        one whose lost attempt was its last fails permanently (reason ``timeout``).
        Each gets a ``reclaimed`` event. Returns how many jobs were taken back.
        """
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                select(jobs)
                .where(
                    jobs.c.status == JobStatus.PROCESSING.value,
                    jobs.c.locked_at <= now - older_than,
                )
                .order_by(jobs.c.id)
                .with_for_update(skip_locked=True)
            )
            stuck = [row for row in result.mappings() if records.is_stuck(row, older_than, now)]
            if not stuck:
                return 0
            requeue = [row["id"] for row in stuck if row["attempts"] < row["max_attempts"]]
            if requeue:
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(requeue))
                    .values(
                        status=JobStatus.PENDING.value,
                        ready_at=now,
                        updated_at=now,
                        **records.UNLOCKED,
                    )
                )
            await self._add_events(
                conn,
                [
                    (row["id"], EventType.RECLAIMED, records.reclaimed_metadata(row))
                    for row in stuck
                ],
                now,
            )
            for row in stuck:
                if row["attempts"] >= row["max_attempts"]:
                    await self._fail_row(
                        conn, row, records.lost_worker_error(row, now), FailureReason.TIMEOUT, None
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
