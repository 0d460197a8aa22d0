"""What ``flowq doctor`` shows: a store's state at a glance (a record; each store
fills it with one look)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowq.models import JobStatus

__all__ = ["EXACT_UP_TO", "HealthReport", "JobCounts"]

EXACT_UP_TO = 10_000
"""Above this many jobs of a status, a store may estimate the count (PostgreSQL does)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """A store's state.

    Attributes:
        schema_version: The applied migration version (None: the store has no schema).
        latest_schema_version: The version this flowq needs (None: no schema).
        jobs_by_status: Job counts by status (statuses without jobs left out).
        retrying_jobs: Failed jobs that will run again (``next_attempt_at`` set).
        gave_up_jobs: Failed jobs that will not run again unless retried by hand
            (derived: the failed count less ``retrying_jobs``).
        oldest_due_seconds: How long the longest-waiting due pending job has waited
            past its ready time (None: no due pending job).
        stuck_jobs: Processing jobs whose lock is older than the report's threshold.
        waiting_tokens: Tokens nobody completed yet.
        schedules_by_status: Cron schedule counts by status.
        table_bytes: Bytes on disk per flowq table (PostgreSQL), or of the whole
            database file (SQLite, under ``"database"``); empty in memory.
    """

    schema_version: int | None
    latest_schema_version: int | None
    jobs_by_status: dict[str, int]
    retrying_jobs: int
    oldest_due_seconds: float | None
    stuck_jobs: int
    waiting_tokens: int
    schedules_by_status: dict[str, int]
    table_bytes: dict[str, int] = field(default_factory=dict)
    gave_up_jobs: int = field(init=False)

    def __post_init__(self) -> None:
        failed = self.jobs_by_status.get(JobStatus.FAILED.value, 0)
        object.__setattr__(self, "gave_up_jobs", failed - self.retrying_jobs)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCounts:
    """The cheap figures of a store's state (what the dashboard's overview shows).

    Unlike :class:`HealthReport`, every figure is read with bounded work: a store may
    count the jobs of a status exactly only up to ``exact_up_to`` and estimate above.

    Attributes:
        by_status: Jobs per status (statuses without jobs left out).
        estimated: The statuses of ``by_status`` whose figure is an estimate: more than
            ``exact_up_to`` jobs have that status, and the figure is the database's
            statistics (PostgreSQL's planner), never less than ``exact_up_to + 1``.
        exact_up_to: Where counting stopped.
        oldest_due_seconds: How long the longest-waiting due pending job has waited
            past its ready time (None: no due pending job).
        stuck_jobs: Processing jobs whose lock is older than the threshold asked for.
        waiting_tokens: Tokens nobody completed yet.
    """

    by_status: dict[str, int]
    estimated: frozenset[str]
    exact_up_to: int
    oldest_due_seconds: float | None
    stuck_jobs: int
    waiting_tokens: int
