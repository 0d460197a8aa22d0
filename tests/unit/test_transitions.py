"""The job state machine (flowq.store.transitions): pure row transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import flowq
from flowq import codec
from flowq.models import ErrorEntry, FailureReason, JobStatus, Token, TokenStatus
from flowq.store import rows, transitions
from flowq.store import transitions as t
from flowq.store.base import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY, NewJob

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)
LATER = NOW + timedelta(minutes=5)


def job_row(**changes: Any) -> dict[str, Any]:
    """A stored job row (pending, as added an hour ago), with ``changes``."""
    new = NewJob(
        workflow="billing.charge",
        payload='{"amount": 5}',
        priority=0,
        max_attempts=3,
        run_at=None,
        retry=flowq.RetryPolicy(),
        timeout=None,
        force_kill_on_timeout=False,
        tags=("billing",),
        idempotency_key=None,
        group=None,
        depends_on=(),
        depends_on_tags=(),
        dead_letter=None,
    )
    return {**rows.new_job_row(new, 7, EARLIER), **changes}


RUNNING = {
    "status": "processing",
    "attempts": 1,
    "lease_id": 3,
    "locked_by": "w1",
    "locked_at": EARLIER,
    "started_at": EARLIER,
    "ready_at": None,
}
WAITING = {
    "status": "waiting",
    "attempts": 2,
    "lease_id": 3,
    "started_at": EARLIER,
    "ready_at": NOW,
    "wait_until": NOW,
    "wait_token_id": "tok",
}
FAILED_TO_RETRY = {"status": "failed", "attempts": 1, "lease_id": 3, "ready_at": NOW}


@pytest.mark.parametrize(
    ("transition", "before", "params", "expected"),
    [
        pytest.param(
            t.CLAIM,
            {},
            {"worker_id": "w2"},
            {"status": "processing", "attempts": 1, "started_at": NOW, "lease_id": 1,
             "locked_by": "w2", "locked_at": NOW, "ready_at": None, "updated_at": NOW},
            id="claim-pending-starts-an-attempt",
        ),
        pytest.param(
            t.CLAIM,
            WAITING,
            {"worker_id": "w2"},
            {"status": "processing", "attempts": 2, "started_at": EARLIER, "lease_id": 4,
             "wait_until": None, "wait_token_id": None, "ready_at": None},
            id="claim-waiting-resumes-the-attempt",
        ),
        pytest.param(
            t.CLAIM,
            {**FAILED_TO_RETRY, "pending_reason": "nobody"},
            {"worker_id": "w2"},
            {"attempts": 2, "started_at": NOW, "lease_id": 4, "pending_reason": None},
            id="claim-failed-starts-the-next-attempt",
        ),
        pytest.param(
            t.COMPLETE,
            {**RUNNING, "failure_reason": "handler_error"},
            {"output": "42"},
            {"status": "completed", "output": "42", "failure_reason": None, "completed_at": NOW,
             "finished_at": NOW, "locked_by": None, "locked_at": None, "lease_id": 3},
            id="complete",
        ),
        pytest.param(
            t.SUSPEND,
            RUNNING,
            {"wait_until": LATER, "wait_token_id": None, "ready_at": LATER},
            {"status": "waiting", "wait_until": LATER, "ready_at": LATER, "locked_by": None,
             "attempts": 1, "lease_id": 3},
            id="suspend-on-a-timer",
        ),
        pytest.param(
            t.RELEASE,
            RUNNING,
            {"refund": {7: -1}},
            {"status": "pending", "attempts": 0, "lease_id": 4, "ready_at": NOW,
             "locked_by": None},
            id="release-uncounts-a-new-attempt",
        ),
        pytest.param(
            t.RELEASE,
            RUNNING,
            {"refund": {8: -1}},
            {"status": "pending", "attempts": 1, "lease_id": 4},
            id="release-keeps-a-resumed-attempt",
        ),
        pytest.param(
            t.REQUEUE,
            RUNNING,
            {},
            {"status": "pending", "ready_at": NOW, "locked_by": None, "lease_id": 3},
            id="requeue",
        ),
        pytest.param(
            t.CANCEL,
            WAITING,
            {},
            {"status": "cancelled", "ready_at": None, "wait_until": None, "wait_token_id": None,
             "last_cancelled_at": NOW, "finished_at": NOW, "lease_id": 3},
            id="cancel-waiting",
        ),
        pytest.param(
            t.CANCEL_RUNNING,
            RUNNING,
            {},
            {"status": "cancelled", "finished_at": NOW, "locked_by": None, "lease_id": 4},
            id="cancel-running-ends-the-lease",
        ),
        pytest.param(
            t.RETRY,
            {"status": "failed", "attempts": 3, "finished_at": EARLIER},
            {},
            {"status": "pending", "max_attempts": 4, "ready_at": NOW, "finished_at": None,
             "last_retried_at": NOW},
            id="retry-grants-an-attempt-when-exhausted",
        ),
        pytest.param(
            t.RETRY,
            FAILED_TO_RETRY,
            {},
            {"status": "pending", "max_attempts": 3},
            id="retry-keeps-attempts-left",
        ),
        pytest.param(
            t.WAKE,
            {**WAITING, "ready_at": None},
            {},
            {"status": "waiting", "ready_at": NOW, "updated_at": NOW},
            id="wake",
        ),
        pytest.param(
            t.HEARTBEAT,
            RUNNING,
            {},
            {"locked_at": NOW, "updated_at": EARLIER},
            id="heartbeat-keeps-updated-at",
        ),
        pytest.param(
            t.MARK_UNCLAIMED,
            {},
            {"reason": "no worker"},
            {"pending_reason": "no worker", "updated_at": EARLIER},
            id="mark-unclaimed-keeps-updated-at",
        ),
    ],
)  # fmt: skip
def test_transition_values(
    transition: t.Transition,
    before: dict[str, Any],
    params: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    """Each transition, evaluated on a row, sets what the state machine says."""
    row = job_row(**before)
    assert row["status"] in transition.sources
    after = {**row, **transition.values(row, NOW, **params)}
    assert {column: after[column] for column in expected} == expected


def test_every_transition_is_listed_once_and_sets_its_target() -> None:
    """TRANSITIONS holds each transition once; one with a target writes that status."""
    assert len({x.name for x in t.TRANSITIONS}) == len(t.TRANSITIONS)
    for transition in t.TRANSITIONS:
        assert transition.sources
        if transition.target is None:
            assert "status" not in transition.sets
        else:
            assert transition.sets["status"] == transition.target.value


def test_leaving_processing_unlocks_the_job() -> None:
    """Every transition that takes a job out of processing clears its lock."""
    leaving = [
        x for x in t.TRANSITIONS if x.sources == {JobStatus.PROCESSING} and x.target is not None
    ]
    assert {x.name for x in leaving} == {
        "complete", "fail", "suspend", "release", "requeue", "cancel_running"
    }  # fmt: skip
    for transition in leaving:
        assert transition.sets["locked_by"] is None and transition.sets["locked_at"] is None


def test_transitions_write_known_columns_and_finishing_sets_finished_at() -> None:
    """No transition writes an unknown column; those into a final status set
    finished_at."""
    for transition in t.TRANSITIONS:
        assert set(transition.sets) <= set(rows.JOB_COLUMNS)
        if transition.target in (JobStatus.COMPLETED, JobStatus.CANCELLED):
            assert transition.sets["finished_at"] is t.NOW


@pytest.mark.parametrize(
    ("attempts", "retry_at", "will_retry"),
    [(1, LATER, True), (3, LATER, False), (1, None, False)],
)
def test_failure_retries_only_with_attempts_left_and_a_time(
    attempts: int, retry_at: datetime | None, will_retry: bool
) -> None:
    """A failed attempt retries at retry_at while attempts remain; else it is final."""
    row = job_row(**{**RUNNING, "attempts": attempts})
    error = ErrorEntry(message="boom", type="RuntimeError", at=NOW, attempt=attempts)
    values, retry = t.failure(row, error, FailureReason.HANDLER_ERROR, retry_at, NOW)
    assert retry is will_retry
    assert values["status"] == "failed" and values["failure_reason"] == "handler_error"
    assert values["ready_at"] == values["next_attempt_at"] == (retry_at if will_retry else None)
    assert values["finished_at"] == (None if will_retry else NOW)
    assert rows.decode_errors(values["error_history"]) == (error,)
    meta = t.failed_metadata(row, error, FailureReason.HANDLER_ERROR, values, None)
    assert meta["will_retry"] is will_retry and meta["attempt"] == attempts


@pytest.mark.parametrize(
    ("before", "upcoming"),
    [
        ({}, True),
        (WAITING, True),
        (FAILED_TO_RETRY, True),
        (RUNNING, False),
        ({"status": "failed", "finished_at": NOW}, False),
        ({"status": "completed", "finished_at": NOW}, False),
    ],
)
def test_upcoming_jobs(before: dict[str, Any], upcoming: bool) -> None:
    """Upcoming: pending, waiting, or failed and due to retry (these can be cancelled)."""
    assert t.is_upcoming(job_row(**before)) is upcoming


@pytest.mark.parametrize(
    ("locked_for", "timeout_ms", "older_than", "stuck"),
    [
        (timedelta(minutes=10), None, timedelta(minutes=5), True),
        (timedelta(minutes=1), None, timedelta(minutes=5), False),
        (timedelta(minutes=10), 60 * 60 * 1000, timedelta(minutes=5), False),
        (timedelta(0), None, timedelta(0), True),
        # timeouts larger than the date range: never stuck by them, and no OverflowError
        (timedelta(days=3650), 900_000 * 86_400_000, timedelta(minutes=5), False),
        (timedelta(days=3650), 2**62, timedelta(minutes=5), False),
    ],
)
def test_stuck_jobs(
    locked_for: timedelta, timeout_ms: int | None, older_than: timedelta, stuck: bool
) -> None:
    """A lock is stuck when older than max(older_than, the job's timeout)."""
    row = job_row(**{**RUNNING, "locked_at": NOW - locked_for, "timeout_ms": timeout_ms})
    assert t.is_stuck(row, older_than, NOW) is stuck


def test_a_lost_last_attempt_names_the_worker() -> None:
    """The error of a reclaimed last attempt says which worker stopped and when."""
    row = job_row(**RUNNING)
    error = t.lost_worker_error(row, NOW)
    assert error.type == "WorkerLost" and "'w1'" in error.message and error.attempt == 1
    assert t.reclaimed_metadata(row) == {"worker_id": "w1", "attempt": 1, "requeued": True}


def test_dead_letter_job_carries_the_failure() -> None:
    """The dead-letter job gets the failed job's payload, error and the job defaults."""
    row = job_row(**{**RUNNING, "dead_letter": "billing.dead", "priority": 4})
    error = ErrorEntry(message="boom", type="RuntimeError", at=NOW, attempt=1)
    letter = t.dead_letter_job(row, error, FailureReason.TIMEOUT, NOW)
    assert (letter.workflow, letter.priority, letter.run_at) == ("billing.dead", 4, NOW)
    assert (letter.max_attempts, letter.retry) == (DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY)
    payload = codec.decode(letter.payload)
    assert (payload["job_id"], payload["payload"], payload["failure_reason"]) == (
        7, {"amount": 5}, "timeout",
    )  # fmt: skip
    assert payload["error"]["message"] == "boom"


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (codec.encode({"blob": "x" * (codec.MAX_VALUE_BYTES - 50)}, what="p"), "limit"),
        ("[" * 5_000 + "]" * 5_000, "RecursionError"),
    ],
    ids=["too large", "too deep"],
)
def test_a_dead_letter_leaves_out_a_payload_it_cannot_carry(payload: str, words: str) -> None:
    """A payload that makes the dead letter too large, or cannot be decoded, is left
    out: ``payload`` None and ``payload_omitted`` saying why."""
    row = job_row(**{**RUNNING, "dead_letter": "billing.dead", "payload": payload})
    error = ErrorEntry(message="boom", type="RuntimeError", at=NOW, attempt=1)
    letter = t.dead_letter_job(row, error, FailureReason.HANDLER_ERROR, NOW)
    carried = codec.decode(letter.payload)
    assert (carried["job_id"], carried["payload"]) == (7, None)
    assert carried["error"]["message"] == "boom"
    assert carried["payload_omitted"].startswith("the payload of job 7 (")
    assert words in carried["payload_omitted"]


def token(status: TokenStatus, timeout_at: datetime | None = None) -> Token:
    """A stored token."""
    return Token(
        id="tok",
        job_id=None,
        status=status,
        output=None,
        tags=(),
        timeout_at=timeout_at,
        created_at=EARLIER,
        completed_at=None,
    )


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (token(TokenStatus.WAITING), None),
        (token(TokenStatus.WAITING, LATER), None),
        (token(TokenStatus.WAITING, NOW), "timed out"),
        (token(TokenStatus.TIMED_OUT, EARLIER), "timed out"),
        (token(TokenStatus.COMPLETED), "completed already"),
    ],
)
def test_which_tokens_can_be_completed(stored: Token, message: str | None) -> None:
    """Only a waiting token before its deadline can be completed."""
    if message is None:
        transitions.check_completable(stored, NOW)
    else:
        with pytest.raises(flowq.TokenError, match=message):
            transitions.check_completable(stored, NOW)
