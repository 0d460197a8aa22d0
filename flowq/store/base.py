"""The storage boundary: a Protocol of domain verbs, one call = one transaction.

The engine, the worker and the client reach the database only through a
:class:`Store`. Implementations: :class:`flowq.store.sql.SqlStore` (PostgreSQL and
SQLite) and ``flowq_testing.InMemoryStore``; ``flowq_testing.StoreContract`` is the
behaviour suite all of them pass.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from flowq.clock import Clock
from flowq.models import (
    BatchDepRef,
    ErrorEntry,
    FailureReason,
    Job,
    JobEvent,
    JobStatus,
    RetryPolicy,
    TagQuery,
)

__all__ = [
    "CLEANUP_BATCH_SIZE",
    "EDITABLE_FIELDS",
    "ClaimedJob",
    "JobFilter",
    "Lease",
    "NewJob",
    "RunAtOp",
    "Store",
]

RunAtOp = Literal["eq", "gt", "gte", "lt", "lte"]

EDITABLE_FIELDS = frozenset(
    {
        "payload",
        "priority",
        "max_attempts",
        "run_at",
        "tags",
        "timeout",
        "retry",
        "group",
        "dead_letter",
        "force_kill_on_timeout",
    }
)
"""Job fields ``edit_job`` may change (values already validated and encoded)."""

CLEANUP_BATCH_SIZE = 1000
"""Rows deleted per transaction by the cleanup verbs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A validated job ready to insert. ``payload`` is JSON text; ``run_at`` None
    means "now" by the store's clock (so ``run_at == created_at``)."""

    workflow: str
    payload: str
    priority: int
    max_attempts: int
    run_at: datetime | None
    retry: RetryPolicy
    timeout: timedelta | None
    force_kill_on_timeout: bool
    tags: tuple[str, ...]
    idempotency_key: str | None
    group: str | None
    depends_on: tuple[int | BatchDepRef, ...]
    depends_on_tags: tuple[str, ...]
    dead_letter: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs a query or bulk verb touches; empty fields match everything."""

    statuses: tuple[JobStatus, ...] = ()
    workflow: str | None = None
    tags: TagQuery | None = None
    priority: int | None = None
    run_at: tuple[tuple[RunAtOp, datetime], ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that a worker holds a claimed job; writes with a stale lease are refused."""

    job_id: int
    lease_id: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job handed to a worker, with the lease its writes must carry."""

    job: Job
    lease: Lease
    resumed: bool
    """True when the job continues after a wait instead of starting a new attempt."""


class Store(Protocol):
    """Domain verbs over flowq's tables. Each call is one transaction.

    Times are read from :attr:`clock`, never from the database, so a fake clock
    moves stored time too.
    """

    clock: Clock

    async def open(self) -> None:
        """Connect and check the schema.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
            SchemaError: flowq's tables are missing or out of date.
        """

    async def close(self) -> None:
        """Release connections. The store may be opened again."""

    async def migrate(self) -> list[str]:
        """Apply the migrations that are not applied yet; return their names."""

    async def add_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[int]:
        """Insert jobs with their ``added`` events; return ids in input order.

        A job whose ``idempotency_key`` exists already yields the existing id and
        writes nothing. ``BatchDepRef`` entries resolve to ids of the same batch.
        With ``connection`` the inserts join that transaction and are not committed.

        Raises:
            DependencyError: Unknown, dead or cyclic prerequisites.
        """

    async def get_job(self, job_id: int) -> Job | None:
        """The job, or ``None``."""

    async def get_jobs(
        self, where: JobFilter, *, limit: int | None = None, cursor: int | None = None
    ) -> list[Job]:
        """Matching jobs, newest first (id descending), ids below ``cursor``."""

    async def get_job_events(self, job_id: int) -> list[JobEvent]:
        """The job's events, oldest first (``[]`` for an unknown job)."""

    async def cancel_job(self, job_id: int) -> bool:
        """Cancel a pending or waiting job and its dependants; False if nothing changed."""

    async def cancel_jobs(self, where: JobFilter) -> int:
        """Cancel every pending or waiting job matching ``where``; return the count."""

    async def retry_job(self, job_id: int) -> bool:
        """Make a failed job runnable now, granting an attempt; False if not failed."""

    async def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> bool:
        """Apply ``changes`` to a pending job; False if not pending or nothing changed."""

    async def edit_jobs(self, where: JobFilter, changes: Mapping[str, Any]) -> int:
        """Apply ``changes`` to every pending job matching ``where``; return the count."""

    async def claim_jobs(
        self, worker_id: str, limit: int, workflows: Collection[str] | None = None
    ) -> list[ClaimedJob]:
        """Lock up to ``limit`` runnable jobs for ``worker_id``, highest priority first."""

    async def complete_job(self, lease: Lease, output: str | None) -> bool:
        """Mark the job completed with ``output`` (JSON text); False on a stale lease."""

    async def fail_job(
        self,
        lease: Lease,
        error: ErrorEntry,
        *,
        reason: FailureReason,
        retry_at: datetime | None,
    ) -> bool:
        """Record a failed attempt; False on a stale lease.

        The job retries at ``retry_at`` if attempts remain and ``retry_at`` is set;
        otherwise it fails permanently, cancels its dependants and, with a
        dead-letter workflow, enqueues the dead-letter job in the same transaction.
        """

    async def suspend_job(
        self, lease: Lease, *, wait_until: datetime | None, token_id: str | None
    ) -> bool:
        """Park a processing job as waiting (releases its lock); False on a stale lease."""

    async def reclaim_stuck_jobs(self, older_than: timedelta) -> int:
        """Return processing jobs locked longer than max(older_than, timeout) to pending."""

    async def cleanup_old_jobs(self, older_than: timedelta) -> int:
        """Delete finished jobs that finished at or before now - ``older_than``, in
        batches of :data:`CLEANUP_BATCH_SIZE` (one transaction each); return the count."""

    async def cleanup_old_job_events(self, older_than: timedelta) -> int:
        """Delete events written at or before now - ``older_than``; return the count."""
