"""Every error flowq raises on purpose.

The tree::

    FlowqError
    ├── ValidationError (also ValueError)     bad input, nothing was written
    │   ├── PayloadError                      payload does not fit the workflow
    │   ├── SerializationError                a value cannot be encoded as JSON
    │   ├── ScheduleError                     bad cron expression or time zone
    │   ├── DependencyError                   bad ``depends_on``
    │   └── UnknownWorkflowError              no workflow registered under a name
    ├── RegistrationError                     two functions under one workflow name
    ├── DatabaseError                         the database cannot serve flowq
    │   ├── DatabaseUnavailableError          cannot connect
    │   └── SchemaError                       flowq's tables are missing or too old
    ├── TokenError                            completing an unknown or finished token
    └── JobFailedError                        app.result() of a job that failed or was cancelled

All of them carry a message that names the value that is wrong and, where there is
one, what to do about it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DatabaseError",
    "DatabaseUnavailableError",
    "DependencyError",
    "FlowqError",
    "JobFailedError",
    "PayloadError",
    "RegistrationError",
    "ScheduleError",
    "SchemaError",
    "SerializationError",
    "TokenError",
    "UnknownWorkflowError",
    "ValidationError",
]


class FlowqError(Exception):
    """Root of every error flowq raises on purpose."""


class ValidationError(FlowqError, ValueError):
    """An argument is malformed or out of range; nothing was written.

    Raised for bad durations, naive datetimes, unknown option values, out-of-range
    numbers and the like.
    """


class PayloadError(ValidationError):
    """A payload does not fit the workflow's payload annotation.

    Raised by ``App.start`` / ``add_job`` / ``add_jobs`` / ``edit_job`` before anything
    is written.
    """


class SerializationError(ValidationError):
    """A value cannot be encoded to JSON (payload, output, step result)."""


class ScheduleError(ValidationError):
    """A cron expression, time zone or schedule name is invalid or taken."""


class DependencyError(ValidationError):
    """``depends_on`` names an unknown job, the job itself, a cycle or a dead job."""


class UnknownWorkflowError(ValidationError):
    """A job was added for a workflow name that is not registered."""


class RegistrationError(FlowqError):
    """A second, different function was registered under a taken workflow name."""


class DatabaseError(FlowqError):
    """The database cannot serve flowq right now."""


class DatabaseUnavailableError(DatabaseError):
    """The database URL cannot be reached (server down, wrong host, bad file path)."""


class SchemaError(DatabaseError):
    """flowq's tables are missing or older than this version: run ``flowq migrate``."""


class TokenError(FlowqError):
    """A token is unknown, already completed or timed out, so it cannot be completed."""


class JobFailedError(FlowqError):
    """``App.result()`` waited for a job that failed permanently or was cancelled.

    Attributes:
        job: The job as stored (``status``, ``error_history``, ``failure_reason``).
    """

    def __init__(self, job: Any) -> None:
        last = job.error_history[-1].message if job.error_history else None
        detail = f": {last}" if last else ""
        super().__init__(f"job {job.id} ({job.workflow}) is {job.status}{detail}")
        self.job = job
