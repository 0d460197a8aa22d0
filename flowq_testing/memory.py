"""An in-memory :class:`flowq.store.base.Store` for unit tests.

:class:`InMemoryStore` mirrors, verb for verb, the semantics of
:class:`flowq.store.sql.SqlStore`: the same ids, events, dependency rules, filters
and lease fencing, without a database.

Every verb runs synchronously inside its coroutine (it never awaits half way), so a
verb is atomic with respect to other tasks and needs no lock; the store works from
any number of event loops. Verbs wake this process's listeners (:meth:`listen`)
exactly where the SQL store does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio

from flowq.clock import Clock
from flowq.errors import ValidationError
from flowq.models import ErrorEntry, EventType, FailureReason, Job, JobEvent, JobStatus
from flowq.store import records
from flowq.store.base import ClaimedJob, Completion, GroupLimits, JobFilter, Lease, NewJob, Release
from flowq.store.batch import plan_batch
from flowq.store.wakeups import LocalWakeups
from flowq.system_clock import SystemClock
from flowq_testing._memory_durable import MemoryDurableVerbs
from flowq_testing._memory_tables import utc_values

__all__ = ["InMemoryStore"]

_UNLOCKED = records.UNLOCKED


class InMemoryStore(MemoryDurableVerbs):
    """flowq's tables as Python dicts: a :class:`flowq.store.base.Store` for tests.

    It behaves like the SQL store (ids from 1, never reused; the same events and
    metadata; the same filters, dependency rules and leases) but keeps nothing on
    disk. ``open``, ``close`` and ``migrate`` do nothing, and the store stays usable
    after ``close``. ``connection=`` (joining a database transaction) is refused.

    Args:
        clock: Where "now" comes from (the system clock by default). The attribute
            :attr:`clock` may be replaced later (``flowq.App(clock=...)`` does).

    Example:
        >>> from flowq_testing import FakeClock, InMemoryStore
        >>> app = flowq.App(store=InMemoryStore(clock=FakeClock()))
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.wakeups = LocalWakeups()
        self._reset_tables()

    def __repr__(self) -> str:
        return f"InMemoryStore(jobs={len(self._rows)}, events={len(self._events)})"

    # -- inspection -----------------------------------------------------------------

    def reset(self) -> None:
        """Forget every job, event, recorded call and token: the store is as new (ids
        restart at 1)."""
        self._reset_tables()

    @property
    def jobs(self) -> list[Job]:
        """Every stored job, oldest first (id ascending), as fresh snapshots."""
        return [self._job(row) for _, row in sorted(self._rows.items())]

    @property
    def events(self) -> list[JobEvent]:
        """Every stored event of every job, oldest first (id ascending)."""
        return [event.to_event() for event in self._events.values()]

    # -- connection and schema ------------------------------------------------------

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release; the data stays and the store stays usable."""

    async def migrate(self) -> list[str]:
        """There is no schema: nothing to apply."""
        return []

    async def listen(self, on_wake: Callable[[str], None], *, remote: bool = True) -> None:
        """Call ``on_wake(hint)`` after this store's writes that may wake workers,
        until cancelled. There are no other processes, so ``remote`` changes nothing."""
        self.wakeups.add_listener(on_wake)
        try:
            await anyio.sleep_forever()
        finally:
            self.wakeups.remove_listener(on_wake)

    # -- adding ---------------------------------------------------------------------

    async def add_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[int]:
        """Insert jobs with their ``added`` events; return ids in input order.

        A job whose ``idempotency_key`` exists already yields the existing id and
        writes nothing. ``BatchDepRef`` entries resolve to ids of the same batch.

        Raises:
            ValidationError: ``connection`` was given: there is no database here.
            DependencyError: Unknown, dead or cyclic prerequisites (nothing is written).
        """
        if connection is not None:
            raise ValidationError(
                "connection= joins a database transaction, but the in-memory store has no "
                "database connections; leave connection= out in tests that use "
                "InMemoryStore, or test transactional enqueueing on a SQL store"
            )
        if not jobs:
            return []
        now = self._now()
        keys = {job.idempotency_key for job in jobs if job.idempotency_key is not None}
        existing: dict[str | None, int] = {k: self._keys[k] for k in keys if k in self._keys}
        explicit = {ref for job in jobs for ref in job.depends_on if isinstance(ref, int)}
        prerequisites = {
            job_id: (self._rows[job_id]["status"], self._rows[job_id]["ready_at"] is not None)
            for job_id in sorted(explicit)
            if job_id in self._rows
        }
        tag_matches = {
            tags: self._unfinished_ids_with_tags(tags)
            for tags in {job.depends_on_tags for job in jobs if job.depends_on_tags}
        }
        fresh_ids = itertools.count(self._last_job_id + 1)
        plan = plan_batch(jobs, existing, prerequisites, tag_matches, fresh_ids)
        for job_id, job in plan.rows:
            self._insert(records.new_job_row(job, job_id, now))
        for job_id, prerequisite in plan.edges:
            self._edges.setdefault(job_id, set()).add(prerequisite)
        self._add_events(
            [(job_id, EventType.ADDED, plan.added_metadata.get(job_id)) for job_id, _ in plan.rows],
            now,
        )
        self._wake("jobs")
        return plan.ids

    # -- reading --------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        """The job, or ``None``."""
        row = self._rows.get(job_id)
        return None if row is None else self._job(row)

    async def get_jobs(
        self, where: JobFilter, *, limit: int | None = None, cursor: int | None = None
    ) -> list[Job]:
        """Matching jobs, newest first (id descending), ids below ``cursor``."""
        ids = [i for i in reversed(self._select(where)) if cursor is None or i < cursor]
        if limit is not None:
            ids = ids[: max(limit, 0)]
        return [self._job(self._rows[job_id]) for job_id in ids]

    async def get_job_events(self, job_id: int) -> list[JobEvent]:
        """The job's events, oldest first (``[]`` for an unknown job)."""
        return [event.to_event() for event in self._events.values() if event.job_id == job_id]

    # -- changing -------------------------------------------------------------------

    async def cancel_job(self, job_id: int) -> bool:
        """Cancel an upcoming or running job and its dependants; False if finished.

        A running job's lease ends at once: its worker's later writes are refused.
        """
        row = self._rows.get(job_id)
        if row is None:
            return False
        if row["status"] == JobStatus.PROCESSING:
            now = self._now()
            meta = {"reason": "cancel_job", "worker_id": row["locked_by"], "was_running": True}
            values = {**records.cancelled_values(now), **_UNLOCKED}
            self._write(row, {**values, "lease_id": row["lease_id"] + 1})
            self._add_events([(job_id, EventType.CANCELLED, meta)], now)
            self._cancel_dependants([job_id], "dependency_cancelled")
        elif records.is_upcoming(row):
            self._cancel([job_id], {"reason": "cancel_job"})
        else:
            return False
        self._wake(f"cancel:{job_id}")
        return True

    async def cancel_jobs(self, where: JobFilter) -> int:
        """Cancel every upcoming job matching ``where``; return the count."""
        ids = [job_id for job_id in self._select(where) if records.is_upcoming(self._rows[job_id])]
        self._cancel(ids, {"reason": "cancel_all_upcoming_jobs"})
        return len(ids)

    async def retry_job(self, job_id: int) -> bool:
        """Make a failed job runnable now, granting an attempt; False if not failed."""
        row = self._rows.get(job_id)
        if row is None or row["status"] != JobStatus.FAILED:
            return False
        now = self._now()
        values = records.retried_values(row, now)
        self._write(row, values)
        meta = {"max_attempts": values["max_attempts"]}
        self._add_events([(job_id, EventType.RETRIED, meta)], now)
        self._wake("jobs")
        return True

    async def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> bool:
        """Apply ``changes`` to a pending job; False if not pending or nothing changed.

        Raises:
            ValidationError: A field of ``changes`` is not editable.
        """
        values = utc_values(records.column_values(changes))
        row = self._rows.get(job_id)
        if row is None or row["status"] != JobStatus.PENDING:
            return False
        changed = records.changed_columns(row, values)
        if not changed:
            return False
        now = self._now()
        self._set(job_id, now, **changed)
        self._add_events(
            [(job_id, EventType.EDITED, {"fields": records.edited_fields(changed)})], now
        )
        if "run_at" in changed:
            self._wake("jobs")
        return True

    async def edit_jobs(self, where: JobFilter, changes: Mapping[str, Any]) -> int:
        """Apply ``changes`` to every pending job matching ``where`` where a value
        differs; return how many changed.

        Raises:
            ValidationError: A field of ``changes`` is not editable.
        """
        values = utc_values(records.column_values(changes))
        now = self._now()
        events = []
        for job_id in self._select(where, [JobStatus.PENDING]):
            changed = records.changed_columns(self._rows[job_id], values)
            if changed:
                self._set(job_id, now, **changed)
                meta = {"fields": records.edited_fields(changed)}
                events.append((job_id, EventType.EDITED, meta))
        self._add_events(events, now)
        return len(events)

    # -- running --------------------------------------------------------------------

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        workflows: Collection[str] | None = None,
        groups: GroupLimits | None = None,
    ) -> list[ClaimedJob]:
        """Lock up to ``limit`` runnable jobs for ``worker_id``, highest priority first.

        Runnable: ``ready_at`` is due, every prerequisite completed, the workflow is in
        ``workflows`` (if given) and its group has room (``groups``). A job resuming
        from a wait keeps its attempt count; any other claim starts a new attempt.
        """
        now = self._now()
        claimed = [
            self._claim_row(row, worker_id, now)
            for row in self._claimable(now, limit, workflows, groups)
        ]
        self._add_events(
            [(c.job.id, EventType.PROCESSING, records.processing_metadata(c)) for c in claimed],
            now,
        )
        return claimed

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[bool]:
        """Mark jobs completed in one step; False for each stale lease (input order)."""
        if not completions:
            return []
        now = self._now()
        outputs = {c.lease.job_id: c.output for c in completions}
        done = self._held([c.lease for c in completions])
        for job_id in done:
            self._set(
                job_id,
                now,
                status=JobStatus.COMPLETED.value,
                output=outputs[job_id],
                failure_reason=None,
                completed_at=now,
                finished_at=now,
                **_UNLOCKED,
            )
        self._add_events([(job_id, EventType.COMPLETED, None) for job_id in sorted(done)], now)
        if self._has_dependants(done.keys()):
            self._wake("jobs")
        return [c.lease.job_id in done for c in completions]

    async def record_progress(self, lease: Lease, percent: int) -> bool:
        """Store a running job's progress with a ``progress`` event; False if not held."""
        if lease.job_id not in self._held([lease]):
            return False
        now = self._now()
        self._set(lease.job_id, now, progress=percent)
        self._add_events([(lease.job_id, EventType.PROGRESS, {"progress": percent})], now)
        return True

    async def record_output(self, lease: Lease, output: str) -> bool:
        """Store a running job's output (JSON text) before it ends; False if not held."""
        if lease.job_id not in self._held([lease]):
            return False
        self._set(lease.job_id, self._now(), output=output)
        return True

    async def heartbeat(self, leases: Sequence[Lease]) -> list[Lease]:
        """Refresh the locks of running jobs; return the leases no longer held."""
        now = self._now()
        held = self._held(leases)
        for row in held.values():
            self._write(row, {"locked_at": now})  # as SqlStore: updated_at stays
        return [lease for lease in leases if lease.job_id not in held]

    async def release_jobs(self, releases: Sequence[Release]) -> int:
        """Hand running jobs back as pending at once, not counting a new attempt."""
        if not releases:
            return 0
        now = self._now()
        refund = {r.lease.job_id: 1 if r.new_attempt else 0 for r in releases}
        released = self._held([r.lease for r in releases])
        for job_id, row in released.items():
            self._set(
                job_id,
                now,
                status=JobStatus.PENDING.value,
                attempts=row["attempts"] - refund[job_id],
                lease_id=row["lease_id"] + 1,
                ready_at=now,
                **_UNLOCKED,
            )
        worker = releases[0].lease.worker_id
        self._add_events(
            [
                (job_id, EventType.RECLAIMED, records.released_metadata(worker, row["attempts"]))
                for job_id, row in sorted(released.items())
            ],
            now,
        )
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

    async def mark_unclaimed(self, workflows: Collection[str], reason: str) -> int:
        """Set ``pending_reason`` on due pending jobs of workflows other than
        ``workflows`` that have none (lowest ids first, a batch at most); return the
        count. As SqlStore: no event, ``updated_at`` stays."""
        now = self._now()
        ids = self._unclaimed_ids(workflows, now)[: records.UNCLAIMED_BATCH_SIZE]
        for job_id in ids:
            self._write(self._rows[job_id], {"pending_reason": reason})
        return len(ids)

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

    # -- maintenance ----------------------------------------------------------------

    async def reclaim_stuck_jobs(self, older_than: timedelta) -> int:
        """Take back processing jobs locked longer than max(older_than, their timeout).

        A job with attempts left returns to pending; one whose lost attempt was its
        last fails permanently (reason ``timeout``). Returns how many were taken back.
        """
        now = self._now()
        stuck = [
            row
            for _, row in sorted(self._rows.items())
            if row["status"] == JobStatus.PROCESSING and records.is_stuck(row, older_than, now)
        ]
        events = [
            (row["id"], EventType.RECLAIMED, records.reclaimed_metadata(row)) for row in stuck
        ]
        requeue = [row["id"] for row in stuck if row["attempts"] < row["max_attempts"]]
        for job_id in requeue:
            self._set(job_id, now, status=JobStatus.PENDING.value, ready_at=now, **_UNLOCKED)
        self._add_events(events, now)
        for row in stuck:
            if row["status"] == JobStatus.PROCESSING:
                error = records.lost_worker_error(row, now)
                self._fail_row(row, error, FailureReason.TIMEOUT, None)
        if requeue:
            self._wake("jobs")
        return len(stuck)

    async def cleanup_old_jobs(self, older_than: timedelta) -> int:
        """Delete finished jobs that finished at or before now - ``older_than``.

        Their events, dependency edges, recorded calls and tokens go with them; their
        ids are never reused. A finished child whose unfinished parent has not
        recorded its outcome is kept.
        """
        cutoff = self._now() - older_than
        ids = {
            job_id
            for job_id, row in self._rows.items()
            if row["finished_at"] is not None
            and row["finished_at"] <= cutoff
            and not self._needed_by_parent(row)
        }
        for job_id in ids:
            row = self._rows.pop(job_id)
            self._edges.pop(job_id, None)
            if row["idempotency_key"] is not None:
                del self._keys[row["idempotency_key"]]
        self._events = {key: e for key, e in self._events.items() if e.job_id not in ids}
        self._forget_durable(ids)
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

    async def cleanup_old_job_events(self, older_than: timedelta) -> int:
        """Delete events written at or before now - ``older_than``; return the count."""
        cutoff = self._now() - older_than
        kept = {key: e for key, e in self._events.items() if e.at > cutoff}
        deleted = len(self._events) - len(kept)
        self._events = kept
        return deleted
