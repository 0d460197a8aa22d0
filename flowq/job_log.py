"""Per-job log lines: a job's life through stdlib ``logging`` (logger ``flowq.jobs``).

Every record carries ``job_id``, ``workflow`` and ``attempt`` in its ``extra`` so
structured handlers (JSON formatters, log shippers) pick them up; the message says
the same for people. Levels: INFO for started, waiting and completed; WARNING for a
failed attempt that will be retried, ERROR for one that failed for good (with the
traceback when there is one). Levels and format are the application's to set.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flowq.models import ErrorEntry
from flowq.store.base import JobHeader

__all__ = ["completed", "failed", "job_extra", "log", "started", "waiting"]

log = logging.getLogger("flowq.jobs")


def job_extra(job: JobHeader) -> dict[str, Any]:
    """The ``extra`` of a job's records."""
    return {"job_id": job.id, "workflow": job.workflow, "attempt": job.attempts}


def started(job: JobHeader, *, resumed: bool) -> None:
    """A run begins: a new attempt, or the same one resuming after a wait."""
    how = "resumes" if resumed else "starts"
    log.info(
        "job %s (%s) %s attempt %d of %d",
        job.id, job.workflow, how, job.attempts, job.max_attempts, extra=job_extra(job),
    )  # fmt: skip


def waiting(job: JobHeader, *, until: datetime | None, on: str | None) -> None:
    """The run parked on a durable wait."""
    what = []
    if on is not None:
        what.append(f"on {on}")
    if until is not None:
        what.append(f"until {until.isoformat(timespec='seconds')}")
    log.info(
        "job %s (%s) waits %s", job.id, job.workflow, " ".join(what) or "", extra=job_extra(job)
    )


def completed(job: JobHeader, seconds: float) -> None:
    """The run ended the job well."""
    log.info(
        "job %s (%s) completed in %.3fs (attempt %d)",
        job.id, job.workflow, seconds, job.attempts, extra=job_extra(job),
    )  # fmt: skip


def failed(job: JobHeader, error: ErrorEntry, retry_at: datetime | None) -> None:
    """An attempt failed: retried at ``retry_at``, or for good (None)."""
    then = (
        f"retrying at {retry_at.isoformat(timespec='seconds')}"
        if retry_at is not None
        else "failed for good"
    )
    details = f"\n{error.traceback}" if error.traceback else ""
    log.log(
        logging.WARNING if retry_at is not None else logging.ERROR,
        "job %s (%s) attempt %d failed: %s: %s; %s%s",
        job.id, job.workflow, job.attempts, error.type, error.message, then, details,
        extra=job_extra(job),
    )  # fmt: skip
