"""Contract: worker presence (the workers seen recently) and the dashboard's bounded
counts."""

from __future__ import annotations

from datetime import timedelta

import pytest

import flowq
from flowq.store.workers import WorkerPresence
from flowq_testing.clock import FakeClock
from flowq_testing.contract.base import ContractBase, echo

__all__ = ["WorkerPresenceContract"]


def _presence(
    worker_id: str, clock: FakeClock, workflows: tuple[str, ...] = ("echo",)
) -> WorkerPresence:
    return WorkerPresence(
        worker_id=worker_id, host="box-1", pid=4242, workflows=workflows, started_at=clock.now()
    )


class WorkerPresenceContract(ContractBase):
    """``record_worker``, ``remove_worker``, ``get_workers``; ``count_jobs``;
    ``get_job_by_key``."""

    async def test_workers_seen_recently_are_listed_newest_first(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A recorded worker is listed with what it said, until it is not seen within
        the window; recording again refreshes it; a removed worker is gone."""
        started = clock.now()
        await app.store.record_worker(_presence("w-old", clock, ("a", "b")))
        clock.advance(timedelta(seconds=30))
        await app.store.record_worker(_presence("w-new", clock))
        [new, old] = await app.get_workers(seen_within=60)
        assert (new.worker_id, old.worker_id) == ("w-new", "w-old")
        assert (old.host, old.pid, old.workflows) == ("box-1", 4242, ("a", "b"))
        assert old.started_at == started and old.last_seen_at == started
        assert new.last_seen_at == started + timedelta(seconds=30)
        clock.advance(timedelta(seconds=40))
        assert [w.worker_id for w in await app.get_workers(seen_within=60)] == ["w-new"]
        await app.store.record_worker(_presence("w-old", clock, ("a", "b")))
        [first, _] = await app.get_workers(seen_within="5m")
        assert first.worker_id == "w-old" and first.last_seen_at == clock.now()
        assert await app.store.remove_worker("w-old") is True
        assert await app.store.remove_worker("w-old") is False
        assert [w.worker_id for w in await app.get_workers(seen_within="5m")] == ["w-new"]

    async def test_workers_not_seen_for_a_day_are_forgotten(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A worker that died without removing itself is deleted once it has not been
        seen for a day, when another worker records itself."""
        await app.store.record_worker(_presence("w-dead", clock))
        clock.advance(timedelta(days=1, seconds=1))
        await app.store.record_worker(_presence("w-live", clock))
        assert [w.worker_id for w in await app.get_workers(seen_within="30d")] == ["w-live"]

    async def test_get_workers_refuses_a_bad_window(self, app: flowq.App) -> None:
        """The window must be a positive duration."""
        with pytest.raises(flowq.ValidationError, match="seen_within"):
            await app.get_workers(seen_within=-1)

    async def test_count_jobs_counts_small_numbers_exactly(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Below ``exact_up_to`` every status is counted exactly, with the oldest due
        job's wait, stuck jobs and waiting tokens."""
        for _ in range(4):
            await app.start(echo, {})
        await app.create_token()
        await self.claim(app, limit=1)
        clock.advance(timedelta(minutes=20))
        counts = await app.store.count_jobs(timedelta(minutes=15), exact_up_to=100)
        assert counts.by_status == {"pending": 3, "processing": 1}
        assert counts.estimated == frozenset()
        assert counts.oldest_due_seconds == 20 * 60
        assert counts.stuck_jobs == 1 and counts.waiting_tokens == 1

    async def test_count_jobs_above_the_bound_is_exact_or_a_marked_estimate(
        self, app: flowq.App
    ) -> None:
        """Above ``exact_up_to`` a store may estimate; an estimated status is named in
        ``estimated`` and its figure is more than the bound."""
        for _ in range(6):
            await app.start(echo, {})
        counts = await app.store.count_jobs(timedelta(minutes=10), exact_up_to=3)
        if "pending" in counts.estimated:
            assert counts.by_status["pending"] > 3
        else:
            assert counts.by_status["pending"] == 6
        assert counts.estimated <= {"pending"} and counts.exact_up_to == 3

    async def test_a_job_is_found_by_its_idempotency_key(self, app: flowq.App) -> None:
        """get_job_by_key finds the job added with that key, and None for another."""
        job_id = await app.start(echo, {}, idempotency_key="order-17")
        await app.start(echo, {}, idempotency_key="order-170")
        found = await app.get_job_by_key("order-17")
        assert found is not None and found.id == job_id
        assert await app.get_job_by_key("order-1") is None
