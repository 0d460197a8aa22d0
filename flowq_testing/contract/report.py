"""Contract: what operators look at (token lists, the health report)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import flowq
from flowq.models import TokenStatus
from flowq_testing.clock import FakeClock
from flowq_testing.contract.base import ContractBase, echo

__all__ = ["ReportContract"]


class ReportContract(ContractBase):
    """``get_tokens`` and ``health_report``."""

    async def test_tokens_are_listed_newest_first_by_job_and_status(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """get_tokens filters by job and status and returns the newest first."""
        first = await app.create_token(tags=["a"])
        clock.advance(timedelta(seconds=1))
        second = await app.create_token(timeout="1h")
        clock.advance(timedelta(seconds=1))
        await app.complete_token(first.id, "ok")
        assert [t.id for t in await app.get_tokens()] == [second.id, first.id]
        assert [t.id for t in await app.get_tokens(status="waiting")] == [second.id]
        assert [t.id for t in await app.get_tokens(status=TokenStatus.COMPLETED)] == [first.id]
        assert [t.id for t in await app.get_tokens(limit=1)] == [second.id]
        assert await app.get_tokens(job_id=12345) == []
        with pytest.raises(flowq.ValidationError, match="'lost'"):
            await app.get_tokens(status="lost")

    async def test_the_health_report_counts_what_an_operator_needs(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Jobs per status, failed jobs split into retrying and gave up, the oldest due
        job's wait, stuck jobs, waiting tokens and schedules."""
        await app.start(echo, {}, max_attempts=1, priority=9)
        [first] = await self.claim(app, limit=1)
        await self.fail(app, first, retry_in=timedelta(minutes=5))
        for _ in range(3):
            await app.start(echo, {})
        await app.create_token()
        await app.add_cron_job("hourly", "@hourly", echo, {})
        [claimed] = await self.claim(app, limit=1)
        await self.fail(app, claimed, retry_in=timedelta(minutes=5))
        [running] = await self.claim(app, limit=1)
        clock.advance(timedelta(minutes=20))
        report = await app.health_report(stuck_minutes=15)
        assert report.jobs_by_status == {"pending": 1, "failed": 2, "processing": 1}
        assert (report.retrying_jobs, report.gave_up_jobs) == (1, 1)
        assert report.oldest_due_seconds == 20 * 60
        assert report.stuck_jobs == 1
        assert report.waiting_tokens == 1
        assert report.schedules_by_status == {"active": 1}
        assert running.job.id != claimed.job.id
        if report.schema_version is not None:
            assert report.schema_version == report.latest_schema_version
            assert report.table_bytes and all(size > 0 for size in report.table_bytes.values())
