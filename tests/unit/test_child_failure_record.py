"""How ``ctx.call`` records a failed child: self-contained, and never too large."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import flowq
from flowq import FailureReason, JobStatus, codec
from flowq.failures import child_failure, child_failure_json
from flowq.models import ErrorEntry

MOMENT = datetime(2030, 1, 31, 12, tzinfo=UTC)


def failed_child(payload: object, output: object = None) -> flowq.Job:
    """A child job that failed for good."""
    return flowq.Job(
        id=7,
        workflow="resize",
        payload=payload,
        status=JobStatus.FAILED,
        priority=0,
        attempts=1,
        max_attempts=1,
        run_at=MOMENT,
        next_attempt_at=None,
        tags=("images",),
        idempotency_key="flowq.child:3:0",
        group=None,
        depends_on=(),
        timeout=None,
        force_kill_on_timeout=False,
        retry=flowq.RetryPolicy(),
        progress=None,
        output=output,
        error_history=(ErrorEntry(message="cannot read", type="ValueError", at=MOMENT, attempt=1),),
        failure_reason=FailureReason.HANDLER_ERROR,
        pending_reason=None,
        wait_until=None,
        wait_token_id=None,
        dead_letter=None,
        dead_letter_job_id=None,
        created_at=MOMENT,
        started_at=MOMENT,
        completed_at=None,
        last_failed_at=MOMENT,
        last_retried_at=None,
        last_cancelled_at=None,
        parent_job_id=3,
    )


def test_a_failed_child_is_recorded_in_full() -> None:
    """The record rebuilds an equal Job and the same JobFailedError message."""
    child = failed_child({"image": "b.gif"})
    decoded = child_failure(child_failure_json(child))
    assert decoded.job == child
    assert decoded.type == "flowq.errors.JobFailedError"
    assert (
        decoded.message
        == str(flowq.JobFailedError(child))
        == ("job 7 (resize) is failed: ValueError: cannot read")
    )


def test_a_child_too_large_to_record_is_recorded_without_payload_and_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the size limit the payload and output are left out; the rest is kept."""
    monkeypatch.setattr(codec, "MAX_VALUE_BYTES", 2000)
    child = failed_child("x" * 1500, output="y" * 1500)
    decoded = child_failure(child_failure_json(child))
    assert decoded.job is not None
    assert (decoded.job.payload, decoded.job.output) == (None, None)
    assert decoded.job.error_history == child.error_history
    assert decoded.job.failure_reason is FailureReason.HANDLER_ERROR


def test_an_older_child_failure_record_holds_only_the_id() -> None:
    """Records written before child failures were recorded in full read back with
    ``job`` None, so ctx.call looks the child up by ``job_id``."""
    decoded = child_failure('{"job_id": 7}')
    assert (decoded.job, decoded.job_id, decoded.message, decoded.type) == (None, 7, "", "")
