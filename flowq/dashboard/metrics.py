"""``/metrics``: the overview's figures in Prometheus' text format."""

from __future__ import annotations

from datetime import datetime

from flowq.dashboard.summary import DURATION_BUCKETS, SAMPLE_SIZE, Summary
from flowq.models import JobStatus

__all__ = ["render_metrics"]

_NEWEST = f"among the newest {SAMPLE_SIZE} jobs"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _head(lines: list[str], name: str, kind: str, text: str) -> None:
    lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _by_workflow(lines: list[str], name: str, values: dict[tuple[str, str], float]) -> None:
    for (workflow, state), value in sorted(values.items()):
        lines.append(f'{name}{{workflow="{_label(workflow)}",status="{state}"}} {value:g}')


def render_metrics(summary: Summary, now: datetime) -> str:
    """The text of ``/metrics`` for ``summary`` read at ``now``."""
    store = summary.counts
    lines: list[str] = []
    exact = store.exact_up_to
    _head(lines, "flowq_jobs", "gauge", f"Jobs per status (exact up to {exact}, else estimated).")
    for state in JobStatus:
        count = store.by_status.get(state.value, 0)
        lines.append(f'flowq_jobs{{status="{state.value}"}} {count}')
    _head(lines, "flowq_jobs_estimated", "gauge", "1 when flowq_jobs of a status is an estimate.")
    for state in JobStatus:
        flag = int(state.value in store.estimated)
        lines.append(f'flowq_jobs_estimated{{status="{state.value}"}} {flag}')
    gauges = [
        ("flowq_oldest_due_job_age_seconds", "How long the longest-waiting due job has waited.",
         store.oldest_due_seconds or 0),
        ("flowq_stuck_jobs", "Processing jobs locked longer than ten minutes.", store.stuck_jobs),
        ("flowq_retrying_jobs", f"Failed jobs that will run again, among the newest {SAMPLE_SIZE} "
         "failed jobs.", summary.retrying),
        ("flowq_waiting_tokens", "Tokens nobody completed yet.", store.waiting_tokens),
        ("flowq_workers_seen", "Workers seen in the last two minutes.", len(summary.workers)),
        ("flowq_jobs_completed_last_hour", "Jobs completed in the last hour.",
         summary.completed_last_hour),
        ("flowq_jobs_failed_last_hour", "Job failures in the last hour.", summary.failed_last_hour),
        ("flowq_recent_jobs_retried", f"Jobs retried at least once {_NEWEST}.", summary.retried),
    ]  # fmt: skip
    for name, text, value in gauges:
        _head(lines, name, "gauge", text)
        lines.append(f"{name} {value:g}")
    counts: dict[tuple[str, str], float] = {}
    oldest: dict[tuple[str, str], float] = {}
    for job in summary.recent:
        key = (job.workflow, job.status.value)
        counts[key] = counts.get(key, 0) + 1
        oldest[key] = max(oldest.get(key, 0.0), (now - job.created_at).total_seconds())
    _head(lines, "flowq_recent_jobs", "gauge", f"Jobs per workflow and status {_NEWEST}.")
    _by_workflow(lines, "flowq_recent_jobs", counts)
    _head(lines, "flowq_recent_oldest_job_age_seconds", "gauge",
          f"Age of the oldest job per workflow and status {_NEWEST}.")  # fmt: skip
    _by_workflow(lines, "flowq_recent_oldest_job_age_seconds", oldest)
    name = "flowq_job_duration_seconds"
    _head(lines, name, "histogram", f"Run time of the newest {SAMPLE_SIZE} completed jobs.")
    for bound in DURATION_BUCKETS:
        count = sum(1 for d in summary.durations if d <= bound)
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {len(summary.durations)}')
    lines.append(f"{name}_sum {sum(summary.durations):.6f}")
    lines.append(f"{name}_count {len(summary.durations)}")
    return "\n".join(lines) + "\n"
