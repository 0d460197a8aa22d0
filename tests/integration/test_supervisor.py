"""The supervisor: maintenance rounds on every store, time moved by the fake clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

import flowq
from flowq import JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio


async def test_one_round_does_every_task(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A stuck job is taken back, old finished jobs and old events are deleted, an
    expired token times out and its job resumes with ok=False."""

    @registry.workflow(name="quick")
    async def quick(payload: dict[str, Any]) -> str:
        return "done"

    @registry.workflow(name="approval")
    async def approval(payload: dict[str, str], ctx: flowq.Context) -> Any:
        token = await ctx.create_token(timeout=payload["timeout"])
        result = await ctx.wait_for_token(token)
        return {"ok": result.ok, "error": result.error}

    old = await app.start(quick, {})
    long_wait = await app.start(approval, {"timeout": "60d"})
    await app.create_worker().run_until_idle()
    clock.advance(timedelta(days=31))
    short_wait = await app.start(approval, {"timeout": "1h"})
    await app.create_worker().run_until_idle()
    stuck = await app.start(quick, {})
    await app.store.claim_jobs("dead-worker", 1, ["quick"])
    clock.advance(timedelta(hours=2))

    result = await app.create_supervisor().run_once()
    assert result == flowq.SupervisorResult(
        reclaimed_jobs=1, cleaned_up_jobs=1, cleaned_up_events=3, expired_tokens=1
    )
    assert await app.get_job(old) is None
    assert await app.get_job_events(long_wait) == []  # its 31-day-old events
    job = await app.get_job(stuck)
    assert job is not None and (job.status, job.locked_by) == (JobStatus.PENDING, None)
    await app.create_worker().run_until_idle()
    output = await app.result(short_wait, timeout=5)
    assert output["ok"] is False and "timed out" in output["error"]
    assert await app.create_supervisor().run_once() == flowq.SupervisorResult()


class FailingCleanup:
    """A store whose cleanup of jobs fails; everything else passes through."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def cleanup_old_jobs(self, older_than: timedelta, *, batch_size: int = 1000) -> int:
        raise RuntimeError("disk on fire")


async def test_a_failing_task_does_not_stop_the_others(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """The failure goes to on_error (sync or async) and the log; other tasks run."""

    @registry.workflow(name="quick")
    async def quick(payload: dict[str, Any]) -> str:
        return "done"

    stuck = await app.start(quick, {})
    await app.store.claim_jobs("dead-worker", 1, ["quick"])
    clock.advance(timedelta(hours=1))
    errors: list[tuple[str, str]] = []

    async def on_error(task: str, exc: Exception) -> None:
        errors.append((task, str(exc)))

    supervisor = flowq.Supervisor(FailingCleanup(app.store), clock, on_error=on_error)  # type: ignore[arg-type]
    result = await supervisor.run_once()
    assert (result.reclaimed_jobs, result.cleaned_up_jobs) == (1, 0)
    assert errors == [("cleanup_old_jobs", "disk on fire")]
    job = await app.get_job(stuck)
    assert job is not None and job.status is JobStatus.PENDING


async def test_two_supervisors_at_once_take_a_job_back_once(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Concurrent rounds: each stuck job is reclaimed by exactly one of them."""

    @registry.workflow(name="quick")
    async def quick(payload: dict[str, Any]) -> str:
        return "done"

    for _ in range(5):
        await app.start(quick, {})
    await app.store.claim_jobs("dead-worker", 5, ["quick"])
    clock.advance(timedelta(hours=1))
    results: list[flowq.SupervisorResult] = []

    async def round_of(supervisor: flowq.Supervisor) -> None:
        results.append(await supervisor.run_once())

    async with anyio.create_task_group() as tasks:
        for _ in range(2):
            tasks.start_soon(round_of, app.create_supervisor())
    assert sum(result.reclaimed_jobs for result in results) == 5
    reclaims = 0
    for job in await app.get_jobs(limit=None):
        events = await app.get_job_events(job.id)
        reclaims += sum(1 for event in events if event.event_type.value == "reclaimed")
    assert reclaims == 5


def test_bad_options_are_refused() -> None:
    """Retention and intervals are checked when the supervisor is made."""
    app = flowq.App(store=flowq_testing_store())
    with pytest.raises(flowq.ValidationError, match="cleanup_jobs_days_to_keep"):
        app.create_supervisor(cleanup_jobs_days_to_keep=-1)
    with pytest.raises(flowq.ValidationError, match="interval"):
        app.create_supervisor(interval=0)
    off = app.create_supervisor(cleanup_jobs_days_to_keep=None, reclaim_stuck_jobs=False)
    assert off.cleanup_jobs_after is None and not off.reclaim_stuck_jobs


def flowq_testing_store() -> Any:
    """A fresh in-memory store."""
    from flowq_testing import InMemoryStore

    return InMemoryStore()


async def test_cleanup_batches_of_the_chosen_size_delete_everything(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """cleanup_batch_size=3: 10 old jobs and their 30 events go, in batches of 3."""

    @registry.workflow(name="tiny")
    async def tiny(payload: dict[str, Any]) -> None:
        return None

    await app.add_jobs([flowq.JobSpec(tiny, {}) for _ in range(10)])
    await app.create_worker().run_until_idle()
    clock.advance(timedelta(days=31))
    supervisor = app.create_supervisor(reclaim_stuck_jobs=False, cleanup_batch_size=3)
    result = await supervisor.run_once()
    assert (result.cleaned_up_jobs, result.cleaned_up_events) == (10, 0)
    assert await app.get_jobs() == []
    assert await app.cleanup_old_jobs(0, batch_size=2) == 0
    with pytest.raises(flowq.ValidationError, match="batch_size"):
        await app.cleanup_old_jobs(0, batch_size=0)
