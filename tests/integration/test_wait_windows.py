"""Real workers, on every store, where what a job waits for is resolved exactly between
the job's look (``settle_token`` / ``get_job`` of the child) and its parking
(``suspend_job``): the resolution wakes nobody (the job still runs), so parking must
find it and resume the job at once.

The window is hit deterministically by wrapping the store verb the job looks with. The
workers poll only every minute: the job must resume on the store's wake-up hint, not by
polling. (The PostgreSQL transaction-level interleavings are in
``test_wait_races_postgres.py``.)
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import flowq
from flowq import JobStatus, TokenStatus
from flowq.store.base import Completion

pytestmark = pytest.mark.anyio


async def run_until_completed(app: flowq.App, job_id: int) -> flowq.Job:
    """Run a worker (polling only every minute) until ``job_id`` completes."""
    done = anyio.Event()

    def on_completed(event: flowq.HookEvent) -> None:
        if event.job_id == job_id:
            done.set()

    app.on("job:completed", on_completed)
    worker = app.create_worker(concurrency=1, poll_interval=60)
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await done.wait()
            await worker.stop()
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def event_types(app: flowq.App, job_id: int) -> list[str]:
    return [event.event_type.value for event in await app.get_job_events(job_id)]


async def test_a_token_completed_as_its_job_reaches_the_wait(
    app: flowq.App, registry: flowq.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """settle_token says waiting, the token is completed, the job parks: it resumes at
    once with the token's output, in the same attempt."""

    @registry.workflow(name="approval", max_attempts=1)
    async def approval(payload: dict[str, Any], ctx: flowq.Context) -> Any:
        token = await ctx.create_token(timeout="48h")
        result = await ctx.wait_for_token(token)
        return {"ok": result.ok, "output": result.output}

    settle = app.store.settle_token
    completed_in_window: list[str] = []

    async def settle_then_complete(token_id: str) -> flowq.Token | None:
        found = await settle(token_id)
        if found is not None and found.status is TokenStatus.WAITING:
            await app.complete_token(token_id, {"approved": True})
            completed_in_window.append(token_id)
        return found  # what the job saw: it raises Suspend and parks

    monkeypatch.setattr(app.store, "settle_token", settle_then_complete)
    job_id = await app.start(approval, {})
    job = await run_until_completed(app, job_id)
    assert len(completed_in_window) == 1
    assert job.status is JobStatus.COMPLETED and job.attempts == 1
    assert job.output == {"ok": True, "output": {"approved": True}}
    assert await event_types(app, job_id) == [
        "added", "processing", "waiting", "processing", "completed",
    ]  # fmt: skip


@pytest.mark.parametrize("finish", ["complete", "cancel"])
async def test_a_child_finishing_as_its_parent_reaches_the_wait(
    app: flowq.App, registry: flowq.Registry, monkeypatch: pytest.MonkeyPatch, finish: str
) -> None:
    """ctx.call()'s get_job says the child is pending, the child completes (or is
    cancelled) elsewhere, the parent parks: it resumes at once and sees the outcome."""

    @registry.workflow(name="child", max_attempts=1)
    async def child(payload: dict[str, Any]) -> str:
        raise AssertionError("finished out of band, never run by the worker")

    @registry.workflow(name="parent", max_attempts=1)
    async def parent(payload: dict[str, Any], ctx: flowq.Context) -> str:
        try:
            return str(await ctx.call(child, {}))
        except flowq.JobFailedError as exc:
            return f"child {exc.job.status}"

    get_job = app.store.get_job
    finished_in_window: list[int] = []

    async def look_then_finish(job_id: int) -> flowq.Job | None:
        found = await get_job(job_id)
        if found is not None and found.parent_job_id is not None and not finished_in_window:
            assert found.status is JobStatus.PENDING
            finished_in_window.append(job_id)
            if finish == "cancel":
                assert await app.cancel_job(job_id)
            else:
                # Another worker runs it (this one's only slot is the parent's).
                [claimed] = await app.store.claim_jobs("elsewhere", 1, ["child"])
                assert claimed.job.id == job_id
                assert await app.store.complete_jobs([Completion(claimed.lease, '"hi"')]) == [True]
        return found  # what the parent saw: it raises Suspend and parks

    monkeypatch.setattr(app.store, "get_job", look_then_finish)
    parent_id = await app.start(parent, {})
    job = await run_until_completed(app, parent_id)
    assert len(finished_in_window) == 1
    assert job.status is JobStatus.COMPLETED and job.attempts == 1
    assert job.output == ("hi" if finish == "complete" else "child cancelled")
    assert await event_types(app, parent_id) == [
        "added", "processing", "waiting", "processing", "completed",
    ]  # fmt: skip
