"""The SQL store: every verb of :class:`flowq.store.base.Store` on PostgreSQL or SQLite."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from flowq.models import ErrorEntry, EventType, FailureReason, JobStatus, TokenStatus
from flowq.store import pg_hot, records, sqlite_hot
from flowq.store.base import (
    CLEANUP_BATCH_SIZE,
    ClaimedJob,
    Completion,
    GroupLimits,
    Lease,
    Release,
)
from flowq.store.schema import job_dependencies, job_events, jobs, steps, tokens
from flowq.store.sqldurable import SqlDurableVerbs
from flowq.store.sqljobs import SqlJobVerbs

__all__ = ["SqlStore"]

_prerequisite = jobs.alias("prerequisite")
_UNFINISHED_PREREQUISITE = exists(
    select(job_dependencies.c.job_id)
    .join(_prerequisite, _prerequisite.c.id == job_dependencies.c.depends_on_id)
    .where(
        job_dependencies.c.job_id == jobs.c.id,
        _prerequisite.c.status != JobStatus.COMPLETED.value,
    )
)
_NO_LIMIT = 2**31 - 1
_parent = jobs.alias("parent")
_NEEDED_BY_PARENT = exists(
    select(_parent.c.id)
    .where(
        _parent.c.id == jobs.c.parent_job_id,
        jobs.c.parent_outcome_seq.is_not(None),
        _parent.c.finished_at.is_(None),
        ~exists(
            select(steps.c.seq)
            .where(steps.c.job_id == _parent.c.id, steps.c.seq == jobs.c.parent_outcome_seq)
            .correlate_except(steps)
        ),
    )
    .correlate_except(_parent)
)
"""A child whose parent is unfinished and has not recorded the child's outcome yet
(``ctx.call``): cleanup keeps it. Two primary-key look-ups per child row."""


def _held(leases: Sequence[Lease]) -> ColumnElement[bool]:
    """Rows still held by these leases (same lease id, still processing)."""
    return and_(
        tuple_(jobs.c.id, jobs.c.lease_id).in_([(x.job_id, x.lease_id) for x in leases]),
        jobs.c.status == JobStatus.PROCESSING.value,
    )


class SqlStore(SqlJobVerbs, SqlDurableVerbs):
    """flowq's tables in PostgreSQL (asyncpg) or SQLite (aiosqlite).

    Args:
        url: A database URL; ``postgresql://`` and ``sqlite:///`` pick flowq's drivers.
        clock: Where "now" comes from (the system clock by default).
    """

    # -- running --------------------------------------------------------------------

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        workflows: Collection[str] | None = None,
        groups: GroupLimits | None = None,
    ) -> list[ClaimedJob]:
        """Lock up to ``limit`` runnable jobs, highest priority first, then oldest."""
        if groups is None and workflows is not None:
            if self.dialect.name == "postgresql":
                return await self._claim_jobs_pg(worker_id, limit, workflows)
            async with self._driver("claim") as db:
                return await sqlite_hot.claim_jobs(
                    db, self._writers(), worker_id, limit, sorted(workflows), self.clock.now()
                )
        async with self._transaction() as conn:
            now = self.clock.now()
            candidates = select(jobs.c.id, jobs.c.status, jobs.c.group_name).where(
                jobs.c.ready_at <= now, ~_UNFINISHED_PREREQUISITE
            )
            if workflows is not None:
                candidates = candidates.where(jobs.c.workflow.in_(sorted(workflows)))
            ordered = candidates.order_by(jobs.c.priority.desc(), jobs.c.id)
            if groups is None:
                query = ordered.limit(limit).with_for_update(skip_locked=True)
                rows: Sequence[Any] = (await conn.execute(query)).all()
            else:
                rows = await self._claim_within_groups(conn, ordered, limit, groups)
            if not rows:
                return []
            previous = {row.id: row.status for row in rows}
            resumed = jobs.c.status == JobStatus.WAITING.value
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(previous)))
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
            claimed_rows = sorted(result.mappings(), key=lambda r: (-r["priority"], r["id"]))
            with_history = set(
                (
                    await conn.execute(
                        select(steps.c.job_id).where(steps.c.job_id.in_(list(previous))).distinct()
                    )
                ).scalars()
            )
            claimed = [
                ClaimedJob(
                    records.job_from_row(row, ()),
                    Lease(row["id"], row["lease_id"], worker_id),
                    previous[row["id"]] == JobStatus.WAITING.value,
                    row["payload"],
                    row["id"] in with_history,
                )
                for row in claimed_rows
            ]
            await self._add_events(
                conn,
                [(c.job.id, EventType.PROCESSING, records.processing_metadata(c)) for c in claimed],
                now,
            )
            return claimed

    async def _claim_within_groups(
        self, conn: AsyncConnection, ordered: Select[Any], limit: int, groups: GroupLimits
    ) -> list[Any]:
        """Candidates in claim order, skipping those whose group is full, up to ``limit``.

        One lock serializes group-limited claims of all workers, so the running counts
        read here include every claim committed before ours. Rows are read in rounds
        (locking them) until ``limit`` fit or the candidates run out.
        """
        await self.dialect.lock_group_claims(conn)
        taken: dict[str, int] = dict(
            (
                await conn.execute(
                    select(jobs.c.group_name, func.count())
                    .where(
                        jobs.c.status == JobStatus.PROCESSING.value,
                        jobs.c.group_name.is_not(None),
                    )
                    .group_by(jobs.c.group_name)
                )
            ).all()
        )
        kept: list[Any] = []
        seen: list[int] = []
        while len(kept) < limit:
            query = ordered
            full = records.full_groups(taken, groups)
            if full:
                query = query.where(
                    or_(jobs.c.group_name.is_(None), jobs.c.group_name.not_in(full))
                )
            if seen:
                query = query.where(jobs.c.id.not_in(seen))
            wanted = limit - len(kept)
            batch = (
                await conn.execute(query.limit(wanted).with_for_update(skip_locked=True))
            ).all()
            seen += [row.id for row in batch]
            kept += records.fit_groups(batch, taken, groups)
            if len(batch) < wanted:
                break
        return kept

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[bool]:
        """Mark jobs completed in one transaction; False for each stale lease."""
        if not completions:
            return []
        if self.dialect.name == "postgresql":
            return await self._complete_jobs_pg(completions)
        async with self._driver("complete") as db:
            recorded, unblocked = await sqlite_hot.complete_jobs(
                db, self._writers(), completions, self.clock.now()
            )
        if unblocked:
            self._wake("jobs")
        return recorded

    async def _claim_jobs_pg(
        self, worker_id: str, limit: int, workflows: Collection[str]
    ) -> list[ClaimedJob]:
        """The claim in one statement (no group limits)."""
        async with self._driver("claim") as driver:
            rows = await driver.fetch(
                pg_hot.CLAIM_JOBS, self.clock.now(), sorted(workflows), limit, worker_id
            )
        return pg_hot.claimed_from_rows(rows, worker_id)

    async def _complete_jobs_pg(self, completions: Sequence[Completion]) -> list[bool]:
        """Completions, their events and the dependants' wake-up in one statement."""
        async with self._driver("complete") as driver:
            rows = await driver.fetch(
                pg_hot.COMPLETE_JOBS, *pg_hot.complete_arguments(completions, self.clock.now())
            )
        done = {row["id"] for row in rows}
        if any(row["has_dependants"] for row in rows):
            self._wake("jobs")
        return [c.lease.job_id in done for c in completions]

    async def heartbeat(self, leases: Sequence[Lease]) -> list[Lease]:
        """Refresh the locks of running jobs; return the leases no longer held."""
        if not leases:
            return []
        async with self._transaction() as conn:
            now = self.clock.now()
            # Lock the rows in id order first, as the completion and recorded-call
            # batches do, so that a worker's concurrent statements never deadlock.
            await conn.execute(
                select(jobs.c.id).where(_held(leases)).order_by(jobs.c.id).with_for_update()
            )
            result = await conn.execute(
                update(jobs).where(_held(leases)).values(locked_at=now).returning(jobs.c.id)
            )
            held = set(result.scalars())
        return [lease for lease in leases if lease.job_id not in held]

    async def release_jobs(self, releases: Sequence[Release]) -> int:
        """Hand running jobs back as pending at once, not counting their attempt."""
        if not releases:
            return 0
        refund = {r.lease.job_id: 1 if r.new_attempt else 0 for r in releases}
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(_held([r.lease for r in releases]))
                .values(
                    status=JobStatus.PENDING.value,
                    attempts=jobs.c.attempts - case(refund, value=jobs.c.id, else_=0),
                    lease_id=jobs.c.lease_id + 1,
                    ready_at=now,
                    updated_at=now,
                    **records.UNLOCKED,
                )
                .returning(jobs.c.id, jobs.c.attempts)
            )
            released = sorted(result.all())
            worker = releases[0].lease.worker_id
            await self._add_events(
                conn,
                [
                    (job_id, EventType.RECLAIMED, records.released_metadata(worker, attempts))
                    for job_id, attempts in released
                ],
                now,
            )
            if released:
                await self.dialect.notify(conn, "jobs")
        if released:
            self._wake("jobs")
        return len(released)

    async def next_ready_at(
        self, workflows: Collection[str] | None = None, *, after: datetime | None = None
    ) -> datetime | None:
        """The earliest due time later than ``after`` (default: now)."""
        after = self.clock.now() if after is None else after
        async with self._transaction() as conn:
            query = select(func.min(jobs.c.ready_at)).where(jobs.c.ready_at > after)
            if workflows is not None:
                query = query.where(jobs.c.workflow.in_(sorted(workflows)))
            found: datetime | None = (await conn.execute(query)).scalar()
            return found

    async def mark_unclaimed(self, workflows: Collection[str], reason: str) -> int:
        """Explain, on due pending jobs no worker here handles, why they wait."""
        async with self._transaction() as conn:
            ids = (
                select(jobs.c.id)
                .where(
                    jobs.c.ready_at <= self.clock.now(),
                    jobs.c.status == JobStatus.PENDING.value,
                    jobs.c.pending_reason.is_(None),
                    jobs.c.workflow.not_in(sorted(workflows)),
                )
                .limit(records.UNCLAIMED_BATCH_SIZE)
                .scalar_subquery()
            )
            result = await conn.execute(
                update(jobs).where(jobs.c.id.in_(ids)).values(pending_reason=reason)
            )
            return int(result.rowcount or 0)

    async def record_progress(self, lease: Lease, percent: int) -> bool:
        """Store a running job's progress with a ``progress`` event."""
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(_held([lease]))
                .values(progress=percent, updated_at=now)
                .returning(jobs.c.id)
            )
            if result.first() is None:
                return False
            meta = {"progress": percent}
            await self._add_events(conn, [(lease.job_id, EventType.PROGRESS, meta)], now)
            return True

    async def record_output(self, lease: Lease, output: str) -> bool:
        """Store a running job's output before it ends."""
        async with self._transaction() as conn:
            result = await conn.execute(
                update(jobs)
                .where(_held([lease]))
                .values(output=output, updated_at=self.clock.now())
                .returning(jobs.c.id)
            )
            return result.first() is not None

    def _leased(self, lease: Lease) -> ColumnElement[bool]:
        return _held([lease])

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
        """Park the job as waiting until ``wait_until`` or the token's completion.

        If the token (or child job) it parks on is resolved already, nobody else will
        wake it: it is runnable at once. That look locks the token (or child) row
        before the job's, in the order their wakers take them (``complete_token`` and
        ``expire_timed_out_tokens``: the token, then the jobs waiting on it; a child
        finishing: its row, then its parent's in the ``flowq_jobs_wake_parent``
        trigger). So a concurrent waker either committed before the look, which sees
        it, or waits for this commit and then finds the job waiting. Without the lock,
        under READ COMMITTED, the waker's UPDATE could skip the job (still processing
        in its snapshot) while the look missed the waker's uncommitted write.
        """
        async with self._transaction() as conn:
            now = self.clock.now()
            over = token_id is not None and await self._lock_wait_is_over(conn, token_id)
            result = await conn.execute(
                update(jobs)
                .where(self._leased(lease))
                .values(
                    status=JobStatus.WAITING.value,
                    wait_until=wait_until,
                    wait_token_id=token_id,
                    ready_at=now if over else wait_until,
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
            if over:
                await self.dialect.notify(conn, "jobs")
        if over:
            self._wake("jobs")
        return True

    async def _lock_wait_is_over(self, conn: AsyncConnection, wait_id: str) -> bool:
        """Whether the token (or child job) a job waits for is already resolved; its
        row stays locked FOR SHARE (PostgreSQL) until the transaction ends, so it
        cannot be resolved meanwhile."""
        if wait_id.startswith("child:"):
            query = select(jobs.c.finished_at.is_not(None)).where(
                jobs.c.id == int(wait_id.partition(":")[2])
            )
        else:
            query = select(tokens.c.status != TokenStatus.WAITING.value).where(
                tokens.c.id == wait_id
            )
        return bool((await conn.execute(query.with_for_update(read=True))).scalar())

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
            if requeue:
                await self.dialect.notify(conn, "jobs")
            for row in stuck:
                if row["attempts"] >= row["max_attempts"]:
                    await self._fail_row(
                        conn, row, records.lost_worker_error(row, now), FailureReason.TIMEOUT, None
                    )
            count = len(stuck)
        if requeue:
            self._wake("jobs")
        return count

    async def cleanup_old_jobs(self, older_than: timedelta) -> int:
        """Delete finished jobs (with their events, steps, edges and tokens) in batches.

        A finished child whose unfinished parent has not recorded its outcome is kept.
        Each batch starts at the finish time the previous one reached, so kept rows
        are passed over once per run, not once per batch.
        """
        total = 0
        since: datetime | None = None
        while True:
            async with self._transaction() as conn:
                cutoff = self.clock.now() - older_than
                query = (
                    select(jobs.c.id, jobs.c.finished_at)
                    .where(
                        jobs.c.finished_at.is_not(None),
                        jobs.c.finished_at <= cutoff,
                        ~_NEEDED_BY_PARENT,
                    )
                    .order_by(jobs.c.finished_at)
                    .limit(CLEANUP_BATCH_SIZE)
                    .with_for_update(skip_locked=True)
                )
                if since is not None:
                    query = query.where(jobs.c.finished_at >= since)
                rows = (await conn.execute(query)).all()
                ids = [row.id for row in rows]
                if ids:
                    for table in (job_events, steps, job_dependencies, tokens):
                        await conn.execute(delete(table).where(table.c.job_id.in_(ids)))
                    await conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < CLEANUP_BATCH_SIZE:
                return total
            since = rows[-1].finished_at

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
