"""Stored values <-> records: shared by the SQL and in-memory stores."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec

from flowq import codec
from flowq.errors import TokenError, ValidationError
from flowq.models import (
    ErrorEntry,
    FailureReason,
    Job,
    JobStatus,
    RetryPolicy,
    StepRecord,
    Token,
    TokenStatus,
)
from flowq.replay import RecordedCall
from flowq.store.base import EDITABLE_FIELDS, ClaimedJob, GroupLimits, Lease, NewJob, NewToken

__all__ = [
    "EVENT_FIELD_OF_COLUMN",
    "UNCLAIMED_BATCH_SIZE",
    "UNLOCKED",
    "as_stored",
    "call_row",
    "cancelled_values",
    "changed_columns",
    "check_completable",
    "child_wait_id",
    "column_values",
    "count_new_jobs",
    "dead_letter_job",
    "dead_letter_payload",
    "decode_errors",
    "decode_retry",
    "edited_fields",
    "encode_errors",
    "encode_retry",
    "failed_metadata",
    "failure_values",
    "fit_groups",
    "from_ms",
    "full_groups",
    "is_stuck",
    "is_upcoming",
    "job_from_row",
    "lost_worker_error",
    "new_job_row",
    "processing_metadata",
    "reclaimed_metadata",
    "recorded_call",
    "released_metadata",
    "retried_values",
    "step_record",
    "to_ms",
    "token_from_row",
    "token_row",
]

EVENT_FIELD_OF_COLUMN = {"group_name": "group", "timeout_ms": "timeout"}
"""Columns whose Job field has another name (used in ``edited`` events)."""
_COLUMN_OF_FIELD = {field: column for column, field in EVENT_FIELD_OF_COLUMN.items()}

UNLOCKED: dict[str, Any] = {"locked_by": None, "locked_at": None}
"""Column values of a job no worker holds."""

UNCLAIMED_BATCH_SIZE = 100
"""At most this many jobs get a ``pending_reason`` per ``mark_unclaimed`` call."""


def to_ms(value: timedelta | None) -> int | None:
    """A duration as whole milliseconds (at least 1), for storage."""
    return None if value is None else max(1, round(value.total_seconds() * 1000))


def from_ms(value: int | None) -> timedelta | None:
    """Milliseconds back to a duration."""
    return None if value is None else timedelta(milliseconds=value)


def encode_retry(policy: RetryPolicy) -> str:
    """A retry policy as JSON text."""
    return codec.encode(
        {
            "delay_ms": to_ms(policy.delay),
            "backoff": policy.backoff,
            "max_delay_ms": to_ms(policy.max_delay),
            "jitter": policy.jitter,
        },
        what="retry policy",
    )


@functools.lru_cache(maxsize=256)
def decode_retry(text: str) -> RetryPolicy:
    """JSON text back to a retry policy (cached: policies are immutable and repeat)."""
    data = codec.decode(text)
    return RetryPolicy(
        timedelta(milliseconds=data["delay_ms"]),
        backoff=data["backoff"],
        max_delay=timedelta(milliseconds=data["max_delay_ms"]),
        jitter=data["jitter"],
    )


def encode_errors(errors: tuple[ErrorEntry, ...]) -> str:
    """An error history as JSON text."""
    return msgspec.json.encode(errors).decode()


def decode_errors(text: str) -> tuple[ErrorEntry, ...]:
    """JSON text back to an error history."""
    return msgspec.json.decode(text, type=tuple[ErrorEntry, ...])


def count_new_jobs(jobs: Sequence[NewJob], existing_keys: Mapping[str | None, int]) -> int:
    """How many of ``jobs`` will be inserted (not duplicates of stored or earlier keys)."""
    keys = {job.idempotency_key for job in jobs if job.idempotency_key is not None}
    return sum(1 for job in jobs if job.idempotency_key is None) + len(keys - set(existing_keys))


def is_upcoming(row: Mapping[Any, Any]) -> bool:
    """Whether a job is still to run: pending, waiting, or failed and due to retry.

    Upcoming jobs can be cancelled; ``finished_at`` is NULL exactly for jobs that
    are upcoming or processing.
    """
    return row["finished_at"] is None and row["status"] != JobStatus.PROCESSING


def is_stuck(row: Mapping[Any, Any], older_than: timedelta, now: datetime) -> bool:
    """Whether a processing job's lock is older than max(``older_than``, its timeout)."""
    limit = max(older_than, from_ms(row["timeout_ms"]) or timedelta(0))
    return row["locked_at"] is not None and row["locked_at"] <= now - limit


def reclaimed_metadata(row: Mapping[Any, Any]) -> dict[str, Any]:
    """Metadata of the ``reclaimed`` event."""
    return {
        "worker_id": row["locked_by"],
        "attempt": row["attempts"],
        "requeued": row["attempts"] < row["max_attempts"],
    }


def lost_worker_error(row: Mapping[Any, Any], now: datetime) -> ErrorEntry:
    """The error recorded when a reclaimed job had used its last attempt."""
    return ErrorEntry(
        message=(
            f"worker {row['locked_by']!r} stopped renewing its lock (taken at "
            f"{row['locked_at'].isoformat()}); the job was reclaimed with no attempts left"
        ),
        type="WorkerLost",
        at=now,
        attempt=row["attempts"],
    )


def retried_values(row: Mapping[Any, Any], now: datetime) -> dict[str, Any]:
    """Column values of a failed job made runnable again by ``retry_job``."""
    return {
        "status": JobStatus.PENDING.value,
        "ready_at": now,
        "next_attempt_at": None,
        "max_attempts": max(row["max_attempts"], row["attempts"] + 1),
        "last_retried_at": now,
        "finished_at": None,
        "updated_at": now,
    }


def new_job_row(job: NewJob, job_id: int, now: datetime) -> dict[str, Any]:
    """Column values of a freshly added job (``run_at`` None means ``now``)."""
    run_at = now if job.run_at is None else job.run_at
    return {
        "id": job_id,
        "workflow": job.workflow,
        "payload": job.payload,
        "status": JobStatus.PENDING.value,
        "priority": job.priority,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "run_at": run_at,
        "ready_at": run_at,
        "next_attempt_at": None,
        "tags": job.tags,
        "idempotency_key": job.idempotency_key,
        "group_name": job.group,
        "timeout_ms": to_ms(job.timeout),
        "force_kill_on_timeout": job.force_kill_on_timeout,
        "retry": encode_retry(job.retry),
        "dead_letter": job.dead_letter,
        "dead_letter_job_id": None,
        "progress": None,
        "output": None,
        "error_history": "[]",
        "failure_reason": None,
        "pending_reason": None,
        "wait_until": None,
        "wait_token_id": None,
        "lease_id": 0,
        "locked_by": None,
        "locked_at": None,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "completed_at": None,
        "last_failed_at": None,
        "last_retried_at": None,
        "last_cancelled_at": None,
        "finished_at": None,
        "parent_job_id": job.parent_job_id,
        "parent_outcome_seq": job.parent_outcome_seq,
    }


def job_from_row(row: Mapping[Any, Any], depends_on: tuple[int, ...]) -> Job:
    """A :class:`Job` from a row of ``flowq_jobs`` (column names as keys)."""
    reason = row["failure_reason"]
    return Job(
        id=row["id"],
        workflow=row["workflow"],
        payload=codec.decode(row["payload"]),
        status=JobStatus(row["status"]),
        priority=row["priority"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=row["run_at"],
        next_attempt_at=row["next_attempt_at"],
        tags=tuple(row["tags"]),
        idempotency_key=row["idempotency_key"],
        group=row["group_name"],
        depends_on=depends_on,
        timeout=from_ms(row["timeout_ms"]),
        force_kill_on_timeout=bool(row["force_kill_on_timeout"]),
        retry=decode_retry(row["retry"]),
        progress=row["progress"],
        output=codec.decode(row["output"]),
        error_history=decode_errors(row["error_history"]),
        failure_reason=FailureReason(reason) if reason is not None else None,
        pending_reason=row["pending_reason"],
        wait_until=row["wait_until"],
        wait_token_id=row["wait_token_id"],
        dead_letter=row["dead_letter"],
        dead_letter_job_id=row["dead_letter_job_id"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        last_failed_at=row["last_failed_at"],
        last_retried_at=row["last_retried_at"],
        last_cancelled_at=row["last_cancelled_at"],
        locked_by=row["locked_by"],
        locked_at=row["locked_at"],
        parent_job_id=row["parent_job_id"],
    )


def dead_letter_payload(row: Mapping[Any, Any], error: ErrorEntry, reason: FailureReason) -> str:
    """The payload of the dead-letter job for a permanently failed job."""
    return codec.encode(
        {
            "job_id": row["id"],
            "workflow": row["workflow"],
            "payload": codec.decode(row["payload"]),
            "attempts": row["attempts"],
            "failure_reason": reason.value,
            "error": {"message": error.message, "type": error.type, "at": error.at},
        },
        what="dead-letter payload",
    )


def dead_letter_job(
    row: Mapping[Any, Any], error: ErrorEntry, reason: FailureReason, now: datetime
) -> NewJob:
    """The job enqueued on the dead-letter workflow of a permanently failed ``row``."""
    from flowq.options import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY

    return NewJob(
        workflow=row["dead_letter"],
        payload=dead_letter_payload(row, error, reason),
        priority=row["priority"],
        max_attempts=DEFAULT_MAX_ATTEMPTS,
        run_at=now,
        retry=DEFAULT_RETRY,
        timeout=None,
        force_kill_on_timeout=False,
        tags=(),
        idempotency_key=None,
        group=None,
        depends_on=(),
        depends_on_tags=(),
        dead_letter=None,
    )


def cancelled_values(now: datetime) -> dict[str, Any]:
    """Column values of a job being cancelled."""
    return {
        "status": JobStatus.CANCELLED.value,
        "ready_at": None,
        "next_attempt_at": None,
        "wait_until": None,
        "wait_token_id": None,
        "pending_reason": None,
        "last_cancelled_at": now,
        "finished_at": now,
        "updated_at": now,
    }


def failure_values(
    row: Mapping[Any, Any],
    error: ErrorEntry,
    reason: FailureReason,
    retry_at: datetime | None,
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    """Column values of a failed attempt, and whether the job will retry.

    The job retries at ``retry_at`` when that is set and attempts remain; otherwise
    it has failed permanently.
    """
    will_retry = retry_at is not None and row["attempts"] < row["max_attempts"]
    next_at = retry_at if will_retry else None
    history = (*decode_errors(row["error_history"]), error)
    values = {
        "status": JobStatus.FAILED.value,
        "failure_reason": reason.value,
        "error_history": encode_errors(history),
        "last_failed_at": now,
        "next_attempt_at": next_at,
        "ready_at": next_at,
        "finished_at": None if will_retry else now,
        "updated_at": now,
        **UNLOCKED,
    }
    return values, will_retry


def failed_metadata(
    row: Mapping[Any, Any],
    error: ErrorEntry,
    reason: FailureReason,
    values: Mapping[str, Any],
    dead_letter_job_id: int | None,
) -> dict[str, Any]:
    """Metadata of the ``failed`` event."""
    next_at = values["next_attempt_at"]
    return {
        "message": error.message,
        "type": error.type,
        "attempt": row["attempts"],
        "reason": reason.value,
        "will_retry": next_at is not None,
        "retry_at": next_at.isoformat() if next_at is not None else None,
        "dead_letter_job_id": dead_letter_job_id,
    }


def column_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Checked ``edit_job`` changes (Job field names) as column values.

    Raises:
        ValidationError: A field is not in :data:`flowq.store.base.EDITABLE_FIELDS`.
    """
    unknown = sorted(set(changes) - EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(
            f"edit_job cannot change {', '.join(unknown)}; editable: "
            f"{', '.join(sorted(EDITABLE_FIELDS))}"
        )
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "timeout":
            value = to_ms(value)
        elif name == "retry":
            value = encode_retry(value)
        elif name == "tags":
            value = tuple(value)
        values[_COLUMN_OF_FIELD.get(name, name)] = value
    if "run_at" in values:
        values["ready_at"] = values["run_at"]
    return values


def changed_columns(row: Mapping[Any, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``values`` that differs from ``row`` (lists compare as tuples)."""

    def stored(value: Any) -> Any:
        return tuple(value) if isinstance(value, list | tuple) else value

    changed = {c: v for c, v in values.items() if c != "ready_at" and stored(row[c]) != stored(v)}
    if "run_at" in changed:
        changed["ready_at"] = changed["run_at"]
    return changed


def edited_fields(columns: Mapping[str, Any]) -> list[str]:
    """The Job field names of changed columns, for the ``edited`` event."""
    return sorted(EVENT_FIELD_OF_COLUMN.get(c, c) for c in columns if c != "ready_at")


def processing_metadata(claimed: ClaimedJob) -> dict[str, Any]:
    """Metadata of the ``processing`` event of a claim."""
    return {
        "worker_id": claimed.lease.worker_id,
        "attempt": claimed.job.attempts,
        "resumed": claimed.resumed,
    }


def released_metadata(worker_id: str, attempts: int) -> dict[str, Any]:
    """Metadata of the ``reclaimed`` event of a job its worker handed back at shutdown."""
    return {"worker_id": worker_id, "attempt": attempts, "requeued": True, "reason": "released"}


RowT = TypeVar("RowT")


def full_groups(taken: Mapping[str, int], groups: GroupLimits) -> list[str]:
    """The groups (sorted) whose running jobs in ``taken`` reached their limit."""
    return sorted(
        group
        for group, count in taken.items()
        if (limit := groups.limit(group)) is not None and count >= limit
    )


def fit_groups(
    candidates: Sequence[RowT], taken: dict[str, int], groups: GroupLimits
) -> list[RowT]:
    """Keep candidates (in order) while their group has room; count them in ``taken``.

    ``taken`` holds the running jobs per group and grows with every candidate kept.
    Each candidate has a ``group_name`` attribute; groups without a limit always have
    room.
    """
    kept = []
    for row in candidates:
        group: str | None = getattr(row, "group_name", None)
        limit = None if group is None else groups.limit(group)
        if group is not None and limit is not None:
            if taken.get(group, 0) >= limit:
                continue
            taken[group] = taken.get(group, 0) + 1
        kept.append(row)
    return kept


def recorded_call(row: Mapping[Any, Any]) -> RecordedCall:
    """A :class:`RecordedCall` from a row of ``flowq_steps``."""
    return RecordedCall(
        seq=row["seq"],
        name=row["name"],
        attempt=row["attempt"],
        output=row["output"],
        error=row["error"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
    )


def as_stored(
    calls: Sequence[tuple[Lease, RecordedCall]],
    held: Mapping[tuple[int, int], RecordedCall | None],
) -> list[RecordedCall | None]:
    """What ``record_calls`` returns: each call as the database holds it.

    ``held`` maps the (job id, position) of every call whose lease is held to the
    successful record that was already there, or to None when the call was stored.
    """
    stored: list[RecordedCall | None] = []
    for lease, call in calls:
        key = (lease.job_id, call.seq)
        if key not in held:
            stored.append(None)
        else:
            stored.append(held[key] or call)
    return stored


def call_row(job_id: int, call: RecordedCall) -> dict[str, Any]:
    """Column values of a recorded call."""
    return {
        "job_id": job_id,
        "seq": call.seq,
        "name": call.name,
        "attempt": call.attempt,
        "output": call.output,
        "error": call.error,
        "started_at": call.started_at,
        "completed_at": call.completed_at,
    }


def token_row(token: NewToken, job_id: int | None, now: datetime) -> dict[str, Any]:
    """Column values of a new waiting token."""
    return {
        "id": token.id,
        "job_id": job_id,
        "status": TokenStatus.WAITING.value,
        "output": None,
        "tags": token.tags,
        "timeout_at": token.timeout_at,
        "created_at": now,
        "completed_at": None,
    }


def token_from_row(row: Mapping[Any, Any]) -> Token:
    """A :class:`Token` from a row of ``flowq_tokens``."""
    return Token(
        id=row["id"],
        job_id=row["job_id"],
        status=TokenStatus(row["status"]),
        output=codec.decode(row["output"]),
        tags=tuple(row["tags"]),
        timeout_at=row["timeout_at"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
    )


def check_completable(token: Token, now: datetime) -> None:
    """Raise :class:`TokenError` unless ``token`` is waiting and not past its deadline."""
    if token.status is TokenStatus.COMPLETED:
        raise TokenError(f"token {token.id!r} was completed already")
    timed_out = token.timeout_at is not None and token.timeout_at <= now
    if token.status is TokenStatus.TIMED_OUT or timed_out:
        raise TokenError(
            f"token {token.id!r} timed out at {token.timeout_at}; it can no longer be completed"
        )


def child_wait_id(child_id: int) -> str:
    """What a parent waiting for a child's result stores as ``wait_token_id``."""
    return f"child:{child_id}"


def step_record(call: RecordedCall) -> StepRecord:
    """The public view of a recorded call (output and error decoded)."""
    return StepRecord(
        seq=call.seq,
        name=call.name,
        attempt=call.attempt,
        output=codec.decode(call.output),
        error=codec.decode(call.error),
        started_at=call.started_at,
        completed_at=call.completed_at,
    )
