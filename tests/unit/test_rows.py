"""Row mapping (flowq.store.rows): records <-> column values, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import flowq
from flowq.models import ErrorEntry, EventType, JobStatus, TokenStatus
from flowq.replay import RecordedCall
from flowq.store import rows
from flowq.store.base import Lease, NewJob, NewToken

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def new_job(**changes: Any) -> NewJob:
    """A validated job with every option set, and ``changes``."""
    values: dict[str, Any] = {
        "workflow": "billing.charge",
        "payload": '{"amount": 5}',
        "priority": 3,
        "max_attempts": 4,
        "run_at": NOW + timedelta(minutes=1),
        "retry": flowq.RetryPolicy(2, backoff=False, max_delay=60, jitter=False),
        "timeout": timedelta(seconds=90),
        "force_kill_on_timeout": True,
        "tags": ("billing", "eu"),
        "idempotency_key": "charge-5",
        "group": "payments",
        "depends_on": (),
        "depends_on_tags": (),
        "dead_letter": "billing.dead",
        "parent_job_id": 2,
        "parent_outcome_seq": 6,
    }
    return NewJob(**{**values, **changes})


def test_a_new_row_has_every_column() -> None:
    """new_job_row fills exactly the columns of flowq_jobs, in table order."""
    assert tuple(rows.new_job_row(new_job(), 9, NOW)) == rows.JOB_COLUMNS
    assert set(rows.CLAIMED_COLUMNS) <= set(rows.JOB_COLUMNS)


def test_a_new_row_reads_back_as_the_job() -> None:
    """A stored new job reads back with every option as given, pending, no attempt."""
    given = new_job()
    job = rows.job_from_row(rows.new_job_row(given, 9, NOW), (1, 2))
    assert (job.id, job.workflow, job.payload, job.status) == (
        9, "billing.charge", {"amount": 5}, JobStatus.PENDING,
    )  # fmt: skip
    assert (job.priority, job.attempts, job.max_attempts, job.run_at) == (3, 0, 4, given.run_at)
    assert (job.tags, job.group, job.timeout, job.retry) == (
        ("billing", "eu"), "payments", timedelta(seconds=90), given.retry,
    )  # fmt: skip
    assert (job.depends_on, job.dead_letter, job.parent_job_id) == ((1, 2), "billing.dead", 2)
    assert job.force_kill_on_timeout and job.created_at == NOW
    assert job.output is None and job.error_history == ()


def test_run_at_none_means_now() -> None:
    """A job without run_at is due when it is added."""
    row = rows.new_job_row(new_job(run_at=None), 9, NOW)
    assert row["run_at"] == row["ready_at"] == row["created_at"] == NOW


def test_header_carries_what_running_needs() -> None:
    """A JobHeader has the identity and run settings of the row, nothing decoded."""
    row = {**rows.new_job_row(new_job(), 9, NOW), "attempts": 2, "tags": ["billing"]}
    header = rows.header_from_row({column: row[column] for column in rows.CLAIMED_COLUMNS})
    assert (header.id, header.workflow, header.priority, header.attempts) == (
        9, "billing.charge", 3, 2,
    )  # fmt: skip
    assert (header.max_attempts, header.tags, header.group, header.timeout) == (
        4, ("billing",), "payments", timedelta(seconds=90),
    )  # fmt: skip
    assert header.retry == new_job().retry and header.parent_job_id == 2
    assert header.force_kill_on_timeout is True


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("timeout_ms", 2**62, "stored timeout (4611686018427387904 ms) cannot be read"),
        ("retry", '{"delay_ms": 1, "backoff": true, "max_delay_ms": 9e18, "jitter": true}',
         "stored retry policy cannot be read: OverflowError"),
        ("retry", "not json", "stored retry policy cannot be read"),
    ],
)  # fmt: skip
def test_a_header_says_what_it_could_not_read(column: str, value: Any, words: str) -> None:
    """A stored timeout or retry policy that cannot be read does not raise: the header
    carries a default in its place and says why in ``unreadable``."""
    row = {**rows.new_job_row(new_job(), 9, NOW), column: value}
    header = rows.header_from_row({c: row[c] for c in rows.CLAIMED_COLUMNS})
    assert header.unreadable is not None and words in header.unreadable
    assert header.id == 9
    if column == "timeout_ms":
        assert header.timeout is None and header.retry == new_job().retry
    else:
        assert header.timeout == timedelta(seconds=90) and header.retry == flowq.RetryPolicy()
    readable = rows.header_from_row({c: rows.new_job_row(new_job(), 9, NOW)[c]
                                     for c in rows.CLAIMED_COLUMNS})  # fmt: skip
    assert readable.unreadable is None


@pytest.mark.parametrize(
    ("duration", "stored"),
    [
        (None, None),
        (timedelta(microseconds=1), 1),
        (timedelta(milliseconds=1500), 1500),
        (timedelta(hours=1), 3_600_000),
    ],
)
def test_durations_are_whole_milliseconds(duration: timedelta | None, stored: int | None) -> None:
    """Durations are stored as milliseconds, at least 1."""
    assert rows.to_ms(duration) == stored
    if duration is not None and duration >= timedelta(milliseconds=1):
        assert rows.from_ms(stored) == duration


def test_retry_policies_and_errors_round_trip() -> None:
    """Retry policies and error histories survive their JSON text."""
    policy = flowq.RetryPolicy("1500ms", backoff=True, max_delay="2m", jitter=False)
    assert rows.decode_retry(rows.encode_retry(policy)) == policy
    errors = (ErrorEntry(message="boom", type="KeyError", at=NOW, attempt=1),)
    assert rows.decode_errors(rows.encode_errors(errors)) == errors
    assert rows.decode_errors("[]") == ()


@pytest.mark.parametrize(
    ("changes", "columns"),
    [
        ({"priority": 5}, {"priority": 5}),
        ({"group": "g"}, {"group_name": "g"}),
        ({"timeout": timedelta(seconds=2)}, {"timeout_ms": 2000}),
        ({"tags": ["a", "b"]}, {"tags": ("a", "b")}),
        ({"run_at": NOW}, {"run_at": NOW, "ready_at": NOW}),
    ],
)
def test_edits_become_columns(changes: dict[str, Any], columns: dict[str, Any]) -> None:
    """Job field names of edit_job map to their columns (run_at moves ready_at too)."""
    assert rows.column_values(changes) == columns


def test_edits_of_other_fields_are_refused() -> None:
    """Only EDITABLE_FIELDS may change."""
    with pytest.raises(flowq.ValidationError, match="cannot change attempts, status"):
        rows.column_values({"status": "completed", "attempts": 0})


def test_only_changed_columns_are_written() -> None:
    """changed_columns keeps what differs (lists equal tuples); edited_fields names them."""
    row = rows.new_job_row(new_job(), 9, NOW)
    values = rows.column_values({"tags": ["billing", "eu"], "priority": 3, "group": "other"})
    changed = rows.changed_columns(row, values)
    assert changed == {"group_name": "other"}
    assert rows.edited_fields(changed) == ["group"]
    later = NOW + timedelta(hours=1)
    moved = rows.changed_columns(row, rows.column_values({"run_at": later}))
    assert moved == {"run_at": later, "ready_at": later}
    assert rows.edited_fields(moved) == ["run_at"]


def call(seq: int, output: str = "1") -> RecordedCall:
    """A recorded call at ``seq``."""
    return RecordedCall(
        seq=seq,
        name=f"step{seq}",
        attempt=1,
        output=output,
        error=None,
        started_at=NOW,
        completed_at=NOW,
    )


def test_recorded_calls_round_trip() -> None:
    """A call's row reads back as the call; its public view decodes output."""
    row = rows.call_row(9, call(0, '{"a": 1}'))
    assert row["job_id"] == 9 and tuple(row)[1:] == rows.CALL_COLUMNS
    assert rows.recorded_call(row) == call(0, '{"a": 1}')
    assert rows.step_record(call(0, '{"a": 1}')).output == {"a": 1}


def test_record_calls_answers_each_call_as_stored() -> None:
    """Stored calls come back as given, kept earlier successes instead, stale ones None."""
    held = Lease(1, 1, "w")
    stale = Lease(2, 1, "w")
    earlier = call(1, '"first"')
    answered = rows.as_stored(
        [(held, call(0)), (held, call(1)), (stale, call(0))],
        {(1, 0): None, (1, 1): earlier},
    )
    assert answered == [call(0), earlier, None]


def test_tokens_and_events_round_trip() -> None:
    """A new token reads back waiting; an event row decodes its metadata."""
    row = rows.token_row(NewToken(id="tok", tags=("a",), timeout_at=None), 9, NOW)
    token = rows.token_from_row(row)
    assert (token.id, token.job_id, token.status, token.tags) == (
        "tok",
        9,
        TokenStatus.WAITING,
        ("a",),
    )
    meta = rows.event_metadata({"worker_id": "w"})
    event = rows.event_from_row(
        {"id": 1, "job_id": 9, "event_type": "processing", "at": NOW, "metadata": meta}
    )
    assert event.event_type is EventType.PROCESSING and event.metadata == {"worker_id": "w"}
    assert rows.event_metadata({}) is None and rows.event_metadata(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-01 12:00:00.000005",  # how flowq stores times on SQLite (naive UTC)
        "2030-01-01 12:00:00",
        "2030-01-01T12:00:00.000005+00:00",  # with an offset of its own: read as UTC
        "2030-01-01 12:00:00.000005+02:00",
    ],
)
def test_sqlite_times_read_back_as_aware_utc(text: str) -> None:
    """The SQLite store reads stored time text as the UTC time it wrote (the fast parse
    and its fallback agree with parsing and then setting UTC)."""
    from flowq.store.sql.sqlite import read_time, stored_time

    found = read_time(text)
    assert found == datetime.fromisoformat(text).replace(tzinfo=UTC)
    assert found is not None and found.tzinfo is UTC
    assert read_time(stored_time(NOW + timedelta(microseconds=5))) == NOW + timedelta(
        microseconds=5
    )
    assert read_time(None) is None
