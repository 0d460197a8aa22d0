"""SQL verbs of workers and operators: claiming, completing, failing, heartbeats,
hand-backs, and the maintenance verbs (reclaim, cleanup)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from flowq.models import ErrorEntry, EventType, FailureReason, JobStatus, TokenStatus
from flowq.store import batch, rows, transitions
from flowq.store.base import (
    CLEANUP_BATCH_SIZE,
    UNCLAIMED_BATCH_SIZE,
    ClaimedJob,
    Completion,
    GroupLimits,
    Lease,
    Release,
)
from flowq.store.sql import render
from flowq.store.sql.base import SqlBase, held
from flowq.store.sql.schema import job_dependencies, job_events, jobs, steps, tokens

__all__ = ["RECLAIM_CHUNK", "SqlRunVerbs"]

RECLAIM_CHUNK = 500
"""Processing rows a reclaim reads per transaction."""
log = logging.getLogger("flowq.maintenance")

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


_CLAIMED = [jobs.c[column] for column in rows.CLAIMED_COLUMNS]


class SqlRunVerbs(SqlBase):
    """Claiming, completing and failing jobs; heartbeats, hand-backs, maintenance."""

    # -- running --------------------------------------------------------------------

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        workflows: Collection[str] | None = None,
        groups: GroupLimits | None = None,
    ) -> list[ClaimedJob]:
        """Lock up to ``limit`` runnable jobs, highest priority first, then oldest."""
        if groups is None and workflows is not None and self.fast_paths:
            async with self._driver("claim") as driver:
                return await self.dialect.claim_jobs(
                    driver, worker_id, limit, sorted(workflows), self.clock.now()
                )
        async with self._transaction() as conn:
            now = self.clock.now()
            # A job waiting for prerequisites has no ready_at (transitions.UNBLOCK).
            candidates = select(jobs.c.id, jobs.c.status, jobs.c.group_name).where(
                jobs.c.ready_at <= now
            )
            if workflows is not None:
                candidates = candidates.where(jobs.c.workflow.in_(sorted(workflows)))
            ordered = candidates.order_by(jobs.c.priority.desc(), jobs.c.id)
            if groups is None:
                query = ordered.limit(limit).with_for_update(skip_locked=True)
                chosen: Sequence[Any] = (await conn.execute(query)).all()
            else:
                chosen = await self._claim_within_groups(conn, ordered, limit, groups)
            if not chosen:
                return []
            previous = {row.id: row.status for row in chosen}
            result = await conn.execute(
                update(jobs)
                .where(self.dialect.one_of(jobs.c.id, list(previous)))
                .values(render.values(transitions.CLAIM, now, worker_id=worker_id))
                .returning(*_CLAIMED)
            )
            claimed_rows = sorted(result.mappings(), key=lambda r: (-r["priority"], r["id"]))
            with_history = set(
                (
                    await conn.execute(
                        select(steps.c.job_id)
                        .where(self.dialect.one_of(steps.c.job_id, list(previous)))
                        .distinct()
                    )
                ).scalars()
            )
            claimed = [
                ClaimedJob(
                    rows.header_from_row(row),
                    Lease(row["id"], row["lease_id"], worker_id),
                    previous[row["id"]] == JobStatus.WAITING.value,
                    row["payload"],
                    row["id"] in with_history,
                )
                for row in claimed_rows
            ]
            events = [
                (c.job.id, EventType.PROCESSING, transitions.processing_metadata(c))
                for c in claimed
            ]
            await self._add_events(conn, events, now)
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
            full = batch.full_groups(taken, groups)
            if full:
                query = query.where(
                    or_(jobs.c.group_name.is_(None), ~self.dialect.one_of(jobs.c.group_name, full))
                )
            if seen:
                query = query.where(~self.dialect.one_of(jobs.c.id, seen))
            wanted = limit - len(kept)
            found = (
                await conn.execute(query.limit(wanted).with_for_update(skip_locked=True))
            ).all()
            seen += [row.id for row in found]
            kept += batch.fit_groups(found, taken, groups)
            if len(found) < wanted:
                break
        return kept

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[bool]:
        """Mark jobs completed in one transaction; False for each stale lease."""
        if not completions:
            return []
        async with self._driver("complete") as driver:
            recorded, unblocked = await self.dialect.complete_jobs(
                driver, completions, self.clock.now()
            )
        if unblocked:
            self._wake("jobs")
        return recorded

    async def heartbeat(self, leases: Sequence[Lease]) -> list[Lease]:
        """Refresh the locks of running jobs; return the leases no longer held."""
        if not leases:
            return []
        async with self._transaction() as conn:
            now = self.clock.now()
            # Lock the rows in id order first, as the completion and recorded-call
            # batches do, so that a worker's concurrent statements never deadlock.
            await conn.execute(
                select(jobs.c.id).where(held(leases)).order_by(jobs.c.id).with_for_update()
            )
            result = await conn.execute(
                update(jobs)
                .where(held(leases))
                .values(render.values(transitions.HEARTBEAT, now))
                .returning(jobs.c.id)
            )
            kept = set(result.scalars())
        return [lease for lease in leases if lease.job_id not in kept]

    async def release_jobs(self, releases: Sequence[Release]) -> int:
        """Hand running jobs back as pending at once, not counting their attempt."""
        if not releases:
            return 0
        refund = {r.lease.job_id: -1 if r.new_attempt else 0 for r in releases}
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(held([r.lease for r in releases]))
                .values(render.values(transitions.RELEASE, now, refund=refund))
                .returning(jobs.c.id, jobs.c.attempts)
            )
            released = sorted(result.all())
            worker = releases[0].lease.worker_id
            await self._add_events(
                conn,
                [
                    (job_id, EventType.RECLAIMED, transitions.released_metadata(worker, attempts))
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

    async def mark_unclaimed(
        self, workflows: Collection[str], reason: Callable[[str], str]
    ) -> dict[str, int]:
        """Explain, on due pending jobs no worker here handles, why they wait; the
        count marked per workflow."""
        async with self._transaction() as conn:
            now = self.clock.now()
            found = await conn.execute(
                select(jobs.c.id, jobs.c.workflow)
                .where(
                    jobs.c.ready_at <= now,
                    jobs.c.status == JobStatus.PENDING.value,
                    jobs.c.pending_reason.is_(None),
                    jobs.c.workflow.not_in(sorted(workflows)),
                )
                .order_by(jobs.c.id)
                .limit(UNCLAIMED_BATCH_SIZE)
            )
            by_workflow: dict[str, list[int]] = {}
            for job_id, workflow in found:
                by_workflow.setdefault(workflow, []).append(job_id)
            marked: dict[str, int] = {}
            for workflow, ids in sorted(by_workflow.items()):
                # Claimed or explained by another worker since the look: left alone.
                result = await conn.execute(
                    update(jobs)
                    .where(
                        self.dialect.one_of(jobs.c.id, ids),
                        jobs.c.status == JobStatus.PENDING.value,
                        jobs.c.pending_reason.is_(None),
                    )
                    .values(render.values(transitions.MARK_UNCLAIMED, now, reason=reason(workflow)))
                )
                if result.rowcount:
                    marked[workflow] = int(result.rowcount)
            return marked

    async def resolve_options(self, lease: Lease, values: Mapping[str, Any]) -> bool:
        """Write a running job's declared option values; mark its options resolved."""
        columns = rows.column_values(values)
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(held([lease]))
                .values(**columns, **render.values(transitions.RESOLVE, now))
                .returning(jobs.c.id)
            )
            if result.first() is None:
                return False
            meta = {"fields": rows.edited_fields(columns), "resolved_by": lease.worker_id}
            await self._add_events(conn, [(lease.job_id, EventType.EDITED, meta)], now)
            return True

    async def record_progress(self, lease: Lease, percent: int) -> bool:
        """Store a running job's progress with a ``progress`` event."""
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(held([lease]))
                .values(render.values(transitions.PROGRESS, now, progress=percent))
                .returning(jobs.c.id)
            )
            if result.first() is None:
                return False
            meta = {"progress": percent}
            await self._add_events(conn, [(lease.job_id, EventType.PROGRESS, meta)], now)
            return True

    async def prolong_job(self, lease: Lease, seconds: float | None) -> bool:
        """Renew a running job's lock with a ``prolonged`` event."""
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(held([lease]))
                .values(render.values(transitions.PROLONG, now))
                .returning(jobs.c.id)
            )
            if result.first() is None:
                return False
            meta = {"seconds": seconds}
            await self._add_events(conn, [(lease.job_id, EventType.PROLONGED, meta)], now)
            return True

    async def record_output(self, lease: Lease, output: str) -> bool:
        """Store a running job's output before it ends."""
        async with self._transaction() as conn:
            now = self.clock.now()
            result = await conn.execute(
                update(jobs)
                .where(held([lease]))
                .values(render.values(transitions.OUTPUT, now, output=output))
                .returning(jobs.c.id)
            )
            return result.first() is not None

    async def fail_job(
        self, lease: Lease, error: ErrorEntry, *, reason: FailureReason, retry_at: datetime | None
    ) -> bool:
        """Record a failed attempt: retry later, or fail permanently (cascade, dead letter)."""
        async with self._transaction() as conn:
            row = (await conn.execute(select(jobs).where(held([lease])).with_for_update())).first()
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
        values, will_retry = transitions.failure(row, error, reason, retry_at, now)
        dead_letter_id = None
        if not will_retry and row["dead_letter"] is not None:
            [dead_letter_id] = await self.dialect.allocate_ids(conn, 1)
            letter = transitions.dead_letter_job(row, error, reason, now)
            await conn.execute(insert(jobs), [rows.new_job_row(letter, dead_letter_id, now)])
            meta = {"dead_letter_for": row["id"]}
            await self._add_events(conn, [(dead_letter_id, EventType.ADDED, meta)], now)
            values["dead_letter_job_id"] = dead_letter_id
        await conn.execute(update(jobs).where(jobs.c.id == row["id"]).values(**values))
        meta = transitions.failed_metadata(row, error, reason, values, dead_letter_id)
        await self._add_events(conn, [(row["id"], EventType.FAILED, meta)], now)
        if not will_retry:
            await self._cancel_dependants(conn, [row["id"]], "dependency_failed")

    # -- maintenance ----------------------------------------------------------------

    async def reclaim_stuck_jobs(self, older_than: timedelta) -> int:
        """Take back processing jobs locked longer than max(older_than, their timeout).

        A job with attempts left returns to pending (its next claim is a new attempt);
        one whose lost attempt was its last fails permanently (reason ``timeout``).
        Each gets a ``reclaimed`` event. Returns how many jobs were taken back.
        """
        return await self._reclaim(older_than, heed_timeout=True, limit=None)

    async def reclaim_expired_leases(
        self, older_than: timedelta, *, limit: int, sparing: str | None = None
    ) -> int:
        """Take back up to ``limit`` processing jobs whose heartbeats stopped longer
        than ``older_than`` ago, whatever their timeout, except those of worker
        ``sparing`` (as reclaim_stuck_jobs)."""
        return await self._reclaim(older_than, heed_timeout=False, limit=limit, sparing=sparing)

    async def _reclaim(
        self,
        older_than: timedelta,
        *,
        heed_timeout: bool,
        limit: int | None,
        sparing: str | None = None,
    ) -> int:
        """Reclaim in chunks of :data:`RECLAIM_CHUNK` rows (by id), one transaction each,
        so that no statement and no transaction grows with the number of stuck jobs."""
        total = 0
        after = 0
        requeued = False
        while limit is None or total < limit:
            wanted = RECLAIM_CHUNK if limit is None else min(RECLAIM_CHUNK, limit - total)
            read, last, taken, woke = await self._reclaim_chunk(
                older_than, heed_timeout, wanted, sparing, after
            )
            total += taken
            requeued = requeued or woke
            if read < wanted:
                break
            after = last
        if requeued:
            self._wake("jobs")
        return total

    async def _reclaim_chunk(
        self,
        older_than: timedelta,
        heed_timeout: bool,
        wanted: int,
        sparing: str | None,
        after: int,
    ) -> tuple[int, int, int, bool]:
        """Reclaim among the next ``wanted`` processing rows with ids above ``after``;
        return how many rows were read, the last id read, how many jobs were taken
        back and whether any returned to pending.

        A job whose lost attempt was its last is failed in a savepoint of its own: if
        that cannot be written (a row that cannot be read back, say), the error is
        logged, the job is left as it was for a later run, and the others proceed.
        """
        async with self._transaction() as conn:
            now = self.clock.now()
            query = select(jobs).where(
                jobs.c.status == JobStatus.PROCESSING.value,
                jobs.c.locked_at <= now - older_than,
                jobs.c.id > after,
            )
            if sparing is not None:
                query = query.where(jobs.c.locked_by != sparing)
            result = await conn.execute(
                query.order_by(jobs.c.id).limit(wanted).with_for_update(skip_locked=True)
            )
            found = list(result.mappings())
            if not found:
                return 0, after, 0, False
            stuck = [
                row
                for row in found
                if transitions.is_stuck(row, older_than, now, heed_timeout=heed_timeout)
            ]
            requeue = [row for row in stuck if row["attempts"] < row["max_attempts"]]
            if requeue:
                await conn.execute(
                    update(jobs)
                    .where(self.dialect.one_of(jobs.c.id, [row["id"] for row in requeue]))
                    .values(render.values(transitions.REQUEUE, now))
                )
                await self._add_events(
                    conn,
                    [
                        (row["id"], EventType.RECLAIMED, transitions.reclaimed_metadata(row))
                        for row in requeue
                    ],
                    now,
                )
                await self.dialect.notify(conn, "jobs")
            taken = len(requeue)
            for row in stuck:
                if row["attempts"] < row["max_attempts"]:
                    continue
                try:
                    async with conn.begin_nested():
                        meta = transitions.reclaimed_metadata(row)
                        await self._add_events(conn, [(row["id"], EventType.RECLAIMED, meta)], now)
                        error = transitions.lost_worker_error(row, now)
                        await self._fail_row(conn, row, error, FailureReason.TIMEOUT, None)
                except Exception as exc:
                    if self._not_the_jobs_fault(exc):
                        raise
                    log.exception(
                        "flowq: could not fail stuck job %s (its last attempt was lost); "
                        "it stays processing and the next reclaim tries again",
                        row["id"],
                    )
                    continue
                taken += 1
            return len(found), found[-1]["id"], taken, bool(requeue)

    def _not_the_jobs_fault(self, error: Exception) -> bool:
        """Whether ``error`` is about the database (gone, busy, no schema) rather than
        one job's row: such errors end the whole operation."""
        if isinstance(error, DBAPIError):
            kind = self.dialect.classify(error.orig, invalidated=error.connection_invalidated)
        else:
            kind = self.dialect.classify(error, invalidated=False)
        return kind is not None

    async def cleanup_old_jobs(
        self, older_than: timedelta, *, batch_size: int = CLEANUP_BATCH_SIZE
    ) -> int:
        """Delete finished jobs (with their events, steps, edges and tokens) in batches.

        A finished child whose unfinished parent has not recorded its outcome is kept.
        Each batch starts at the finish time the previous one reached, so kept rows
        are passed over once per run, not once per batch. Tokens created outside
        jobs are deleted too once they finished or passed their deadline that long
        ago (not counted).
        """
        await self._cleanup_free_tokens(older_than, batch_size)
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
                    .limit(batch_size)
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
            if len(ids) < batch_size:
                return total
            since = rows[-1].finished_at

    async def _cleanup_free_tokens(self, older_than: timedelta, batch_size: int) -> None:
        """Delete retired tokens of no job (``transitions.token_retired``) in batches."""
        while True:
            async with self._transaction() as conn:
                batch_ids = (
                    select(tokens.c.id)
                    .where(_token_retired(self.clock.now() - older_than))
                    .limit(batch_size)
                    .scalar_subquery()
                )
                result = await conn.execute(delete(tokens).where(tokens.c.id.in_(batch_ids)))
            if result.rowcount < batch_size:
                return

    async def cleanup_old_job_events(
        self, older_than: timedelta, *, batch_size: int = CLEANUP_BATCH_SIZE
    ) -> int:
        """Delete events written at or before now - ``older_than``, in batches."""
        total = 0
        while True:
            async with self._transaction() as conn:
                cutoff = self.clock.now() - older_than
                batch = (
                    select(job_events.c.id)
                    .where(job_events.c.at <= cutoff)
                    .order_by(job_events.c.id)
                    .limit(batch_size)
                    .scalar_subquery()
                )
                result = await conn.execute(delete(job_events).where(job_events.c.id.in_(batch)))
            deleted = int(result.rowcount or 0)
            total += deleted
            if deleted < batch_size:
                return total


def _token_retired(cutoff: datetime) -> ColumnElement[bool]:
    """``transitions.token_retired`` as SQL."""
    waiting = tokens.c.status == TokenStatus.WAITING.value
    return and_(
        tokens.c.job_id.is_(None),
        or_(
            and_(waiting, tokens.c.timeout_at <= cutoff),
            and_(~waiting, tokens.c.completed_at <= cutoff),
        ),
    )
