"""The worker's and operator's verbs of :class:`flowq_testing.InMemoryStore`: claiming,
completing, failing, heartbeats, hand-backs, and maintenance.

They mirror :class:`flowq.store.sql.runs.SqlRunVerbs` verb for verb (the same rows,
events, lease fencing and wake-ups).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flowq.models import ErrorEntry, EventType, FailureReason, JobStatus
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
from flowq_testing.memory.tables import MemoryTables, utc, utc_values

__all__ = ["MemoryRunVerbs"]


class _Candidate(NamedTuple):
    """A runnable job as a group-limited claim sees it (``batch.fit_groups``)."""

    id: int
    group_name: str | None


class MemoryRunVerbs(MemoryTables):
    """Claiming, completing and failing jobs; heartbeats, hand-backs, maintenance."""

    # -- running --------------------------------------------------------------------

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        workflows: Collection[str] | None = None,
        groups: GroupLimits | None = None,
    ) -> list[ClaimedJob]:
        """Lock up to ``limit`` runnable jobs for ``worker_id``, highest priority first.

        Runnable: ``ready_at`` is due (a job waiting for prerequisites has none), the
        workflow is in ``workflows`` (if given) and its group has room (``groups``). A
        job resuming
        from a wait keeps its attempt count; any other claim starts a new attempt.
        """
        now = self._now()
        claimed = [
            self._claim_row(row, worker_id, now)
            for row in self._claimable(now, limit, workflows, groups)
        ]
        self._add_events(
            [(c.job.id, EventType.PROCESSING, transitions.processing_metadata(c)) for c in claimed],
            now,
        )
        return claimed

    def _claimable(
        self,
        now: datetime,
        limit: int,
        workflows: Collection[str] | None,
        groups: GroupLimits | None,
    ) -> list[dict[str, Any]]:
        """The rows a claim takes, in claim order, as the SQL ``claim_jobs`` picks them.

        Like the SQL: runnable jobs by priority then id, skipping (with ``groups``)
        those whose group is full, the first ``limit``.
        """
        found = [
            row
            for row in self._rows.values()
            if self._runnable(row, now) and (workflows is None or row["workflow"] in workflows)
        ]
        found.sort(key=lambda row: (-row["priority"], row["id"]))
        if groups is None:
            return found[: max(limit, 0)]
        taken: dict[str, int] = {}
        for row in self._rows.values():
            if row["status"] == JobStatus.PROCESSING and row["group_name"] is not None:
                taken[row["group_name"]] = taken.get(row["group_name"], 0) + 1
        candidates = [_Candidate(row["id"], row["group_name"]) for row in found]
        candidates = batch.fit_groups(candidates, taken, groups)[: max(limit, 0)]
        return [self._rows[candidate.id] for candidate in candidates]

    def _runnable(self, row: Mapping[str, Any], now: datetime) -> bool:
        return row["ready_at"] is not None and row["ready_at"] <= now

    def _claim_row(self, row: dict[str, Any], worker_id: str, now: datetime) -> ClaimedJob:
        """Lock a runnable row for ``worker_id`` (a new attempt unless it resumes)."""
        resumed = row["status"] == JobStatus.WAITING
        self._apply(transitions.CLAIM, row, now, worker_id=worker_id)
        lease = Lease(row["id"], row["lease_id"], worker_id)
        has_history = bool(self._steps.get(row["id"]))
        return ClaimedJob(rows.header_from_row(row), lease, resumed, row["payload"], has_history)

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[bool]:
        """Mark jobs completed in one step; False for each stale lease (input order)."""
        if not completions:
            return []
        now = self._now()
        outputs = {c.lease.job_id: c.output for c in completions}
        done = self._held([c.lease for c in completions])
        for job_id, row in done.items():
            self._apply(transitions.COMPLETE, row, now, output=outputs[job_id])
        self._add_events([(job_id, EventType.COMPLETED, None) for job_id in sorted(done)], now)
        if self._has_dependants(done.keys()):
            self._wake("jobs")
        return [c.lease.job_id in done for c in completions]

    async def resolve_options(self, lease: Lease, values: Mapping[str, Any]) -> bool:
        """Write a running job's declared option values and mark its options resolved
        (an ``edited`` event says which, and by which worker); False if not held."""
        row = self._leased(lease)
        if row is None:
            return False
        columns = utc_values(rows.column_values(values))
        now = self._now()
        self._apply(transitions.RESOLVE, row, now)
        self._write(row, columns)
        meta = {"fields": rows.edited_fields(columns), "resolved_by": lease.worker_id}
        self._add_events([(lease.job_id, EventType.EDITED, meta)], now)
        return True

    async def record_progress(self, lease: Lease, percent: int) -> bool:
        """Store a running job's progress with a ``progress`` event; False if not held."""
        row = self._leased(lease)
        if row is None:
            return False
        now = self._now()
        self._apply(transitions.PROGRESS, row, now, progress=percent)
        self._add_events([(lease.job_id, EventType.PROGRESS, {"progress": percent})], now)
        return True

    async def prolong_job(self, lease: Lease, seconds: float | None) -> bool:
        """Renew a running job's lock with a ``prolonged`` event; False if not held."""
        row = self._leased(lease)
        if row is None:
            return False
        now = self._now()
        self._apply(transitions.PROLONG, row, now)
        self._add_events([(lease.job_id, EventType.PROLONGED, {"seconds": seconds})], now)
        return True

    async def record_output(self, lease: Lease, output: str) -> bool:
        """Store a running job's output (JSON text) before it ends; False if not held."""
        row = self._leased(lease)
        if row is None:
            return False
        self._apply(transitions.OUTPUT, row, self._now(), output=output)
        return True

    async def heartbeat(self, leases: Sequence[Lease]) -> list[Lease]:
        """Refresh the locks of running jobs; return the leases no longer held."""
        now = self._now()
        held = self._held(leases)
        for row in held.values():
            self._apply(transitions.HEARTBEAT, row, now)
        return [lease for lease in leases if lease.job_id not in held]

    async def release_jobs(self, releases: Sequence[Release]) -> int:
        """Hand running jobs back as pending at once, not counting a new attempt."""
        if not releases:
            return 0
        now = self._now()
        refund = {r.lease.job_id: -1 if r.new_attempt else 0 for r in releases}
        released = self._held([r.lease for r in releases])
        for row in released.values():
            self._apply(transitions.RELEASE, row, now, refund=refund)
        worker = releases[0].lease.worker_id
        events = [
            (job_id, EventType.RECLAIMED, transitions.released_metadata(worker, row["attempts"]))
            for job_id, row in sorted(released.items())
        ]
        self._add_events(events, now)
        if released:
            self._wake("jobs")
        return len(released)

    async def next_ready_at(
        self, workflows: Collection[str] | None = None, *, after: datetime | None = None
    ) -> datetime | None:
        """The earliest due time later than ``after`` (default: now; None: no such job)."""
        now = self._now() if after is None else after
        return min(
            (
                row["ready_at"]
                for row in self._rows.values()
                if row["ready_at"] is not None
                and row["ready_at"] > now
                and (workflows is None or row["workflow"] in workflows)
            ),
            default=None,
        )

    async def mark_unclaimed(
        self, workflows: Collection[str], reason: Callable[[str], str]
    ) -> dict[str, int]:
        """Set ``pending_reason`` to ``reason(workflow)`` on due pending jobs of
        workflows other than ``workflows`` that have none (lowest ids first, a batch
        at most); return the count per workflow. As the SQL store: no event,
        ``updated_at`` stays."""
        now = self._now()
        ids = [
            job_id
            for job_id, row in sorted(self._rows.items())
            if row["status"] == JobStatus.PENDING
            and row["ready_at"] is not None
            and row["ready_at"] <= now
            and row["pending_reason"] is None
            and row["workflow"] not in workflows
        ][:UNCLAIMED_BATCH_SIZE]
        marked: dict[str, int] = {}
        for job_id in ids:
            workflow = self._rows[job_id]["workflow"]
            reason_text = reason(workflow)
            self._apply(transitions.MARK_UNCLAIMED, self._rows[job_id], now, reason=reason_text)
            marked[workflow] = marked.get(workflow, 0) + 1
        return marked

    async def fail_job(
        self, lease: Lease, error: ErrorEntry, *, reason: FailureReason, retry_at: datetime | None
    ) -> bool:
        """Record a failed attempt; False on a stale lease.

        The job retries at ``retry_at`` if attempts remain and ``retry_at`` is set;
        otherwise it fails permanently, cancels its dependants and, with a
        dead-letter workflow, enqueues the dead-letter job.
        """
        row = self._leased(lease)
        if row is None:
            return False
        self._fail_row(row, error, reason, retry_at)
        return True

    def _fail_row(
        self,
        row: dict[str, Any],
        error: ErrorEntry,
        reason: FailureReason,
        retry_at: datetime | None,
    ) -> None:
        """Write a failed attempt of a processing row, with everything that follows."""
        now = self._now()
        values, will_retry = transitions.failure(
            row, error, reason, None if retry_at is None else utc(retry_at), now
        )
        dead_letter_id = None
        if not will_retry and row["dead_letter"] is not None:
            dead_letter_id = self._last_job_id + 1
            letter = transitions.dead_letter_job(row, error, reason, now)
            self._insert(rows.new_job_row(letter, dead_letter_id, now))
            meta = {"dead_letter_for": row["id"]}
            self._add_events([(dead_letter_id, EventType.ADDED, meta)], now)
            values["dead_letter_job_id"] = dead_letter_id
        self._write(row, values)
        meta = transitions.failed_metadata(row, error, reason, values, dead_letter_id)
        self._add_events([(row["id"], EventType.FAILED, meta)], now)
        if not will_retry:
            self._cancel_dependants([row["id"]], "dependency_failed")

    # -- maintenance ----------------------------------------------------------------

    async def reclaim_stuck_jobs(self, older_than: timedelta) -> int:
        """Take back processing jobs locked longer than max(older_than, their timeout).

        A job with attempts left returns to pending; one whose lost attempt was its
        last fails permanently (reason ``timeout``). Returns how many were taken back.
        """
        return self._reclaim(older_than, heed_timeout=True, limit=None)

    async def reclaim_expired_leases(
        self, older_than: timedelta, *, limit: int, sparing: str | None = None
    ) -> int:
        """Take back up to ``limit`` processing jobs whose heartbeats stopped longer
        than ``older_than`` ago, whatever their timeout, except those of worker
        ``sparing`` (as reclaim_stuck_jobs)."""
        return self._reclaim(older_than, heed_timeout=False, limit=limit, sparing=sparing)

    def _reclaim(
        self,
        older_than: timedelta,
        *,
        heed_timeout: bool,
        limit: int | None,
        sparing: str | None = None,
    ) -> int:
        now = self._now()
        stuck = [
            row
            for _, row in sorted(self._rows.items())
            if row["status"] == JobStatus.PROCESSING
            and (sparing is None or row["locked_by"] != sparing)
            and transitions.is_stuck(row, older_than, now, heed_timeout=heed_timeout)
        ][:limit]
        events = [
            (row["id"], EventType.RECLAIMED, transitions.reclaimed_metadata(row)) for row in stuck
        ]
        requeue = [row for row in stuck if row["attempts"] < row["max_attempts"]]
        for row in requeue:
            self._apply(transitions.REQUEUE, row, now)
        self._add_events(events, now)
        for row in stuck:
            if row["status"] == JobStatus.PROCESSING:
                error = transitions.lost_worker_error(row, now)
                self._fail_row(row, error, FailureReason.TIMEOUT, None)
        if requeue:
            self._wake("jobs")
        return len(stuck)

    async def cleanup_old_jobs(
        self, older_than: timedelta, *, batch_size: int = CLEANUP_BATCH_SIZE
    ) -> int:
        """Delete finished jobs that finished at or before now - ``older_than`` (all at
        once: ``batch_size`` matters to the SQL stores' transactions only).

        Their events, dependency edges, recorded calls and tokens go with them; their
        ids are never reused. A finished child whose unfinished parent has not
        recorded its outcome is kept. Tokens of no job go once they finished or
        passed their deadline that long ago.
        """
        cutoff = self._now() - older_than
        retired = [k for k, row in self._tokens.items() if transitions.token_retired(row, cutoff)]
        for token_id in retired:
            del self._tokens[token_id]
        ids = {
            job_id
            for job_id, row in self._rows.items()
            if row["finished_at"] is not None
            and row["finished_at"] <= cutoff
            and not self._needed_by_parent(row)
        }
        self._forget(ids)
        return len(ids)

    def _needed_by_parent(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` is a child of ``ctx.call`` whose parent is unfinished and
        has not recorded the child's outcome yet (``_NEEDED_BY_PARENT`` in the SQL)."""
        seq = row["parent_outcome_seq"]
        parent = self._rows.get(row["parent_job_id"]) if seq is not None else None
        return (
            parent is not None
            and parent["finished_at"] is None
            and seq not in self._steps.get(parent["id"], {})
        )

    async def cleanup_old_job_events(
        self, older_than: timedelta, *, batch_size: int = CLEANUP_BATCH_SIZE
    ) -> int:
        """Delete events written at or before now - ``older_than``; return the count."""
        cutoff = self._now() - older_than
        kept = {key: e for key, e in self._events.items() if e.at > cutoff}
        deleted = len(self._events) - len(kept)
        self._events = kept
        return deleted
