"""The storage boundary: a Protocol of domain verbs, one call = one transaction.

The engine, the worker and the client reach the database only through a
:class:`Store`. Implementations: :class:`flowq.store.sql.SqlStore` (PostgreSQL and
SQLite) and ``flowq_testing.InMemoryStore``; ``flowq_testing.StoreContract`` is the
behaviour suite all of them pass. This module (the port) imports no SQL library.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from flowq.clock import Clock
from flowq.errors import ValidationError
from flowq.models import (
    BatchDepRef,
    ErrorEntry,
    FailureReason,
    Job,
    JobEvent,
    JobStatus,
    RetryPolicy,
    TagQuery,
    Token,
    TokenStatus,
)
from flowq.replay import RecordedCall
from flowq.store.report import HealthReport, JobCounts
from flowq.store.schedules import ScheduleVerbs
from flowq.store.workers import WorkerVerbs

__all__ = [
    "CLEANUP_BATCH_SIZE",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETRY",
    "EDITABLE_FIELDS",
    "UNCLAIMED_BATCH_SIZE",
    "WORKER_RESOLVED",
    "ClaimedJob",
    "Completion",
    "GroupLimits",
    "JobFilter",
    "JobHeader",
    "Lease",
    "NewJob",
    "NewToken",
    "Release",
    "RunAtOp",
    "Store",
    "StoreCapabilities",
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

WORKER_RESOLVED: tuple[str, ...] = (
    "timeout",
    "max_attempts",
    "retry",
    "dead_letter",
    "force_kill_on_timeout",
)
"""The options of a job that a worker fills in from its workflow's declaration when the
job was enqueued where that workflow is not registered (and the option was not given).
The others (payload, priority, tags, run time, group, dependencies, idempotency key)
are fixed at enqueue: they decide which job is claimed before any worker reads it."""

CLEANUP_BATCH_SIZE = 1000
"""Rows deleted per transaction by the cleanup verbs."""

UNCLAIMED_BATCH_SIZE = 100
"""At most this many jobs get a ``pending_reason`` per ``mark_unclaimed`` call."""

DEFAULT_MAX_ATTEMPTS = 3
"""Attempts of a job that sets none (and of every dead-letter job)."""

DEFAULT_RETRY = RetryPolicy()
"""The retry policy of a job that sets none (and of every dead-letter job)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCapabilities:
    """What a store can do that its callers adapt to (instead of asking what it is).

    Attributes:
        notifications: Whether writes of other processes wake this process's
            workers (PostgreSQL's LISTEN/NOTIFY); without them, workers find other
            processes' work by polling.
        poll_interval: A worker's default seconds between looks for work when
            nothing woke it.
    """

    notifications: bool
    poll_interval: float


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
    parent_job_id: int | None = None
    parent_outcome_seq: int | None = None
    """For a child of ``ctx.call``: where in the parent's history its outcome goes."""
    unresolved_options: tuple[str, ...] = ()
    """Options (of :data:`WORKER_RESOLVED`) the worker that runs the job takes from
    its workflow's declaration: the job was enqueued where the workflow is not
    registered, without these options."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs a query or bulk verb touches; empty fields match everything.

    ``will_retry`` matches jobs whose :attr:`flowq.Job.will_retry` equals it: True,
    failed jobs with a next attempt scheduled; False, every other job (with
    ``statuses=(FAILED,)``: the failed jobs that gave up).
    """

    statuses: tuple[JobStatus, ...] = ()
    will_retry: bool | None = None
    workflow: str | None = None
    tags: TagQuery | None = None
    priority: int | None = None
    run_at: tuple[tuple[RunAtOp, datetime], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NewToken:
    """A token to store: its unguessable id, tags and optional deadline."""

    id: str
    tags: tuple[str, ...]
    timeout_at: datetime | None


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that a worker holds a claimed job; writes with a stale lease are refused."""

    job_id: int
    lease_id: int
    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobHeader:
    """What running a claimed job needs to know of it: its identity and run settings,
    as they are after the claim (``attempts`` counts the attempt now running).

    Nothing is decoded generically: the payload stays JSON text in
    :attr:`ClaimedJob.payload_json` for the engine to decode into the handler's type.
    """

    id: int
    workflow: str
    priority: int
    attempts: int
    max_attempts: int
    tags: tuple[str, ...]
    group: str | None
    timeout: timedelta | None
    force_kill_on_timeout: bool
    retry: RetryPolicy
    parent_job_id: int | None
    unresolved_options: tuple[str, ...] = ()
    """Options the worker takes from the workflow's declaration before running the job
    (see :meth:`Store.resolve_options`); empty once that is done."""
    unreadable: str | None = None
    """Why a stored setting of the job could not be read (a timeout or retry policy
    out of range, written by an older version or by hand), else None. Such a header
    carries defaults instead (no timeout, the default retry policy); the engine fails
    the job for good with this reason instead of running it."""


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job handed to a worker, with the lease its writes must carry."""

    job: JobHeader
    lease: Lease
    resumed: bool
    """True when the job continues after a wait instead of starting a new attempt."""
    payload_json: str
    """The payload as stored (JSON text), for decoding into the handler's type."""
    has_history: bool
    """True when durable calls are recorded for the job (read from the calls table at
    claim time, never inferred from the attempt count): the engine then loads them
    before the first durable call replays."""


@dataclass(frozen=True, slots=True)
class Completion:
    """A successful run to record: ``output`` is JSON text (or None)."""

    lease: Lease
    output: str | None


@dataclass(frozen=True, slots=True)
class Release:
    """A running job handed back unfinished (worker shutdown).

    ``new_attempt`` is True when the run started a new attempt, which is then not
    counted (the job is pending again with its attempt count restored).
    """

    lease: Lease
    new_attempt: bool


@dataclass(frozen=True, slots=True)
class GroupLimits:
    """How many jobs of one concurrency group may run at once, across all workers.

    ``default`` applies to every group not named in ``per_group``; ``None`` means
    groups without an explicit limit are unlimited.
    """

    default: int | None = None
    per_group: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in [("default", self.default), *self.per_group.items()]:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValidationError(
                    f"group limit {name!r} must be an integer >= 1, got {value!r}"
                )

    def limit(self, group: str) -> int | None:
        """The limit of ``group`` (None: unlimited)."""
        return self.per_group.get(group, self.default)


class Store(ScheduleVerbs, WorkerVerbs, Protocol):
    """Domain verbs over flowq's tables. Each call is one transaction.

    Times are read from :attr:`clock`, never from the database, so a fake clock
    moves stored time too. :attr:`capabilities` tells callers what to expect of it.
    """

    clock: Clock

    @property
    def capabilities(self) -> StoreCapabilities:
        """What callers may expect of this store (notifications, poll interval)."""

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

    async def get_job_by_key(self, idempotency_key: str) -> Job | None:
        """The job added with this idempotency key, or ``None``."""

    async def get_jobs(
        self, where: JobFilter, *, limit: int | None = None, cursor: int | None = None
    ) -> list[Job]:
        """Matching jobs, newest first (id descending), ids below ``cursor``."""

    async def get_job_events(self, job_id: int) -> list[JobEvent]:
        """The job's events, oldest first (``[]`` for an unknown job)."""

    async def cancel_job(self, job_id: int) -> bool:
        """Cancel an upcoming or running job and its dependants; False if finished.

        A running job's lease ends at once: its worker learns it at its next heartbeat
        (or notification) and cancels the handler; nothing it writes later is kept.
        """

    async def cancel_jobs(self, where: JobFilter) -> int:
        """Cancel every upcoming job matching ``where``; return the count."""

    async def retry_job(self, job_id: int) -> bool:
        """Make a failed job runnable now, granting an attempt; False if not failed."""

    async def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> bool:
        """Apply ``changes`` to a pending job; False if not pending or nothing changed."""

    async def edit_jobs(self, where: JobFilter, changes: Mapping[str, Any]) -> int:
        """Apply ``changes`` to every pending job matching ``where``; return the count."""

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        workflows: Collection[str] | None = None,
        groups: GroupLimits | None = None,
    ) -> list[ClaimedJob]:
        """Lock up to ``limit`` runnable jobs for ``worker_id``.

        Runnable: due, every prerequisite completed, workflow in ``workflows`` (if
        given) and a free slot in its concurrency group (``groups``), counted across
        every worker. Highest priority first, then oldest. A job resuming from a wait
        keeps its attempt count; any other claim starts a new attempt.
        """

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[bool]:
        """Mark jobs completed in one transaction; False for each stale lease."""

    async def heartbeat(self, leases: Sequence[Lease]) -> list[Lease]:
        """Refresh the locks of running jobs; return the leases no longer held
        (the job was cancelled or reclaimed)."""

    async def release_jobs(self, releases: Sequence[Release]) -> int:
        """Hand running jobs back as pending at once (worker shutdown); return the count."""

    async def next_ready_at(
        self, workflows: Collection[str] | None = None, *, after: datetime | None = None
    ) -> datetime | None:
        """When the earliest job not yet runnable becomes due (None: no such job): the
        earliest due time later than ``after`` (default: now). A worker passes the time
        of its last claim, so a job that came due since (the clock moved) is found."""

    async def listen(self, on_wake: Callable[[str], None], *, remote: bool = True) -> None:
        """Call ``on_wake(hint)`` whenever work may be waiting, until cancelled.

        Hints: ``"jobs"`` (something may be runnable) and ``"cancel:<id>"`` (a
        running job was cancelled). ``remote=False`` ignores other processes (pure
        polling, e.g. behind a transaction-pooling PgBouncer).
        """

    async def mark_unclaimed(
        self, workflows: Collection[str], reason: Callable[[str], str]
    ) -> dict[str, int]:
        """Set ``pending_reason`` to ``reason(workflow)`` on due pending jobs of
        workflows other than ``workflows`` that have none (the lowest ids first, at
        most :data:`UNCLAIMED_BATCH_SIZE`); return how many were marked per workflow
        (workflows with none marked left out)."""

    async def resolve_options(self, lease: Lease, values: Mapping[str, Any]) -> bool:
        """Write the declared values of a running job's unresolved options (fields of
        :data:`WORKER_RESOLVED`, already validated) and mark them all resolved, with an
        ``edited`` event (metadata ``{"fields": [...], "resolved_by": worker_id}``);
        False on a stale lease."""

    async def record_progress(self, lease: Lease, percent: int) -> bool:
        """Store a running job's progress with a ``progress`` event; False if not held."""

    async def prolong_job(self, lease: Lease, seconds: float | None) -> bool:
        """Renew a running job's lock and record a ``prolonged`` event (metadata
        ``{"seconds": seconds}``: the new deadline's distance, None without one)."""

    async def record_output(self, lease: Lease, output: str) -> bool:
        """Store a running job's output (JSON text) before it ends; False if not held."""

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

    async def load_history(self, job_id: int) -> list[RecordedCall]:
        """The job's recorded durable calls, in position order."""

    async def record_calls(
        self, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        """Store durable calls of running jobs (one transaction).

        Returns, for each call, the call as the database now holds it at that
        position: the given call when it was stored; the call recorded earlier when a
        successful record is already there (it is never replaced, and the caller must
        go on with it, not with its own); None where the lease is stale. A call
        recorded earlier as failed is replaced (the step ran again in a later attempt).
        """

    async def create_token(self, token: NewToken, lease: Lease | None) -> Token | None:
        """Store a waiting token (of the lease's job, or of no job); None on a stale lease."""

    async def get_token(self, token_id: str) -> Token | None:
        """The token, or None."""

    async def get_tokens(
        self, *, job_id: int | None = None, status: TokenStatus | None = None, limit: int = 100
    ) -> list[Token]:
        """Tokens (of a job, of a status), newest first, at most ``limit``."""

    async def settle_token(self, token_id: str) -> Token | None:
        """The token, marked timed out first if its deadline has passed while waiting."""

    async def complete_token(self, token_id: str, output: str) -> Token:
        """Complete a waiting token with ``output`` (JSON text) and wake its job.

        Raises:
            TokenError: The token is unknown, completed already, or timed out (also
                when its deadline passed without anyone noticing yet).
        """

    async def expire_timed_out_tokens(self) -> int:
        """Mark waiting tokens past their deadline timed out and wake their jobs."""

    async def health_report(self, stuck_after: timedelta) -> HealthReport:
        """The store's state for ``flowq doctor`` (jobs locked longer than
        ``stuck_after`` count as stuck)."""

    async def count_jobs(self, stuck_after: timedelta, *, exact_up_to: int) -> JobCounts:
        """Jobs per status (exact up to ``exact_up_to`` each, possibly estimated
        above), the oldest due job's wait, stuck jobs and waiting tokens, each read
        with bounded work (the dashboard's overview)."""

    async def reclaim_stuck_jobs(self, older_than: timedelta) -> int:
        """Return processing jobs locked longer than max(older_than, timeout) to pending."""

    async def reclaim_expired_leases(
        self, older_than: timedelta, *, limit: int, sparing: str | None = None
    ) -> int:
        """Take back up to ``limit`` processing jobs whose lock, refreshed by their
        worker's heartbeats, is older than ``older_than`` (their worker died), whatever
        their timeout, except jobs locked by worker ``sparing``; as
        :meth:`reclaim_stuck_jobs` otherwise. Running workers call it."""

    async def cleanup_old_jobs(
        self, older_than: timedelta, *, batch_size: int = CLEANUP_BATCH_SIZE
    ) -> int:
        """Delete finished jobs that finished at or before now - ``older_than``, in
        batches of ``batch_size`` (one transaction each); return the count."""

    async def cleanup_old_job_events(
        self, older_than: timedelta, *, batch_size: int = CLEANUP_BATCH_SIZE
    ) -> int:
        """Delete events written at or before now - ``older_than``, in batches of
        ``batch_size``; return the count."""
