"""The job state machine: every change of a job row, as pure data (no I/O).

A :class:`Transition` names the statuses a job may be in before it, the status it
leaves the job in, and the value of every column it sets. Values are small
expressions (:class:`Param`, :data:`NOW`, :class:`Column`, :class:`Plus`,
:class:`IfWaiting`, :class:`Larger`, :class:`PerJob`, or constants), so that one
definition serves every store: the in-memory store evaluates them in Python
(:meth:`Transition.values`), the SQL store renders them as SQLAlchemy values or as
the SET clauses of its dialects' one-statement paths (``flowq.store.sql.render``).

The life of a job (DESIGN section 3)::

    pending --claim--> processing --complete--> completed
       ^                 |  |  |----fail-----> failed --retry--> pending
       |                 |  |                    (with attempts left: claimable again)
       |                 |  +--suspend--> waiting --wake--> (claimable again)
       +--release/requeue+
    pending | waiting | failed --cancel--> cancelled   (processing: cancel_running)

``ready_at`` is the instant a job becomes claimable; a claim takes any job whose
``ready_at`` has come (pending, waiting with its wait over, failed due to retry).
A job added with prerequisites that have not completed yet is *blocked*: it is
pending with ``blocked_by`` counting them and no ``ready_at`` (so no claim ever
looks at it), and :data:`UNBLOCK` counts each completion down, giving it its
``ready_at`` (its ``run_at``) when the last one completes.
Besides the job rows, this module holds what follows a transition: the events'
metadata, the dead-letter job of a permanent failure, and the token rules. (A parent
waiting for a child parks on ``flowq.replay.child_wait_id``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from flowq import codec
from flowq.errors import TokenError
from flowq.models import ErrorEntry, FailureReason, JobStatus, Token, TokenStatus
from flowq.store import rows
from flowq.store.base import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY, ClaimedJob, NewJob

__all__ = [
    "BLOCKED_REASON",
    "CANCEL",
    "CANCEL_RUNNING",
    "CLAIM",
    "COMPLETE",
    "EDIT",
    "FAIL",
    "HEARTBEAT",
    "MARK_UNCLAIMED",
    "NOW",
    "OUTPUT",
    "PROGRESS",
    "PROLONG",
    "RELEASE",
    "REQUEUE",
    "RESOLVE",
    "RETRY",
    "SUSPEND",
    "TRANSITIONS",
    "UNBLOCK",
    "WAKE",
    "Column",
    "IfLastPrerequisite",
    "IfWaiting",
    "Larger",
    "Param",
    "PerJob",
    "Plus",
    "Transition",
    "Value",
    "block",
    "check_completable",
    "completed_token",
    "dead_letter_job",
    "evaluate",
    "failed_metadata",
    "failure",
    "is_stuck",
    "is_upcoming",
    "lost_worker_error",
    "processing_metadata",
    "reclaimed_metadata",
    "released_metadata",
    "timed_out_token",
    "token_retired",
]


# -- values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    """A value given with the transition (a worker id, an output...)."""

    name: str


NOW: Final = Param("now")
"""The time of the transaction (the store's clock, passed as the parameter ``now``)."""


@dataclass(frozen=True, slots=True)
class Column:
    """The row's value of ``name`` before the transition."""

    name: str


@dataclass(frozen=True, slots=True)
class Plus:
    """``left + right``."""

    left: Value
    right: Value


@dataclass(frozen=True, slots=True)
class IfWaiting:
    """``then`` for a job that was waiting (it resumes), else ``otherwise``."""

    then: Value
    otherwise: Value


@dataclass(frozen=True, slots=True)
class IfLastPrerequisite:
    """``then`` for a blocked job whose last unfinished prerequisite this is (its
    ``blocked_by`` is 1 before the change), else ``otherwise``."""

    then: Value
    otherwise: Value


@dataclass(frozen=True, slots=True)
class Larger:
    """The larger of two values."""

    left: Value
    right: Value


@dataclass(frozen=True, slots=True)
class PerJob:
    """A value per job: the parameter ``name`` maps job ids to values (missing: 0)."""

    name: str


Value = (
    None
    | bool
    | int
    | str
    | Param
    | Column
    | Plus
    | IfWaiting
    | IfLastPrerequisite
    | Larger
    | PerJob
)
"""What a transition sets a column to; plain values are constants."""


def evaluate(value: Value, row: Mapping[Any, Any], params: Mapping[str, Any]) -> Any:
    """``value`` for ``row`` (its values before the transition), in Python; ``params``
    holds every parameter, ``now`` included."""
    if isinstance(value, Param):
        return params[value.name]
    if isinstance(value, Column):
        return row[value.name]
    if isinstance(value, Plus):
        return evaluate(value.left, row, params) + evaluate(value.right, row, params)
    if isinstance(value, IfWaiting):
        chosen = value.then if row["status"] == JobStatus.WAITING else value.otherwise
        return evaluate(chosen, row, params)
    if isinstance(value, IfLastPrerequisite):
        chosen = value.then if row["blocked_by"] == 1 else value.otherwise
        return evaluate(chosen, row, params)
    if isinstance(value, Larger):
        left = evaluate(value.left, row, params)
        right = evaluate(value.right, row, params)
        return left if left > right else right
    if isinstance(value, PerJob):
        return params[value.name].get(row["id"], 0)
    return value


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a job row.

    Attributes:
        name: What the change is called (``claim``, ``complete``...).
        sources: The statuses a job may have before it.
        target: The status it leaves the job in (None: unchanged).
        sets: Every column it writes, ``status`` included when ``target`` is set.
    """

    name: str
    sources: frozenset[JobStatus]
    target: JobStatus | None
    sets: Mapping[str, Value]

    def values(self, row: Mapping[Any, Any], now: datetime, **params: Any) -> dict[str, Any]:
        """The column values for ``row`` (evaluated from its values before the change)."""
        given = {"now": now, **params}
        return {column: evaluate(value, row, given) for column, value in self.sets.items()}


def _transition(
    name: str, sources: set[JobStatus], target: JobStatus | None, **sets: Value
) -> Transition:
    columns: dict[str, Value] = {} if target is None else {"status": target.value}
    return Transition(name, frozenset(sources), target, {**columns, **sets})


_P = JobStatus.PENDING
_W = JobStatus.WAITING
_R = JobStatus.PROCESSING
_F = JobStatus.FAILED
_UNLOCKED: dict[str, Value] = {"locked_by": None, "locked_at": None}
_NEXT_LEASE = Plus(Column("lease_id"), 1)

CLAIM = _transition(
    "claim",
    {_P, _W, _F},
    _R,
    attempts=Plus(Column("attempts"), IfWaiting(0, 1)),
    started_at=IfWaiting(Column("started_at"), NOW),
    lease_id=_NEXT_LEASE,
    locked_by=Param("worker_id"),
    locked_at=NOW,
    ready_at=None,
    next_attempt_at=None,
    wait_until=None,
    wait_token_id=None,
    pending_reason=None,
    updated_at=NOW,
)
"""A worker takes a due job: a new attempt, unless the job resumes from a wait."""

COMPLETE = _transition(
    "complete",
    {_R},
    JobStatus.COMPLETED,
    output=Param("output"),
    failure_reason=None,
    completed_at=NOW,
    finished_at=NOW,
    updated_at=NOW,
    **_UNLOCKED,
)
"""A run ended well; ``output`` is JSON text or None."""

FAIL = _transition(
    "fail",
    {_R},
    _F,
    failure_reason=Param("reason"),
    error_history=Param("error_history"),
    last_failed_at=Param("failed_at"),
    next_attempt_at=Param("retry_at"),
    ready_at=Param("retry_at"),
    finished_at=Param("finished_at"),
    updated_at=NOW,
    **_UNLOCKED,
)
"""An attempt failed; :func:`failure` works out the parameters (``failed_at`` is the
error's time, the instant ``retry_at`` was computed from)."""

SUSPEND = _transition(
    "suspend",
    {_R},
    _W,
    wait_until=Param("wait_until"),
    wait_token_id=Param("wait_token_id"),
    ready_at=Param("ready_at"),
    updated_at=NOW,
    **_UNLOCKED,
)
"""A run parks on a wait; ``ready_at`` is the wake time (now if the wait is over)."""

RELEASE = _transition(
    "release",
    {_R},
    _P,
    attempts=Plus(Column("attempts"), PerJob("refund")),
    lease_id=_NEXT_LEASE,
    ready_at=NOW,
    updated_at=NOW,
    **_UNLOCKED,
)
"""A stopping worker hands a job back; ``refund`` maps job ids to -1 for runs that
started a new attempt (it is not counted)."""

REQUEUE = _transition("requeue", {_R}, _P, ready_at=NOW, updated_at=NOW, **_UNLOCKED)
"""A job whose worker stopped renewing its lock is pending again (``reclaim``)."""

_CANCELLED: dict[str, Value] = {
    "ready_at": None,
    "next_attempt_at": None,
    "wait_until": None,
    "wait_token_id": None,
    "pending_reason": None,
    "last_cancelled_at": NOW,
    "finished_at": NOW,
    "updated_at": NOW,
}
CANCEL = _transition("cancel", {_P, _W, _F}, JobStatus.CANCELLED, **_CANCELLED)
"""An upcoming job (see :func:`is_upcoming`) is cancelled."""

CANCEL_RUNNING = _transition(
    "cancel_running",
    {_R},
    JobStatus.CANCELLED,
    **_CANCELLED,
    **_UNLOCKED,
    lease_id=_NEXT_LEASE,
)
"""A running job is cancelled: its lease ends at once."""

RETRY = _transition(
    "retry",
    {_F},
    _P,
    ready_at=NOW,
    next_attempt_at=None,
    max_attempts=Larger(Column("max_attempts"), Plus(Column("attempts"), 1)),
    last_retried_at=NOW,
    finished_at=None,
    updated_at=NOW,
)
"""``retry_job``: a failed job runs again now, with at least one attempt left."""

WAKE = _transition("wake", {_W}, None, ready_at=NOW, updated_at=NOW)
"""A waiting job's token completed or timed out, or its child finished: it is
claimable now (for a child, ``NOW`` is the child's finish time)."""

BLOCKED_REASON: Final = "waiting for its prerequisites to complete"
"""The ``pending_reason`` of a blocked job (see :data:`UNBLOCK`)."""

UNBLOCK = _transition(
    "unblock",
    {_P},
    None,
    blocked_by=Plus(Column("blocked_by"), -1),
    ready_at=IfLastPrerequisite(Column("run_at"), None),
    pending_reason=IfLastPrerequisite(None, Column("pending_reason")),
)
"""A prerequisite of a blocked job completed: one fewer to wait for; after the last,
the job is claimable from its ``run_at`` on. Applied, in the transaction of the
completion, to every pending job with ``blocked_by > 0`` that depends on the
completed job (on SQL databases by the ``flowq_jobs_unblock_dependants`` trigger,
whose SET clause a test checks against this one)."""

HEARTBEAT = _transition("heartbeat", {_R}, None, locked_at=NOW)
"""A worker renews its lock (``updated_at`` stays)."""

PROLONG = _transition("prolong", {_R}, None, locked_at=NOW, updated_at=NOW)
"""``ctx.prolong``: the handler pushes its deadline back and renews the lock."""

PROGRESS = _transition("progress", {_R}, None, progress=Param("progress"), updated_at=NOW)
"""A running job reports its progress."""

OUTPUT = _transition("output", {_R}, None, output=Param("output"), updated_at=NOW)
"""A running job stores its output before it ends."""

MARK_UNCLAIMED = _transition("mark_unclaimed", {_P}, None, pending_reason=Param("reason"))
"""A due job no worker here runs says why it waits (``updated_at`` stays)."""

EDIT = _transition("edit", {_P}, None, updated_at=NOW)
"""``edit_job``: the changed columns (``rows.changed_columns``) are set with these."""

RESOLVE = _transition("resolve", {_R}, None, unresolved_options=0, updated_at=NOW)
"""A worker wrote the declared values of a job's unresolved options (set with these)."""

TRANSITIONS: tuple[Transition, ...] = (
    CLAIM, COMPLETE, FAIL, SUSPEND, RELEASE, REQUEUE, CANCEL, CANCEL_RUNNING, RETRY, WAKE,
    UNBLOCK, HEARTBEAT, PROLONG, PROGRESS, OUTPUT, MARK_UNCLAIMED, EDIT, RESOLVE,
)  # fmt: skip
"""Every transition, in the order of the life of a job."""


# -- states -------------------------------------------------------------------------


def block(row: dict[str, Any], unfinished: int) -> dict[str, Any]:
    """The values of a new job's row (``rows.new_job_row``) that waits for
    ``unfinished`` prerequisites: blocked, without a ``ready_at`` (unchanged for 0)."""
    if unfinished > 0:
        row.update(blocked_by=unfinished, ready_at=None, pending_reason=BLOCKED_REASON)
    return row


def is_upcoming(row: Mapping[Any, Any]) -> bool:
    """Whether a job is still to run: pending, waiting, or failed and due to retry.

    Upcoming jobs can be cancelled; ``finished_at`` is NULL exactly for jobs that
    are upcoming or processing.
    """
    return row["finished_at"] is None and row["status"] != JobStatus.PROCESSING


def is_stuck(
    row: Mapping[Any, Any], older_than: timedelta, now: datetime, *, heed_timeout: bool = True
) -> bool:
    """Whether a processing job's lock is older than max(``older_than``, its timeout),
    or than ``older_than`` alone without ``heed_timeout`` (an expired lease: its
    worker's heartbeats stopped). A stored timeout too large to read is longer than
    any lock can be old."""
    if row["locked_at"] is None:
        return False
    limit = older_than
    if heed_timeout:
        try:
            timeout = rows.from_ms(row["timeout_ms"])
        except (OverflowError, ValueError, TypeError):
            return False
        limit = max(older_than, timeout or timedelta(0))
    return bool(now - row["locked_at"] >= limit)


# -- failing ------------------------------------------------------------------------


def failure(
    row: Mapping[Any, Any],
    error: ErrorEntry,
    reason: FailureReason,
    retry_at: datetime | None,
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    """The :data:`FAIL` column values of a failed attempt, and whether it will retry.

    The job retries at ``retry_at`` when that is set and attempts remain; otherwise
    it has failed permanently.
    """
    will_retry = retry_at is not None and row["attempts"] < row["max_attempts"]
    next_at = retry_at if will_retry else None
    history = (*rows.decode_errors(row["error_history"]), error)
    values = FAIL.values(
        row,
        now,
        reason=reason.value,
        error_history=rows.encode_errors(history),
        retry_at=next_at,
        finished_at=None if will_retry else now,
        failed_at=error.at,
    )
    return values, will_retry


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


def dead_letter_job(
    row: Mapping[Any, Any], error: ErrorEntry, reason: FailureReason, now: datetime
) -> NewJob:
    """The job enqueued on the dead-letter workflow of a permanently failed ``row``.

    Its payload holds the failed job's payload, unless that cannot be decoded or makes
    the dead letter larger than ``codec.MAX_VALUE_BYTES``: then ``"payload"`` is None
    and ``"payload_omitted"`` says why (the failed job keeps its payload).
    """
    letter: dict[str, Any] = {
        "job_id": row["id"],
        "workflow": row["workflow"],
        "payload": None,
        "attempts": row["attempts"],
        "failure_reason": reason.value,
        "error": {"message": error.message, "type": error.type, "at": error.at},
    }
    what = "dead-letter payload"
    try:
        letter["payload"] = codec.decode(row["payload"])
        payload = codec.encode(letter, what=what)
    except Exception as exc:  # too large (SerializationError), nested too deep...
        letter["payload"] = None
        letter["payload_omitted"] = (
            f"the payload of job {row['id']} ({len(row['payload']):,} characters of JSON) "
            f"is left out of this dead letter: {type(exc).__name__}: {str(exc)[:500]}; "
            "it stays on the failed job"
        )
        payload = codec.encode(letter, what=what)
    return NewJob(
        workflow=row["dead_letter"],
        payload=payload,
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


# -- event metadata -----------------------------------------------------------------


def processing_metadata(claimed: ClaimedJob) -> dict[str, Any]:
    """Metadata of the ``processing`` event of a claim."""
    return {
        "worker_id": claimed.lease.worker_id,
        "attempt": claimed.job.attempts,
        "resumed": claimed.resumed,
    }


def failed_metadata(
    row: Mapping[Any, Any],
    error: ErrorEntry,
    reason: FailureReason,
    values: Mapping[Any, Any],
    dead_letter_job_id: int | None,
) -> dict[str, Any]:
    """Metadata of the ``failed`` event (``values`` from :func:`failure`)."""
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


def reclaimed_metadata(row: Mapping[Any, Any]) -> dict[str, Any]:
    """Metadata of the ``reclaimed`` event of a job whose worker stopped renewing it."""
    return {
        "worker_id": row["locked_by"],
        "attempt": row["attempts"],
        "requeued": row["attempts"] < row["max_attempts"],
    }


def released_metadata(worker_id: str, attempts: int) -> dict[str, Any]:
    """Metadata of the ``reclaimed`` event of a job its worker handed back at shutdown."""
    return {"worker_id": worker_id, "attempt": attempts, "requeued": True, "reason": "released"}


# -- tokens -------------------------------------------------------------------------


def check_completable(token: Token, now: datetime) -> None:
    """Raise :class:`TokenError` unless ``token`` is waiting and not past its deadline."""
    if token.status is TokenStatus.COMPLETED:
        raise TokenError(f"token {token.id!r} was completed already")
    timed_out = token.timeout_at is not None and token.timeout_at <= now
    if token.status is TokenStatus.TIMED_OUT or timed_out:
        raise TokenError(
            f"token {token.id!r} timed out at {token.timeout_at}; it can no longer be completed"
        )


def completed_token(output: str, now: datetime) -> dict[str, Any]:
    """Column values of a token completed with ``output`` (JSON text)."""
    return {"status": TokenStatus.COMPLETED.value, "output": output, "completed_at": now}


def token_retired(row: Mapping[str, Any], cutoff: datetime) -> bool:
    """Whether ``cleanup_old_jobs`` deletes this token row on its own: it was created
    outside any job (a job's tokens go with the job) and it finished (completed or
    timed out) at or before ``cutoff``, or still waits with a deadline at or before
    ``cutoff``. ``TOKEN_RETIRED`` in the SQL store says the same."""
    if row["job_id"] is not None:
        return False
    if row["status"] == TokenStatus.WAITING.value:
        return row["timeout_at"] is not None and row["timeout_at"] <= cutoff
    return row["completed_at"] is not None and row["completed_at"] <= cutoff


def timed_out_token(now: datetime) -> dict[str, Any]:
    """Column values of a waiting token whose deadline passed."""
    return {"status": TokenStatus.TIMED_OUT.value, "completed_at": now}
