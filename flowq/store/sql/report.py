"""``flowq doctor``'s look at a SQL store, and the dashboard's cheaper one (one read
transaction each)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from flowq.models import JobStatus, TokenStatus
from flowq.store.report import HealthReport, JobCounts
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
            by_status = await _exact_counts(conn)
            retrying = await conn.execute(
                select(func.count()).where(
                    jobs.c.status == JobStatus.FAILED.value, jobs.c.next_attempt_at.is_not(None)
                )
            )
            backlog = await _backlog(conn, now, stuck_after)
            schedules = await conn.execute(
                select(cron_schedules.c.status, func.count()).group_by(cron_schedules.c.status)
            )
            return HealthReport(
                schema_version=await migrate.applied_version(conn),
                latest_schema_version=migrate.latest_version(self.dialect.name),
                jobs_by_status=by_status,
                retrying_jobs=int(retrying.scalar() or 0),
                oldest_due_seconds=backlog.oldest_due_seconds,
                stuck_jobs=backlog.stuck_jobs,
                waiting_tokens=backlog.waiting_tokens,
                schedules_by_status={str(s): int(count) for s, count in schedules.all()},
                table_bytes=await self.dialect.table_bytes(conn),
            )

    async def count_jobs(self, stuck_after: timedelta, *, exact_up_to: int) -> JobCounts:
        """Bounded counts (see :class:`flowq.store.report.JobCounts`).

        On PostgreSQL each status is counted through ``ix_flowq_jobs_status_id`` up to
        ``exact_up_to + 1`` rows (an index-only scan), and a status with more is
        estimated from the planner's statistics (``pg_class.reltuples`` times the
        status' frequency in ``pg_stats``). SQLite counts exactly.
        """
        async with self._transaction() as conn:
            now = self.clock.now()
            if self.dialect.name == "postgresql":
                by_status, estimated = await _capped_counts(conn, exact_up_to)
            else:
                by_status, estimated = await _exact_counts(conn), frozenset()
            backlog = await _backlog(conn, now, stuck_after)
            return JobCounts(
                by_status=by_status,
                estimated=estimated,
                exact_up_to=exact_up_to,
                oldest_due_seconds=backlog.oldest_due_seconds,
                stuck_jobs=backlog.stuck_jobs,
                waiting_tokens=backlog.waiting_tokens,
            )


class _Backlog(NamedTuple):
    """What both reports tell besides the counts by status.

    Attributes:
        oldest_due_seconds: How long the longest-waiting due pending job has waited
            (``None``: no pending job is due).
        stuck_jobs: Processing jobs whose lock is older than ``stuck_after``.
        waiting_tokens: Tokens nobody completed yet.
    """

    oldest_due_seconds: float | None
    stuck_jobs: int
    waiting_tokens: int


async def _exact_counts(conn: AsyncConnection) -> dict[str, int]:
    """The number of jobs in each status (statuses without jobs left out)."""
    statuses = await conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
    return {str(status): int(count) for status, count in statuses.all()}


async def _backlog(conn: AsyncConnection, now: datetime, stuck_after: timedelta) -> _Backlog:
    """The oldest due job's wait, the stuck jobs and the waiting tokens, as of ``now``."""
    oldest = await conn.execute(
        select(func.min(jobs.c.ready_at)).where(
            jobs.c.status == JobStatus.PENDING.value, jobs.c.ready_at <= now
        )
    )
    oldest_at = oldest.scalar()
    stuck = await conn.execute(
        select(func.count()).where(
            jobs.c.status == JobStatus.PROCESSING.value,
            jobs.c.locked_at < now - stuck_after,
        )
    )
    waiting = await conn.execute(
        select(func.count()).where(tokens.c.status == TokenStatus.WAITING.value)
    )
    return _Backlog(
        oldest_due_seconds=None if oldest_at is None else (now - oldest_at).total_seconds(),
        stuck_jobs=int(stuck.scalar() or 0),
        waiting_tokens=int(waiting.scalar() or 0),
    )


_STATUS_STATISTICS = text(
    "SELECT c.reltuples, s.most_common_vals::text::text[], s.most_common_freqs "
    "FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = c.relnamespace::regnamespace::text "
    "AND s.tablename = c.relname AND s.attname = 'status' "
    "WHERE c.oid = to_regclass('flowq_jobs')"
)


async def _capped_counts(
    conn: AsyncConnection, exact_up_to: int
) -> tuple[dict[str, int], frozenset[str]]:
    """PostgreSQL: each status counted up to ``exact_up_to + 1``, estimated above."""
    capped = [
        select(literal(status.value), func.count()).select_from(
            select(literal(1))
            .select_from(jobs)
            .where(jobs.c.status == status.value)
            .limit(exact_up_to + 1)
            .subquery()
        )
        for status in JobStatus
    ]
    counted = await conn.execute(capped[0].union_all(*capped[1:]))
    by_status = {str(status): int(count) for status, count in counted.all() if count}
    over = frozenset(s for s, count in by_status.items() if count > exact_up_to)
    if not over:
        return by_status, over
    statistics = (await conn.execute(_STATUS_STATISTICS)).first()
    if statistics is not None and statistics[1] is not None and statistics[0] > 0:
        total, values, frequencies = statistics
        share = dict(zip(values, frequencies, strict=False))
        for status in over:
            guess = round(float(total) * float(share.get(status, 0)))
            by_status[status] = max(guess, exact_up_to + 1)
    return by_status, over
