"""A job's timeline: its recorded steps and waits as bars on one time axis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowq.models import Job, JobStatus, StepRecord

__all__ = ["Bar", "Timeline", "build_timeline", "format_duration"]


@dataclass(frozen=True, slots=True)
class Bar:
    """One row of the timeline.

    Attributes:
        label: What ran or waited (a step's name, "durable wait"...).
        kind: ``step``, ``failed``, ``wait``, ``token``, ``child`` or ``internal``.
        start: When it began.
        end: When it ended (or will: a wait's wake time).
        left: Its start, in percent of the axis.
        width: Its length, in percent of the axis (at least a sliver).
        detail: What to show beside it (duration, wake time, reason).
        child_id: The child job it started, if any.
    """

    label: str
    kind: str
    start: datetime
    end: datetime
    left: float
    width: float
    detail: str
    child_id: int | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    """The axis (``start`` to ``end``) and its bars, in call order."""

    start: datetime
    end: datetime
    bars: list[Bar]


def format_duration(delta: timedelta) -> str:
    """``delta`` for people: ``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 h 3 min``."""
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600)} h"


def _clock(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _span(step: StepRecord, job: Job) -> tuple[str, str, datetime, datetime, str, int | None]:
    """(label, kind, start, end, detail, child id) of one recorded call."""
    start, end = step.started_at, step.completed_at
    took = format_duration(end - start)
    if step.name == "@timer":
        wake = _moment(step.output) or end
        return (
            "durable wait",
            "wait",
            end,
            max(wake, end),
            f"wakes at {wake:%Y-%m-%d %H:%M:%S} UTC",
            None,
        )
    if step.name == "@wait_token":
        return ("waiting for a token", "token", start, end, f"waited {took}", None)
    if step.name.startswith("@child:"):
        child = step.output if isinstance(step.output, int) else None
        return (f"started child {step.name[7:]}", "child", start, end, took, child)
    if step.name == "@child_result":
        return ("child finished", "child", start, end, f"waited {took}", None)
    if step.name.startswith("@"):
        return (step.name, "internal", start, end, took, None)
    if step.error is not None:
        message = str(step.error.get("message", ""))
        return (step.name, "failed", start, end, f"{took}, failed: {message}", None)
    return (step.name, "step", start, end, took, None)


def _shown(
    spans: list[tuple[str, str, datetime, datetime, str, int | None]], until: datetime
) -> bool:
    """Whether the last bar already is the durable wait that ends at ``until``."""
    return (
        bool(spans) and spans[-1][1] == "wait" and abs((spans[-1][3] - until).total_seconds()) < 1
    )


def build_timeline(job: Job, steps: list[StepRecord], now: datetime) -> Timeline:
    """The timeline of ``job`` from its recorded ``steps``; a job waiting now gets a
    last bar for the wait (until its wake time, or ``now`` for a token)."""
    spans = []
    for step in steps:
        label, kind, start, end, detail, child = _span(step, job)
        if step.attempt > 1:  # recorded by a retry of the job
            detail = f"{detail} (attempt {step.attempt})"
        spans.append((label, kind, start, end, detail, child))
    if job.status is JobStatus.WAITING:
        since = max([s[3] for s in spans], default=job.started_at or job.created_at)
        if job.wait_token_id is not None:
            until = job.wait_until or now
            spans.append(("waiting for a token (now)", "token", since, max(until, since),
                          f"token {job.wait_token_id}"
                          + (f", times out at {_clock(until)}" if job.wait_until else ""),
                          None))  # fmt: skip
        elif job.wait_until is not None and not _shown(spans, job.wait_until):
            spans.append(("waiting (now)", "wait", since, max(job.wait_until, since),
                          f"wakes at {_clock(job.wait_until)}", None))  # fmt: skip
    begin = min([job.started_at or job.created_at, *(s[2] for s in spans)])
    finish = max(
        [job.completed_at or (now if job.status is not JobStatus.PENDING else begin)]
        + [s[3] for s in spans]
    )
    total = max((finish - begin).total_seconds(), 1e-6)
    bars = []
    for label, kind, start, end, detail, child in spans:
        left = (start - begin).total_seconds() / total * 100
        width = max((end - start).total_seconds() / total * 100, 0.4)
        width = min(width, max(100 - left, 0.4))
        bars.append(Bar(label, kind, start, end, round(left, 3), round(width, 3), detail, child))
    return Timeline(begin, finish, bars)
