"""The records users see: jobs, events, tag queries, retry policies."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from flowq import validate
from flowq.durations import Duration, parse_duration
from flowq.errors import ValidationError

__all__ = [
    "BatchDepRef",
    "CronSchedule",
    "DependsOn",
    "ErrorEntry",
    "EventType",
    "FailureReason",
    "Job",
    "JobEvent",
    "JobStatus",
    "RetryPolicy",
    "ScheduleStatus",
    "StepRecord",
    "TagMode",
    "TagQuery",
    "Token",
    "TokenResult",
    "TokenStatus",
    "batch_dep_ref",
    "new_token_id",
]


class JobStatus(enum.StrEnum):
    """Where a job is in its life (see docs/jobs.md for the transitions)."""

    PENDING = "pending"
    PROCESSING = "processing"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventType(enum.StrEnum):
    """Kinds of rows in a job's event log."""

    ADDED = "added"
    PROCESSING = "processing"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"
    CANCELLED = "cancelled"
    EDITED = "edited"
    PROLONGED = "prolonged"
    RECLAIMED = "reclaimed"
    PROGRESS = "progress"


class FailureReason(enum.StrEnum):
    """Why a job's last attempt failed."""

    HANDLER_ERROR = "handler_error"
    TIMEOUT = "timeout"
    NO_HANDLER = "no_handler"
    NONDETERMINISM = "nondeterminism"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEntry:
    """One failed attempt in a job's ``error_history``.

    ``traceback`` is the formatted traceback of the exception that failed it (cut to
    64 KiB), None when no exception was raised (a timeout, a lost worker...).
    """

    message: str
    type: str
    at: datetime
    attempt: int
    traceback: str | None = None


_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True, init=False)
class RetryPolicy:
    """How long a failed job waits before its next attempt.

    The wait after failed attempt ``n`` (1-based) is ``delay * 2**(n-1)`` with
    ``backoff`` (else ``delay``), capped at ``max_delay``. With ``jitter`` the wait
    is drawn uniformly from the upper half of that, ``[w/2, w]``, so that jobs that
    failed together do not retry together.

    Args:
        delay: The first wait.
        backoff: Double the wait after every failed attempt.
        max_delay: The longest wait.
        jitter: Randomize each wait inside ``[w/2, w]`` (default: with ``backoff``;
            a fixed delay is exact unless ``jitter=True``).
    """

    delay: timedelta
    backoff: bool
    max_delay: timedelta
    jitter: bool

    def __init__(
        self,
        delay: Duration = 10,
        *,
        backoff: bool = True,
        max_delay: Duration = 3600,
        jitter: bool | None = None,
    ) -> None:
        object.__setattr__(self, "delay", parse_duration(delay, name="retry delay"))
        object.__setattr__(self, "max_delay", parse_duration(max_delay, name="retry max delay"))
        object.__setattr__(self, "backoff", validate.flag(backoff, "RetryPolicy backoff"))
        object.__setattr__(
            self,
            "jitter",
            validate.flag(backoff if jitter is None else jitter, "RetryPolicy jitter"),
        )

    def wait_after(self, attempt: int, random_fraction: float) -> timedelta:
        """The wait after failed attempt ``attempt``, given a random number in [0, 1)."""
        wait = min(self.delay, self.max_delay)
        if self.backoff and attempt > 1:
            # Double only while under the cap: no product is formed that could overflow
            # (the number of doublings needed is bounded by the cap's bit length).
            cap = self.max_delay // _MICROSECOND
            first = self.delay // _MICROSECOND
            doublings = min(attempt - 1, cap.bit_length() + 1)
            wait = timedelta(microseconds=min(first << doublings, cap))
        if self.jitter:
            wait = wait * (0.5 + 0.5 * random_fraction)
        return wait


TagMode = Literal["all", "any", "exact", "none"]


@dataclass(frozen=True, slots=True, init=False)
class TagQuery:
    """A filter on job tags.

    Modes: ``all`` (the job has every value), ``any`` (at least one), ``exact``
    (the job's tags are exactly these), ``none`` (none of them; untagged jobs match).
    """

    values: tuple[str, ...]
    mode: TagMode

    def __init__(self, values: Sequence[str] | str, mode: TagMode = "all") -> None:
        items = (values,) if isinstance(values, str) else tuple(values)
        if mode not in get_args(TagMode):
            raise ValidationError(
                f"TagQuery mode must be one of all, any, exact, none; got {mode!r}"
            )
        for item in items:
            if not isinstance(item, str):
                raise ValidationError(f"tags must be strings, got {item!r}")
            validate.text(item, "a tag in a TagQuery")
        object.__setattr__(self, "values", tuple(dict.fromkeys(items)))
        object.__setattr__(self, "mode", mode)


@dataclass(frozen=True, slots=True)
class BatchDepRef:
    """A reference to the ``index``-th job of the same ``add_jobs`` batch."""

    index: int


def batch_dep_ref(index: int) -> BatchDepRef:
    """Name the ``index``-th job (0-based) of the same ``add_jobs`` call in ``depends_on``."""
    return BatchDepRef(validate.integer(index, "batch_dep_ref's index", minimum=0))


@dataclass(frozen=True, slots=True, init=False)
class DependsOn:
    """Prerequisites of a job: job ids, batch references and tags.

    ``tags`` resolve, when the job is added, to every unfinished job (pending,
    processing, waiting, or failed and due to retry) that carries all of those tags.
    """

    job_ids: tuple[int | BatchDepRef, ...]
    tags: tuple[str, ...]

    def __init__(self, job_ids: Sequence[int | BatchDepRef] = (), tags: Sequence[str] = ()) -> None:
        object.__setattr__(self, "job_ids", tuple(job_ids))
        object.__setattr__(self, "tags", tuple(tags))


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One run of a workflow, as stored. All timestamps are aware UTC datetimes.

    ``payload`` and ``output`` are the decoded JSON values (dicts, lists, strings,
    numbers); ``next_attempt_at`` is set while a failed job waits for its next attempt
    and ``None`` once it failed permanently.

    ``will_retry`` is derived, not stored: True for a ``failed`` job that has a next
    attempt scheduled (it retries at ``next_attempt_at``), False for every other job.
    A ``failed`` job with ``will_retry`` False has given up: it runs again only if
    someone calls ``retry_job``. ``get_jobs(will_retry=...)`` filters on it.
    """

    id: int
    workflow: str
    payload: Any
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    next_attempt_at: datetime | None
    tags: tuple[str, ...]
    idempotency_key: str | None
    group: str | None
    depends_on: tuple[int, ...]
    timeout: timedelta | None
    force_kill_on_timeout: bool
    retry: RetryPolicy
    progress: int | None
    output: Any
    error_history: tuple[ErrorEntry, ...]
    failure_reason: FailureReason | None
    pending_reason: str | None
    wait_until: datetime | None
    wait_token_id: str | None
    dead_letter: str | None
    dead_letter_job_id: int | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    last_failed_at: datetime | None
    last_retried_at: datetime | None
    last_cancelled_at: datetime | None
    locked_by: str | None = None
    locked_at: datetime | None = None
    parent_job_id: int | None = None
    unresolved_options: tuple[str, ...] = ()
    """Options the job's workflow declares that the first worker to run it fills in
    (``timeout``, ``max_attempts``, ``retry``, ``dead_letter``,
    ``force_kill_on_timeout``): the job was enqueued by name where the workflow is not
    registered, without them. Empty for every other job, and once a worker ran it."""
    will_retry: bool = field(init=False)

    def __post_init__(self) -> None:
        will_retry = self.status == JobStatus.FAILED and self.next_attempt_at is not None
        object.__setattr__(self, "will_retry", will_retry)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """One row of a job's event log, written in the transaction of the change."""

    id: int
    job_id: int
    event_type: EventType
    at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


class TokenStatus(enum.StrEnum):
    """Where a token is in its life."""

    WAITING = "waiting"
    COMPLETED = "completed"
    TIMED_OUT = "timed_out"


def new_token_id() -> str:
    """A new token's id: 192 random bits, URL-safe, never starting with ``-`` (so that
    a command line never takes it for an option)."""
    while True:
        token_id = secrets.token_urlsafe(24)
        if not token_id.startswith("-"):
            return token_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """A waitpoint someone completes later (human in the loop, a webhook...).

    ``id`` is unguessable (at least 128 random bits); hand it to whoever must answer.
    """

    id: str
    job_id: int | None
    status: TokenStatus
    output: Any
    tags: tuple[str, ...]
    timeout_at: datetime | None
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class TokenResult:
    """What ``ctx.wait_for_token`` returns: the output, or why there is none."""

    ok: bool
    output: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
    """One recorded durable call of a job (a step, a wait, a token...), in call order.

    ``output`` is the decoded result; ``error`` is ``{"message", "type"}`` for a step
    that failed, with ``"args"`` when the exception's arguments were stored.
    Internal calls have names starting with ``@`` (``@timer``, ``@now``).
    """

    seq: int
    name: str
    attempt: int
    output: Any
    error: dict[str, Any] | None
    started_at: datetime
    completed_at: datetime


class ScheduleStatus(enum.StrEnum):
    """Whether a cron schedule enqueues its ticks."""

    ACTIVE = "active"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class CronSchedule:
    """A stored cron schedule (``app.add_cron_job``, or ``@flowq.schedule`` saved by a
    worker).

    Attributes:
        id: The schedule's id.
        schedule_name: Its unique name.
        cron_expression: 5 fields or an alias (``@daily``...), normalised.
        workflow: The name of the workflow each tick starts.
        payload: The payload of every job it starts.
        timezone: The IANA zone its wall-clock times are read in.
        allow_overlap: Whether a tick starts a job while the previous one is unfinished.
        catch_up: ``"latest"``, ``"all"`` or ``"none"``: what ticks missed while no
            worker ran do.
        status: Active or paused.
        next_run_at: The next tick (UTC).
        last_enqueued_at: When its last job was enqueued (the tick's time).
        last_job_id: The id of its last job.
        last_skipped_at: The last tick skipped because the previous job was unfinished.
        job_options: The options of every job it starts (as ``start()`` takes them).
        created_at: When it was stored.
        updated_at: When it last changed.
    """

    id: int
    schedule_name: str
    cron_expression: str
    workflow: str
    payload: Any
    timezone: str
    allow_overlap: bool
    catch_up: Literal["latest", "all", "none"]
    status: ScheduleStatus
    next_run_at: datetime
    last_enqueued_at: datetime | None
    last_job_id: int | None
    last_skipped_at: datetime | None
    job_options: dict[str, Any]
    created_at: datetime
    updated_at: datetime
