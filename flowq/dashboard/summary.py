"""What the overview and ``/metrics`` show, each read with bounded work.

Counts per status come from the store's ``count_jobs``: exact up to
:data:`~flowq.store.report.EXACT_UP_TO` jobs of a status, estimated above on
PostgreSQL (and marked so). The store has no count per workflow or per time window,
so those are taken from the newest :data:`SAMPLE_SIZE` jobs (and the newest
``SAMPLE_SIZE`` completed and failed jobs), and say so; so are the failed jobs that
will retry.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from flowq.client import App
from flowq.models import Job, JobStatus
from flowq.store.report import EXACT_UP_TO, JobCounts
from flowq.store.workers import WorkerRecord

__all__ = ["DURATION_BUCKETS", "SAMPLE_SIZE", "WORKERS_WINDOW", "Summary", "summarize"]

SAMPLE_SIZE = 1000
WORKERS_WINDOW = timedelta(minutes=2)
"""Workers seen within this window are listed on the overview (they record themselves
every heartbeat, 5 s by default)."""
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


@dataclass(frozen=True, slots=True)
class Summary:
    """The overview's figures.

    Attributes:
        counts: The store's bounded counts (per status, exact or estimated; the
            oldest due wait, stuck jobs, waiting tokens).
        workers: Workers seen within :data:`WORKERS_WINDOW`, the most recent first.
        recent: The newest jobs (at most ``SAMPLE_SIZE``), newest first.
        by_workflow: ``{workflow: {status: count}}`` over ``recent``.
        completed_last_hour: Jobs completed in the last hour (among the newest
            ``SAMPLE_SIZE`` completed; ``capped`` says the true figure may be higher).
        failed_last_hour: The same for failures.
        capped: Whether a last-hour figure reached the sample's size.
        per_minute: Completed and failed counts for each of the last 60 minutes
            (oldest first).
        stuck: Processing jobs locked longer than ten minutes (newest 200 looked at).
        durations: Run time in seconds of each recent completed job.
        retried: Recent jobs that were retried at least once.
        retrying: Failed jobs that will run again, among the newest ``SAMPLE_SIZE``
            failed jobs (``capped`` says there may be more).
    """

    counts: JobCounts
    workers: list[WorkerRecord]
    recent: list[Job]
    by_workflow: dict[str, dict[str, int]]
    completed_last_hour: int
    failed_last_hour: int
    capped: bool
    per_minute: list[tuple[int, int]]
    stuck: list[Job]
    durations: list[float]
    retried: int
    retrying: int


async def summarize(app: App, now: datetime, *, stuck_minutes: float = 10) -> Summary:
    """Read the overview's figures (six bounded reads, run concurrently)."""
    found: dict[str, list[Job]] = {}
    counted: list[JobCounts] = []
    seen: list[WorkerRecord] = []

    async def jobs(name: str, status: JobStatus | None, limit: int) -> None:
        found[name] = await app.get_jobs(status=status, limit=limit)

    async def counts() -> None:
        stuck_after = timedelta(minutes=stuck_minutes)
        counted.append(await app.store.count_jobs(stuck_after, exact_up_to=EXACT_UP_TO))

    async def workers() -> None:
        seen.extend(await app.get_workers(seen_within=WORKERS_WINDOW))

    await app.open()
    # Independent reads: at once, so the page costs the slowest one, not their sum.
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(counts)
        tasks.start_soon(workers)
        tasks.start_soon(jobs, "recent", None, SAMPLE_SIZE)
        tasks.start_soon(jobs, "completed", JobStatus.COMPLETED, SAMPLE_SIZE)
        tasks.start_soon(jobs, "failed", JobStatus.FAILED, SAMPLE_SIZE)
        tasks.start_soon(jobs, "processing", JobStatus.PROCESSING, 200)
    [job_counts] = counted
    recent, completed, failed = found["recent"], found["completed"], found["failed"]
    processing = found["processing"]
    by_workflow: dict[str, Counter[str]] = {}
    for job in recent:
        by_workflow.setdefault(job.workflow, Counter())[job.status.value] += 1
    hour_ago = now - timedelta(hours=1)
    done_times = [j.completed_at for j in completed if j.completed_at and j.completed_at > hour_ago]
    fail_times = [
        j.last_failed_at for j in failed if j.last_failed_at and j.last_failed_at > hour_ago
    ]
    per_minute = [(0, 0)] * 60
    for times, index in ((done_times, 0), (fail_times, 1)):
        for moment in times:
            minute = min(int((moment - hour_ago).total_seconds() // 60), 59)
            pair = list(per_minute[minute])
            pair[index] += 1
            per_minute[minute] = (pair[0], pair[1])
    stuck_before = now - timedelta(minutes=stuck_minutes)
    return Summary(
        counts=job_counts,
        workers=seen,
        recent=recent,
        by_workflow={name: dict(counts) for name, counts in sorted(by_workflow.items())},
        completed_last_hour=len(done_times),
        failed_last_hour=len(fail_times),
        capped=len(completed) == SAMPLE_SIZE or len(failed) == SAMPLE_SIZE,
        per_minute=per_minute,
        stuck=[j for j in processing if j.locked_at is not None and j.locked_at < stuck_before],
        durations=[
            (j.completed_at - j.started_at).total_seconds()
            for j in completed
            if j.completed_at is not None and j.started_at is not None
        ],
        retried=sum(1 for j in recent if j.last_retried_at is not None or j.attempts > 1),
        retrying=sum(1 for j in failed if j.next_attempt_at is not None),
    )
