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
    │   │   ├── DatabaseBusyError             locked or deadlocked for now: retry
    │   │   └── DatabaseRefusedError          the server could not do it (timeout, full disk)
    │   └── SchemaError                       flowq's tables are missing or too old
    ├── TokenError                            completing an unknown or finished token
    ├── JobFailedError                        a job waited for (app.result, ctx.call) failed
    ├── NonDeterminismError                   replayed code called another step than recorded
    ├── StepError                             a recorded step failure that cannot be rebuilt
    ├── ContextError                          a ctx feature used where it cannot work
    ├── NonRetryableError                     raised by user code: fail now, no retries
    └── UnawaitedCallError                    a step or durable call was never awaited

All of them carry a message that names the value that is wrong and, where there is
one, what to do about it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ContextError",
    "DatabaseBusyError",
    "DatabaseError",
    "DatabaseRefusedError",
    "DatabaseUnavailableError",
    "DependencyError",
    "FlowqError",
    "JobFailedError",
    "NonDeterminismError",
    "NonRetryableError",
    "PayloadError",
    "RegistrationError",
    "ScheduleError",
    "SchemaError",
    "SerializationError",
    "StepError",
    "TokenError",
    "UnawaitedCallError",
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


class DatabaseBusyError(DatabaseUnavailableError):
    """The database refused this operation for now (a deadlock, a serialization
    conflict, a SQLite lock held too long); retrying it is safe. Workers do."""


class DatabaseRefusedError(DatabaseUnavailableError):
    """The database was reached but could not carry out the operation: a statement
    timeout, a full disk, out of memory, a statement over the server's limits. The
    message carries the server's own words. Workers back off and retry, as for an
    unavailable database; nothing of the operation was written."""


class SchemaError(DatabaseError):
    """flowq's tables are missing or older than this version: run ``flowq migrate``."""


class TokenError(FlowqError):
    """A token is unknown, already completed or timed out, so it cannot be completed."""


class JobFailedError(FlowqError):
    """A job that was waited for failed permanently or was cancelled.

    Raised by ``App.result()``, and by ``ctx.call`` for a child job. ``ctx.call``
    records the failure in the parent's history together with a snapshot of the
    child, and raises from that record: on the first run and on every replay the
    error is the same, even after the child itself was deleted by
    ``cleanup_old_jobs``.

    Args:
        job: The job that failed (a :class:`flowq.Job`).

    Attributes:
        job: The job as stored when it finished (``id``, ``workflow``, ``status``,
            ``error_history``, ``failure_reason``...); for ``ctx.call``, the recorded
            snapshot of the child.
    """

    def __init__(self, job: Any) -> None:
        last = job.error_history[-1] if job.error_history else None
        detail = f": {last.type}: {last.message}" if last else ""
        super().__init__(f"job {job.id} ({job.workflow}) is {job.status}{detail}")
        self.job = job


class NonDeterminismError(FlowqError):
    """On replay, the workflow called something else than the history records.

    The job fails with reason ``nondeterminism`` instead of replaying into the wrong
    step. Use ``ctx.patched("change-id")`` to change a workflow while old jobs run.

    Attributes:
        job_id: The job.
        position: The position (0-based) of the durable call in the job.
        recorded: What the history has there.
        called: What the code called.
    """

    def __init__(self, job_id: int, position: int, recorded: str, called: str) -> None:
        super().__init__(
            f"job {job_id}: at position {position} the workflow called {called!r}, but the "
            f"recorded history has {recorded!r} there; the code changed while the job was "
            "in flight (guard the change with ctx.patched(...))"
        )
        self.job_id = job_id
        self.position = position
        self.recorded = recorded
        self.called = called


class StepError(FlowqError):
    """A step that failed earlier in this attempt, replayed after a wait, whose
    exception cannot be rebuilt as its original type.

    A replayed step failure is raised as the original exception type where flowq can
    rebuild it (a builtin, or an importable ``Exception`` subclass whose constructor
    takes the exception's arguments); this error stands in for the rest, such as a
    class defined inside a function.

    Attributes:
        step: The step name.
        error_type: The type name of the original exception (``ValueError``, or
            ``package.module.Qualname``).
        message: The original exception's message.
    """

    def __init__(self, step: str, message: str, error_type: str) -> None:
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.message = message


class ContextError(FlowqError):
    """A ``ctx`` feature was used where it cannot work: outside a running job, or in a
    sync (``def``) workflow, which cannot await durable operations."""


class UnawaitedCallError(FlowqError):
    """A handler returned while a step or durable call it made was never awaited (a
    forgotten ``await``): the attempt fails instead of completing with a wrong result."""


class NonRetryableError(FlowqError):
    """Raise it (or a subclass) from a handler or a step when trying again cannot help
    (a declined card, a malformed order): the job fails for good at once, whatever
    attempts or step retries remain, with this error's message and type stored."""
