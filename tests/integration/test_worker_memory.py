"""What a running worker keeps in memory after its jobs end (issue 13, target 6).

``benchmarks/memory.py`` measures the resident size; these tests pin the structures:
once the jobs it ran have completed or parked, an idle worker holds no record of them.
"""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest

import flowq
from flowq import JobStatus
from flowq.engine import RunningJob
from flowq.store.base import ClaimedJob

pytestmark = pytest.mark.anyio

CONCURRENCY = 4


def alive(kind: type) -> int:
    """How many objects of ``kind`` are still referenced after a full collection."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


async def test_an_idle_worker_keeps_nothing_of_the_jobs_it_ran(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """After 60 jobs (completed, with a step, parked on a timer), an idle worker's
    bookkeeping is empty and no running-job record or claim of them is left in
    memory (each runner used to keep the last job it ran, with its payload and
    history, and the claim loop the last jobs it claimed)."""

    @flowq.step(name="memory.double")
    async def double(n: int) -> int:
        return n * 2

    @registry.workflow(name="memory.plain")
    async def plain(payload: dict[str, int]) -> int:
        return payload["n"]

    @registry.workflow(name="memory.stepped")
    async def stepped(payload: dict[str, int]) -> int:
        return await double(payload["n"])

    @registry.workflow(name="memory.sleeper")
    async def sleeper(payload: dict[str, int], ctx: flowq.Context) -> None:
        await ctx.sleep("1h")

    kinds: list[Any] = [plain, stepped, sleeper]
    await app.add_jobs([flowq.JobSpec(kinds[n % 3], {"n": n}) for n in range(60)])
    ended = 0
    all_ended = anyio.Event()

    def count(event: flowq.HookEvent) -> None:
        nonlocal ended
        ended += 1
        if ended == 60:
            all_ended.set()

    app.on("job:completed", count)
    app.on("job:waiting", count)
    worker = app.create_worker(concurrency=CONCURRENCY)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        with anyio.fail_after(30):
            await all_ended.wait()
        # The runner that reported the last end has nothing left to await but its
        # next job.
        await anyio.wait_all_tasks_blocked()
        assert len(await app.get_jobs(status=JobStatus.COMPLETED, limit=None)) == 40
        assert len(await app.get_jobs(status=JobStatus.WAITING, limit=None)) == 20
        assert worker.running_jobs == []
        assert len(worker._idle_runners) == 2 * CONCURRENCY
        assert worker._executing == set()
        assert not worker._queued
        assert alive(RunningJob) == 0
        assert alive(ClaimedJob) == 0
        await worker.stop()
