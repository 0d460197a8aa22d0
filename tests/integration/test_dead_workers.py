"""Running workers take back the jobs of a worker that died, by themselves, and never
the jobs of a worker that is alive (its heartbeats keep its leases fresh)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

import flowq
from flowq import EventType, JobStatus
from flowq.store.base import Store
from flowq_testing import FakeClock, InMemoryStore

pytestmark = pytest.mark.anyio

DEADLINE = 15.0


async def test_a_running_worker_takes_back_a_dead_workers_job(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A job claimed by a worker that never heartbeats again is taken back once its
    lock is older than lease_timeout, and finishes in a new attempt, with no
    reclaim_stuck_jobs call."""
    attempts: list[int] = []

    @registry.workflow(name="survivor", max_attempts=3)
    async def survivor(payload: dict[str, Any], ctx: flowq.Context) -> str:
        attempts.append(ctx.job.attempt)
        return "done"

    job_id = await app.start(survivor, {})
    [orphan] = await app.store.claim_jobs("dead-worker", 1, ["survivor"])
    assert orphan.job.id == job_id
    completed = anyio.Event()
    app.on("job:completed", lambda event: completed.set())
    worker = app.create_worker(heartbeat_interval=0.02, lease_timeout=0.05)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            clock.advance(timedelta(seconds=1))  # the dead worker's lock is 1 s old now
            await completed.wait()
            await worker.stop()
    job = await app.get_job(job_id)
    assert job is not None and (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    assert attempts == [2]
    events = await app.get_job_events(job_id)
    [reclaimed] = [e for e in events if e.event_type is EventType.RECLAIMED]
    assert reclaimed.metadata["worker_id"] == "dead-worker"


class CountingStore:
    """A store that counts the looks for dead workers' jobs made through it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.looks = 0
        self.looked = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def reclaim_expired_leases(self, *args: Any, **kwargs: Any) -> int:
        taken: int = await self.inner.reclaim_expired_leases(*args, **kwargs)
        self.looks += 1
        if self.looks >= 30:
            self.looked.set()
        return taken


@pytest.fixture
async def live_app(database_url: str | None, registry: flowq.Registry) -> AsyncIterator[flowq.App]:
    """An App on the test store with the real clock (leases age in real time)."""
    if database_url is None:
        app = flowq.App(store=InMemoryStore(), registry=registry)
    else:
        app = flowq.App(database_url, registry=registry, auto_migrate=True)
    async with app:
        yield app


async def test_a_live_workers_job_is_never_taken_back(
    live_app: flowq.App, registry: flowq.Registry
) -> None:
    """While one worker runs a long job (heartbeats every 50 ms), another worker looks
    for expired leases (older than 500 ms) thirty times, over three lease timeouts of
    real time: the job stays with its worker and finishes in its first attempt."""
    app = live_app
    release = anyio.Event()
    started = anyio.Event()

    @registry.workflow(name="long")
    async def long(payload: dict[str, Any]) -> str:
        started.set()
        await release.wait()
        return "finished"

    job_id = await app.start(long, {})
    completed = anyio.Event()
    app.on("job:completed", lambda event: completed.set())
    options: dict[str, Any] = {"heartbeat_interval": 0.05, "lease_timeout": 0.5}
    runner = app.create_worker(workflows=["long"], worker_id="runner", **options)
    watcher_store = CountingStore(app.store)
    watcher = flowq.Worker(
        watcher_store,  # type: ignore[arg-type]
        registry,
        workflows=["other"],
        worker_id="watcher",
        **options,
    )
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(runner.run)
            await started.wait()
            tasks.start_soon(watcher.run)
            await watcher_store.looked.wait()
            release.set()
            await completed.wait()
            await runner.stop()
            await watcher.stop()
    job = await app.get_job(job_id)
    assert job is not None and (job.status, job.attempts) == (JobStatus.COMPLETED, 1)
    events = [e.event_type.value for e in await app.get_job_events(job_id)]
    assert events == ["added", "processing", "completed"]


def test_a_lease_shorter_than_two_heartbeats_is_refused() -> None:
    """lease_timeout below twice heartbeat_interval would take back live workers' jobs."""
    app = flowq.App(store=InMemoryStore())
    with pytest.raises(flowq.ValidationError, match="lease_timeout"):
        app.create_worker(heartbeat_interval=5, lease_timeout=9)
