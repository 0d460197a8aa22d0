"""A job's history as one JSON document: the job, its recorded calls, tokens and events.

``App.export_job`` (and ``flowq jobs export ID``) writes it from any store;
``flowq_testing.replay`` reads it back to re-run the handler against current code.
The format is versioned (:data:`HISTORY_FORMAT`, :data:`HISTORY_VERSION`)::

    {
      "format": "flowq.job-history", "version": 1,
      "job": {... every field of flowq.Job, JSON-encoded ...},
      "steps": [{"seq", "name", "attempt", "output", "error", "started_at",
                 "completed_at"}, ...],        # the recorded durable calls, in order
      "tokens": [{"id", "job_id", "status", "output", "tags", "timeout_at",
                  "created_at", "completed_at"}, ...],   # tokens the job created
      "events": [{"id", "job_id", "event_type", "at", "metadata"}, ...]
    }

``output`` is the decoded JSON value; ``error`` is ``{"message", "type", ...}`` or
null. Datetimes are ISO 8601 with their UTC offset, durations ISO 8601 durations.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from flowq import codec
from flowq.errors import ValidationError
from flowq.replay import RecordedCall

if TYPE_CHECKING:
    from flowq.store.base import Store

__all__ = [
    "HISTORY_FORMAT",
    "HISTORY_VERSION",
    "HistoryJob",
    "HistoryStep",
    "HistoryToken",
    "JobHistory",
    "export_job",
    "parse_history",
]

HISTORY_FORMAT = "flowq.job-history"
"""The ``format`` field of an exported history."""
HISTORY_VERSION = 1
"""The ``version`` field this flowq writes and reads."""


class HistoryJob(msgspec.Struct):
    """The fields of the exported job a replay needs (the document holds them all)."""

    id: int
    workflow: str
    payload: Any
    status: str
    attempts: int
    max_attempts: int
    tags: list[str] = []
    group: str | None = None


class HistoryStep(msgspec.Struct):
    """One recorded durable call."""

    seq: int
    name: str
    attempt: int
    started_at: datetime
    completed_at: datetime
    output: Any = None
    error: dict[str, Any] | None = None

    def recorded_call(self) -> RecordedCall:
        """The call as the engine records it (output and error as JSON text)."""
        return RecordedCall(
            seq=self.seq,
            name=self.name,
            attempt=self.attempt,
            output=None if self.error is not None else codec.encode(self.output, what="output"),
            error=None if self.error is None else codec.encode(self.error, what="error"),
            started_at=self.started_at,
            completed_at=self.completed_at,
        )


class HistoryToken(msgspec.Struct):
    """A token the job created."""

    id: str
    status: str
    tags: list[str] = []
    timeout_at: datetime | None = None
    output: Any = None


class JobHistory(msgspec.Struct):
    """An exported history, as read back by :func:`parse_history`."""

    format: str
    version: int
    job: HistoryJob
    steps: list[HistoryStep]
    tokens: list[HistoryToken] = []
    events: list[dict[str, Any]] = []


async def export_job(store: Store, job_id: int) -> str:
    """The job's history as JSON text (the format above).

    Raises:
        ValidationError: There is no such job.
    """
    job = await store.get_job(job_id)
    if job is None:
        raise ValidationError(f"there is no job {job_id}")
    calls = await store.load_history(job_id)
    tokens = []
    for call in calls:
        if call.name == "@token" and call.output is not None:
            token = await store.get_token(codec.decode(call.output))
            if token is not None:
                tokens.append(token)
    document = {
        "format": HISTORY_FORMAT,
        "version": HISTORY_VERSION,
        "job": job,
        "steps": [
            {
                "seq": call.seq,
                "name": call.name,
                "attempt": call.attempt,
                "output": None if call.error is not None else codec.decode(call.output),
                "error": None if call.error is None else codec.decode(call.error),
                "started_at": call.started_at,
                "completed_at": call.completed_at,
            }
            for call in calls
        ],
        "tokens": tokens,
        "events": await store.get_job_events(job_id),
    }
    return codec.encode(document, what=f"history of job {job_id}")


def parse_history(history: str | bytes | Mapping[str, Any] | JobHistory) -> JobHistory:
    """Read an exported history (JSON text, or the decoded dict).

    Raises:
        ValidationError: It is not a flowq job history of a version this flowq reads
            (the message says what is wrong).
    """
    if isinstance(history, JobHistory):
        return history
    try:
        if isinstance(history, str | bytes):
            parsed = msgspec.json.decode(history, type=JobHistory)
        else:
            parsed = msgspec.convert(dict(history), type=JobHistory)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValidationError(f"not a flowq job history: {exc}") from None
    if parsed.format != HISTORY_FORMAT:
        raise ValidationError(
            f"not a flowq job history: format is {parsed.format!r}, not {HISTORY_FORMAT!r}"
        )
    if parsed.version != HISTORY_VERSION:
        raise ValidationError(
            f"job history version {parsed.version} is not readable by this flowq "
            f"(it reads version {HISTORY_VERSION})"
        )
    return parsed
