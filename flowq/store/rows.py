"""Row mapping: records <-> the column values of flowq's tables (pure, no I/O).

Rows are mappings of column names to values as SQLAlchemy reads and writes them
(aware UTC datetimes, tags as tuples, JSON as text). The SQL stores and the
in-memory store (whose tables are dicts of such rows) share every function here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from flowq import codec
from flowq.errors import ValidationError
from flowq.models import (
    ErrorEntry,
    EventType,
    FailureReason,
    Job,
    JobEvent,
    JobStatus,
    RetryPolicy,
    StepRecord,
    Token,
    TokenStatus,
)
from flowq.replay import RecordedCall
from flowq.store.base import (
    DEFAULT_RETRY,
    EDITABLE_FIELDS,
    WORKER_RESOLVED,
    JobHeader,
    Lease,
    NewJob,
    NewToken,
)

__all__ = [
    "CALL_COLUMNS",
    "CLAIMED_COLUMNS",
    "EVENT_FIELD_OF_COLUMN",
    "JOB_COLUMNS",
    "as_stored",
    "call_row",
    "changed_columns",
    "column_values",
    "decode_errors",
    "decode_retry",
    "edited_fields",
    "encode_errors",
    "encode_retry",
    "event_from_row",
    "event_metadata",
    "from_ms",
    "header_from_row",
    "job_from_row",
    "new_job_row",
    "options_from_mask",
    "options_mask",
    "recorded_call",
    "step_record",
    "to_ms",
    "token_from_row",
    "token_row",
]

JOB_COLUMNS: Final = (
    "id", "workflow", "payload", "status", "priority", "attempts", "max_attempts", "run_at",
    "ready_at", "next_attempt_at", "tags", "idempotency_key", "group_name", "timeout_ms",
    "force_kill_on_timeout", "retry", "dead_letter", "dead_letter_job_id", "progress", "output",
    "error_history", "failure_reason", "pending_reason", "wait_until", "wait_token_id",
    "lease_id", "locked_by", "locked_at", "created_at", "updated_at", "started_at",
    "completed_at", "last_failed_at", "last_retried_at", "last_cancelled_at", "finished_at",
    "parent_job_id", "parent_outcome_seq", "blocked_by", "has_dependants",
    "unresolved_options",
)  # fmt: skip
"""Every column of ``flowq_jobs``, in table order."""

CLAIMED_COLUMNS: Final = (
    "id", "workflow", "payload", "priority", "attempts", "max_attempts", "tags", "group_name",
    "timeout_ms", "force_kill_on_timeout", "retry", "parent_job_id", "lease_id",
    "unresolved_options",
)  # fmt: skip
"""The columns a claim reads back (:func:`header_from_row`, the payload and the lease)."""

CALL_COLUMNS: Final = ("seq", "name", "attempt", "output", "error", "started_at", "completed_at")
"""The columns of ``flowq_steps`` a :class:`RecordedCall` holds (besides ``job_id``)."""

EVENT_FIELD_OF_COLUMN: Final = {"group_name": "group", "timeout_ms": "timeout"}
"""Columns whose Job field has another name (used in ``edited`` events)."""
_COLUMN_OF_FIELD = {field: column for column, field in EVENT_FIELD_OF_COLUMN.items()}


# -- values -------------------------------------------------------------------------


def to_ms(value: timedelta | None) -> int | None:
    """A duration as whole milliseconds (at least 1), for storage."""
    return None if value is None else max(1, round(value.total_seconds() * 1000))


def from_ms(value: int | None) -> timedelta | None:
    """Milliseconds back to a duration."""
    return None if value is None else timedelta(milliseconds=value)


def options_mask(names: Iterable[str]) -> int:
    """Options of :data:`WORKER_RESOLVED` as the bit set ``unresolved_options`` stores
    (bit ``i`` for the ``i``-th; other names are ignored)."""
    chosen = set(names)
    return sum(1 << i for i, name in enumerate(WORKER_RESOLVED) if name in chosen)


def options_from_mask(mask: int) -> tuple[str, ...]:
    """The option names of an ``unresolved_options`` bit set."""
    if not mask:
        return ()
    return tuple(name for i, name in enumerate(WORKER_RESOLVED) if mask & (1 << i))


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


def event_metadata(metadata: Mapping[Any, Any] | None) -> str | None:
    """Event metadata as stored: JSON text, or None when there is none."""
    return codec.encode(dict(metadata), what="event metadata") if metadata else None


# -- jobs ---------------------------------------------------------------------------


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
        "blocked_by": 0,
        "has_dependants": False,
        "unresolved_options": options_mask(job.unresolved_options),
    }


def job_from_row(row: Mapping[Any, Any], depends_on: tuple[int, ...]) -> Job:
    """A :class:`Job` from a row of ``flowq_jobs`` (payload, output and errors decoded)."""
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
        unresolved_options=options_from_mask(row["unresolved_options"]),
    )


def header_from_row(row: Mapping[Any, Any]) -> JobHeader:
    """A :class:`JobHeader` from the :data:`CLAIMED_COLUMNS` of a row (nothing decoded
    but the retry policy, which is cached).

    Never raises for a stored timeout or retry policy that cannot be read (out of
    range, malformed): the header then says why in ``unreadable``, with defaults in
    their place, so that one bad row does not fail the claim of the others.
    """
    unreadable = None
    try:
        timeout = from_ms(row["timeout_ms"])
    except (OverflowError, ValueError, TypeError) as exc:
        timeout = None
        unreadable = f"its stored timeout ({row['timeout_ms']!r} ms) cannot be read: {exc}"
    try:
        retry = decode_retry(row["retry"])
    except Exception as exc:  # out of range, not JSON, keys missing...
        retry = DEFAULT_RETRY
        reason = f"its stored retry policy cannot be read: {type(exc).__name__}: {exc}"
        unreadable = reason if unreadable is None else f"{unreadable}; {reason}"
    return JobHeader(
        id=row["id"],
        workflow=row["workflow"],
        priority=row["priority"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        tags=tuple(row["tags"]),
        group=row["group_name"],
        timeout=timeout,
        force_kill_on_timeout=bool(row["force_kill_on_timeout"]),
        retry=retry,
        parent_job_id=row["parent_job_id"],
        unresolved_options=options_from_mask(row["unresolved_options"]),
        unreadable=unreadable,
    )


def event_from_row(row: Mapping[Any, Any]) -> JobEvent:
    """A :class:`JobEvent` from a row of ``flowq_job_events`` (metadata decoded)."""
    metadata = row["metadata"]
    return JobEvent(
        id=row["id"],
        job_id=row["job_id"],
        event_type=EventType(row["event_type"]),
        at=row["at"],
        metadata=codec.decode(metadata) if metadata else {},
    )


# -- edits --------------------------------------------------------------------------


def column_values(changes: Mapping[Any, Any]) -> dict[str, Any]:
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


def changed_columns(row: Mapping[Any, Any], values: Mapping[Any, Any]) -> dict[str, Any]:
    """The subset of ``values`` that differs from ``row`` (lists compare as tuples)."""

    def stored(value: Any) -> Any:
        return tuple(value) if isinstance(value, list | tuple) else value

    changed = {c: v for c, v in values.items() if c != "ready_at" and stored(row[c]) != stored(v)}
    if "run_at" in changed and not row["blocked_by"]:
        # A blocked job gets its ready_at when its last prerequisite completes.
        changed["ready_at"] = changed["run_at"]
    unresolved = row["unresolved_options"]
    if unresolved:
        # An option set by an edit is explicit: the worker must not replace it, even
        # when the edit wrote the value the job already had.
        fixed = [c for c in values if unresolved & options_mask([EVENT_FIELD_OF_COLUMN.get(c, c)])]
        if fixed:
            changed.update({c: values[c] for c in fixed})
            changed["unresolved_options"] = unresolved & ~options_mask(
                EVENT_FIELD_OF_COLUMN.get(c, c) for c in fixed
            )
    return changed


def edited_fields(columns: Mapping[Any, Any]) -> list[str]:
    """The Job field names of changed columns, for the ``edited`` event."""
    return sorted(
        EVENT_FIELD_OF_COLUMN.get(c, c)
        for c in columns
        if c not in ("ready_at", "unresolved_options")
    )


# -- recorded calls -----------------------------------------------------------------


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


# -- tokens -------------------------------------------------------------------------


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
