"""``flowq doctor``'s look at :class:`flowq_testing.InMemoryStore`."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from flowq.models import JobStatus, TokenStatus
from flowq.store.report import HealthReport, JobCounts
from flowq_testing.memory.tables import MemoryTables

__all__ = ["MemoryReportVerbs"]


class MemoryReportVerbs(MemoryTables):
    """The health report of the in-memory store (no schema, no sizes)."""

    async def health_report(self, stuck_after: timedelta) -> HealthReport:
        """Counts and ages (see :class:`flowq.store.report.HealthReport`)."""
        now = self._now()
        jobs = list(self._rows.values())
        due = [
            row["ready_at"]
            for row in jobs
            if row["status"] == JobStatus.PENDING.value
            and row["ready_at"] is not None
            and row["ready_at"] <= now
        ]
        return HealthReport(
            schema_version=None,
            latest_schema_version=None,
            jobs_by_status=dict(Counter(row["status"] for row in jobs)),
            retrying_jobs=sum(
                row["status"] == JobStatus.FAILED.value and row["next_attempt_at"] is not None
                for row in jobs
            ),
            oldest_due_seconds=None if not due else (now - min(due)).total_seconds(),
            stuck_jobs=sum(
                row["status"] == JobStatus.PROCESSING.value
                and row["locked_at"] is not None
                and row["locked_at"] < now - stuck_after
                for row in jobs
            ),
            waiting_tokens=sum(
                row["status"] == TokenStatus.WAITING.value for row in self._tokens.values()
            ),
            schedules_by_status=dict(Counter(row["status"] for row in self._schedules.values())),
        )

    async def count_jobs(self, stuck_after: timedelta, *, exact_up_to: int) -> JobCounts:
        """Exact counts (see :class:`flowq.store.report.JobCounts`)."""
        report = await self.health_report(stuck_after)
        return JobCounts(
            by_status=report.jobs_by_status,
            estimated=frozenset(),
            exact_up_to=exact_up_to,
            oldest_due_seconds=report.oldest_due_seconds,
            stuck_jobs=report.stuck_jobs,
            waiting_tokens=report.waiting_tokens,
        )
