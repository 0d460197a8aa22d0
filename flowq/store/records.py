"""Stored values <-> records: shared by the SQL and in-memory stores."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from flowq import codec
from flowq.models import ErrorEntry, FailureReason, Job, JobStatus, RetryPolicy
from flowq.store.base import NewJob

__all__ = [
    "dead_letter_payload",
    "decode_errors",
    "decode_retry",
    "encode_errors",
    "encode_retry",
    "from_ms",
    "job_from_row",
    "new_job_row",
    "to_ms",
]


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


def decode_retry(text: str) -> RetryPolicy:
    """JSON text back to a retry policy."""
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


def new_job_row(job: NewJob, job_id: int, now: datetime) -> dict[str, Any]:
    """Column values of a freshly added job."""
    return {
        "id": job_id,
        "workflow": job.workflow,
        "payload": job.payload,
        "status": JobStatus.PENDING.value,
        "priority": job.priority,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at,
        "ready_at": job.run_at,
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
