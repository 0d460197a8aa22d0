"""``flowq doctor``'s look at a SQL store (one read transaction)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from flowq.models import JobStatus, TokenStatus
from flowq.store.report import HealthReport
from flowq.store.sql import migrate
from flowq.store.sql.base import SqlBase
from flowq.store.sql.schema import cron_schedules, jobs, tokens

__all__ = ["SqlReportVerbs"]


class SqlReportVerbs(SqlBase):
    """The health report of a SQL store."""

    async def health_report(self, stuck_after: timedelta) -> HealthReport:
        """Counts, ages and sizes (see :class:`flowq.store.report.HealthReport`)."""
        async with self._transaction() as conn:
            now = self.clock.now()
            statuses = await conn.execute(
                select(jobs.c.status, func.count()).group_by(jobs.c.status)
            )
            retrying = await conn.execute(
                select(func.count()).where(
                    jobs.c.status == JobStatus.FAILED.value, jobs.c.next_attempt_at.is_not(None)
                )
            )
            oldest = await conn.execute(
                select(func.min(jobs.c.ready_at)).where(
                    jobs.c.status == JobStatus.PENDING.value, jobs.c.ready_at <= now
                )
            )
            stuck = await conn.execute(
                select(func.count()).where(
                    jobs.c.status == JobStatus.PROCESSING.value,
                    jobs.c.locked_at < now - stuck_after,
                )
            )
            waiting = await conn.execute(
                select(func.count()).where(tokens.c.status == TokenStatus.WAITING.value)
            )
            schedules = await conn.execute(
                select(cron_schedules.c.status, func.count()).group_by(cron_schedules.c.status)
            )
            oldest_at = oldest.scalar()
            return HealthReport(
                schema_version=await migrate.applied_version(conn),
                latest_schema_version=migrate.latest_version(self.dialect.name),
                jobs_by_status={str(status): int(count) for status, count in statuses.all()},
                retrying_jobs=int(retrying.scalar() or 0),
                oldest_due_seconds=None if oldest_at is None else (now - oldest_at).total_seconds(),
                stuck_jobs=int(stuck.scalar() or 0),
                waiting_tokens=int(waiting.scalar() or 0),
                schedules_by_status={str(s): int(count) for s, count in schedules.all()},
                table_bytes=await self.dialect.table_bytes(conn),
            )
