"""The client's verbs of :class:`flowq_testing.InMemoryStore`: adding, reading and
changing jobs.

They mirror :class:`flowq.store.sql.jobs.SqlJobVerbs` verb for verb (the same rows,
events, dependency rules and wake-ups).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from flowq.errors import ValidationError
from flowq.models import EventType, Job, JobEvent, JobStatus
from flowq.store import batch, rows, transitions
from flowq.store.base import JobFilter, NewJob
from flowq_testing.memory.tables import MemoryTables, utc_values

__all__ = ["MemoryJobVerbs"]


class MemoryJobVerbs(MemoryTables):
    """Adding, reading, cancelling, retrying and editing jobs."""

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
        # A batch reference to a duplicate names an existing job: its status counts.
        prerequisites = {
            job_id: (self._rows[job_id]["status"], self._rows[job_id]["ready_at"] is not None)
            for job_id in sorted(explicit | set(existing.values()))
            if job_id in self._rows
        }
        tag_matches = {
            tags: self._unfinished_ids_with_tags(tags)
            for tags in {job.depends_on_tags for job in jobs if job.depends_on_tags}
        }
        fresh_ids = itertools.count(self._last_job_id + 1)
        plan = batch.plan_batch(jobs, existing, prerequisites, tag_matches, fresh_ids)
        targets = {target for _, target in plan.edges}
        for job_id, job in plan.rows:
            row = rows.new_job_row(job, job_id, now)
            self._insert(transitions.block(row, plan.blocked.get(job_id, 0)))
        for job_id, prerequisite in plan.edges:
            self._edges.setdefault(job_id, set()).add(prerequisite)
        for job_id in targets:
            self._rows[job_id]["has_dependants"] = True
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

    async def get_job_by_key(self, idempotency_key: str) -> Job | None:
        """The job with this idempotency key, or ``None``."""
        job_id = self._keys.get(idempotency_key)
        row = None if job_id is None else self._rows.get(job_id)
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
            self._apply(transitions.CANCEL_RUNNING, row, now)
            self._add_events([(job_id, EventType.CANCELLED, meta)], now)
            self._cancel_dependants([job_id], "dependency_cancelled")
        elif transitions.is_upcoming(row):
            self._cancel([job_id], {"reason": "cancel_job"})
        else:
            return False
        self._wake(f"cancel:{job_id}")
        return True

    async def cancel_jobs(self, where: JobFilter) -> int:
        """Cancel every upcoming job matching ``where``; return the count."""
        ids = [i for i in self._select(where) if transitions.is_upcoming(self._rows[i])]
        self._cancel(ids, {"reason": "cancel_all_upcoming_jobs"})
        return len(ids)

    async def retry_job(self, job_id: int) -> bool:
        """Make a failed job runnable now, granting an attempt; False if not failed."""
        row = self._rows.get(job_id)
        if row is None or row["status"] != JobStatus.FAILED:
            return False
        now = self._now()
        self._apply(transitions.RETRY, row, now)
        meta = {"max_attempts": row["max_attempts"]}
        self._add_events([(job_id, EventType.RETRIED, meta)], now)
        self._wake("jobs")
        return True

    async def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> bool:
        """Apply ``changes`` to a pending job; False if not pending or nothing changed.

        Raises:
            ValidationError: A field of ``changes`` is not editable.
        """
        values = utc_values(rows.column_values(changes))
        row = self._rows.get(job_id)
        if row is None or row["status"] != JobStatus.PENDING:
            return False
        changed = rows.changed_columns(row, values)
        if not changed:
            return False
        now = self._now()
        self._edit(row, changed, now)
        self._add_events([(job_id, EventType.EDITED, {"fields": rows.edited_fields(changed)})], now)
        if "run_at" in changed:
            self._wake("jobs")
        return True

    async def edit_jobs(self, where: JobFilter, changes: Mapping[str, Any]) -> int:
        """Apply ``changes`` to every pending job matching ``where`` where a value
        differs; return how many changed.

        Raises:
            ValidationError: A field of ``changes`` is not editable.
        """
        values = utc_values(rows.column_values(changes))
        now = self._now()
        events = []
        for job_id in self._select(where, [JobStatus.PENDING]):
            row = self._rows[job_id]
            changed = rows.changed_columns(row, values)
            if changed:
                self._edit(row, changed, now)
                events.append((job_id, EventType.EDITED, {"fields": rows.edited_fields(changed)}))
        self._add_events(events, now)
        return len(events)

    def _edit(self, row: dict[str, Any], changed: Mapping[str, Any], now: datetime) -> None:
        """Write the changed columns of a pending job (``transitions.EDIT``)."""
        self._apply(transitions.EDIT, row, now)
        self._write(row, changed)
