"""The timeline's geometry (pure: no store)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from flowq.dashboard.timeline import build_timeline, format_duration
from flowq.models import Job, JobStatus, RetryPolicy, StepRecord

T0 = datetime(2030, 1, 1, tzinfo=UTC)


BASE = Job(
    id=1, workflow="w", payload=None, status=JobStatus.COMPLETED, priority=0, attempts=1,
    max_attempts=3, run_at=T0, next_attempt_at=None, tags=(), idempotency_key=None,
    group=None, depends_on=(), timeout=None, force_kill_on_timeout=False,
    retry=RetryPolicy(), progress=None, output=None, error_history=(), failure_reason=None,
    pending_reason=None, wait_until=None, wait_token_id=None, dead_letter=None,
    dead_letter_job_id=None, created_at=T0, started_at=T0,
    completed_at=T0 + timedelta(seconds=100), last_failed_at=None, last_retried_at=None,
    last_cancelled_at=None,
)  # fmt: skip


def _job(**changes: Any) -> Job:
    return dataclasses.replace(BASE, **changes)


def _step(seq: int, name: str, start: float, end: float, output: object = None) -> StepRecord:
    return StepRecord(
        seq=seq, name=name, attempt=1, output=output, error=None,
        started_at=T0 + timedelta(seconds=start), completed_at=T0 + timedelta(seconds=end),
    )  # fmt: skip


def test_bars_are_placed_on_one_axis() -> None:
    """A 10 s step, a wait until 90 s, a 10 s step: left and width in percent."""
    wake = (T0 + timedelta(seconds=90)).isoformat()
    steps = [_step(0, "a", 0, 10), _step(1, "@timer", 10, 10, wake), _step(2, "b", 90, 100)]
    timeline = build_timeline(_job(), steps, T0 + timedelta(seconds=500))
    assert [(b.kind, b.left, b.width) for b in timeline.bars] == [
        ("step", 0, 10), ("wait", 10, 80), ("step", 90, 10),
    ]  # fmt: skip
    assert "wakes at 2030-01-01 00:01:30 UTC" in timeline.bars[1].detail


def test_a_job_waiting_now_gets_a_last_bar() -> None:
    """A job waiting on a token shows the wait up to its timeout; children are linked."""
    job = _job(status=JobStatus.WAITING, completed_at=None, wait_token_id="tok",
               wait_until=T0 + timedelta(seconds=100))  # fmt: skip
    steps = [_step(0, "@child:kid", 0, 10, 42), _step(1, "@token", 10, 20, "tok")]
    timeline = build_timeline(job, steps, T0 + timedelta(seconds=50))
    assert timeline.bars[0].child_id == 42 and timeline.bars[0].kind == "child"
    assert timeline.bars[-1].kind == "token" and "times out" in timeline.bars[-1].detail
    assert timeline.bars[-1].left == 20 and timeline.bars[-1].width == 80


def test_durations_read_well() -> None:
    """Milliseconds, seconds, minutes, hours, days."""
    assert [format_duration(timedelta(seconds=s)) for s in (0.25, 12.34, 245, 7380, 90000)] == [
        "250 ms", "12.3 s", "4 min 5 s", "2 h 3 min", "1 d 1 h",
    ]  # fmt: skip


def test_a_durable_wait_in_progress_is_one_bar() -> None:
    """A job parked on its recorded timer shows that wait once, not twice."""
    wake = T0 + timedelta(seconds=100)
    job = _job(status=JobStatus.WAITING, completed_at=None, wait_until=wake)
    steps = [_step(0, "a", 0, 10), _step(1, "@timer", 10, 10, wake.isoformat())]
    timeline = build_timeline(job, steps, T0 + timedelta(seconds=50))
    assert [b.kind for b in timeline.bars] == ["step", "wait"]
    assert timeline.bars[-1].width == 90


def test_steps_of_a_retry_say_their_attempt() -> None:
    """A step recorded by the job's second attempt says so."""
    retried = dataclasses.replace(_step(1, "b", 10, 20), attempt=2)
    timeline = build_timeline(_job(attempts=2), [_step(0, "a", 0, 10), retried], T0)
    assert [b.detail for b in timeline.bars] == ["10.0 s", "10.0 s (attempt 2)"]
