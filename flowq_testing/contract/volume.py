"""Contract tests at volume: verbs whose work grows with the data (cascades over
dependants, cancel and edit of every match, unbounded reads, maintenance, big
batches) work on more rows than a statement may have parameters (PostgreSQL and a
default SQLite build stop at about 32,767).

They build 40,000 rows and are marked ``slow`` (each, not the class: marks of a
class reach every test of the classes made from it). The claim and add paths do not
change what most of them test, so those run once per store (the ``fast`` paths).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import flowq
from flowq import JobStatus
from flowq_testing.clock import FakeClock
from flowq_testing.contract.base import ContractBase, dead_letters, echo

__all__ = ["VOLUME", "VolumeContract"]

VOLUME = 40_000
"""Rows each test builds: more than any database's cap on a statement's parameters."""
_BATCH = 5_000


class VolumeContract(ContractBase):
    """Verbs over more rows than a statement may have parameters."""

    def one_path(self) -> None:
        """Run the test through the fast paths only (the general ones change nothing
        it checks)."""
        if self.paths != "fast":
            pytest.skip("volume: the claim and add paths do not matter here")

    async def add_dependants(self, app: flowq.App, prerequisite: int) -> list[int]:
        """Add :data:`VOLUME` jobs that depend on ``prerequisite``, in batches."""
        ids: list[int] = []
        for start in range(0, VOLUME, _BATCH):
            count = min(_BATCH, VOLUME - start)
            ids += await app.add_jobs(
                [
                    flowq.JobSpec(echo, {"n": start + i}, depends_on=[prerequisite])
                    for i in range(count)
                ]
            )
        return ids

    async def count(self, app: flowq.App, status: JobStatus) -> int:
        """How many jobs have ``status`` (read with ``get_jobs(limit=None)``)."""
        return len(await app.get_jobs(status=status, limit=None))

    @pytest.mark.slow
    async def test_a_job_with_40000_dependants_fails_for_good(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Every dependant of a job that fails for good is cancelled, however many;
        before that, all of them can be read and edited at once; after it, cleaned up."""
        self.one_path()
        root = await app.start(echo, {}, max_attempts=1)
        dependants = await self.add_dependants(app, root)
        everything = await app.get_jobs(limit=None)
        assert [job.id for job in everything] == sorted([root, *dependants], reverse=True)
        assert {job.depends_on for job in everything if job.id != root} == {(root,)}
        assert await app.edit_all_pending_jobs({"priority": 3}) == VOLUME + 1
        [claimed] = await self.claim(app, 10)
        assert claimed.job.id == root
        assert await self.fail(app, claimed, retry_in=None)
        assert await self.count(app, JobStatus.CANCELLED) == VOLUME
        last = (await app.get_job_events(dependants[-1]))[-1]
        assert last.metadata == {"reason": "dependency_failed", "dependency": root}
        clock.advance(timedelta(days=1))
        assert await app.cleanup_old_jobs(0) == VOLUME + 1
        assert await app.get_jobs(limit=None) == []

    @pytest.mark.slow
    async def test_cancel_job_with_40000_dependants(self, app: flowq.App) -> None:
        """cancel_job cancels every dependant, however many."""
        self.one_path()
        root = await app.start(echo, {})
        await self.add_dependants(app, root)
        assert await app.cancel_job(root)
        assert await self.count(app, JobStatus.CANCELLED) == VOLUME + 1

    @pytest.mark.slow
    async def test_add_40000_jobs_in_one_call(self, app: flowq.App) -> None:
        """One add_jobs of 40,000 jobs with every column set works, and so does adding
        them again (their idempotency keys return the same ids) and cancelling them all."""
        prerequisite = await app.start(echo, {})
        options: dict[str, Any] = {
            "delay": "90s",
            "priority": 7,
            "max_attempts": 4,
            "retry_delay": "2s",
            "retry_backoff": False,
            "retry_delay_max": "1m",
            "timeout": "10m",
            "force_kill_on_timeout": True,
            "tags": ["t1", "t2"],
            "group": "tenant-1",
            "dead_letter": dead_letters,
        }
        specs = [
            flowq.JobSpec(echo, {"n": i}, idempotency_key=f"key-{i}", **options)
            for i in range(VOLUME)
        ]
        ids = await app.add_jobs(specs)
        assert len(set(ids)) == VOLUME and prerequisite not in ids
        assert await app.add_jobs(specs) == ids
        job = await app.get_job(ids[-1])
        assert job is not None
        assert (job.payload, job.priority, job.group) == ({"n": VOLUME - 1}, 7, "tenant-1")
        assert await app.cancel_all_upcoming_jobs() == VOLUME + 1

    @pytest.mark.slow
    async def test_dependants_of_40000_jobs_in_one_call(self, app: flowq.App) -> None:
        """One add_jobs of 40,000 jobs with keys and a prerequisite each (the general
        path) works, and adding them again returns the same ids."""
        self.one_path()
        root = await app.start(echo, {})
        specs = [
            flowq.JobSpec(echo, {"n": i}, idempotency_key=f"key-{i}", depends_on=[root])
            for i in range(VOLUME)
        ]
        ids = await app.add_jobs(specs)
        assert len(set(ids)) == VOLUME
        assert await app.add_jobs(specs) == ids
        assert await app.cancel_all_upcoming_jobs() == VOLUME + 1

    @pytest.mark.slow
    async def test_reclaim_40000_stuck_jobs(self, app: flowq.App, clock: FakeClock) -> None:
        """One claim takes 40,000 jobs (a worker's batch size is the user's), and
        reclaim_stuck_jobs takes back every stuck job, however many."""
        for start in range(0, VOLUME, _BATCH):
            await app.add_jobs([flowq.JobSpec(echo, {"n": start + i}) for i in range(_BATCH)])
        assert len(await self.claim(app, VOLUME)) == VOLUME
        clock.advance(timedelta(minutes=11))
        assert await app.reclaim_stuck_jobs(10) == VOLUME
        assert await self.count(app, JobStatus.PENDING) == VOLUME

    @pytest.mark.slow
    async def test_reclaim_a_job_with_40000_dependants(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A stuck job whose lost attempt was its last fails for good and cancels every
        dependant, however many; the next reclaim finds nothing left."""
        self.one_path()
        root = await app.start(echo, {}, max_attempts=1)
        await self.add_dependants(app, root)
        [claimed] = await self.claim(app, 10)
        assert claimed.job.id == root
        clock.advance(timedelta(minutes=11))
        assert await app.reclaim_stuck_jobs(10) == 1
        job = await app.get_job(root)
        assert job is not None and job.status is JobStatus.FAILED
        assert await self.count(app, JobStatus.CANCELLED) == VOLUME
        assert await app.reclaim_stuck_jobs(10) == 0
