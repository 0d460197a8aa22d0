"""What a running worker keeps in memory after its jobs end (issue 13, target 6).

``benchmarks/memory.py`` measures the resident size; these tests pin the structures:
once the jobs it ran have completed or parked, an idle worker holds no record of them.
"""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest
from sqlalchemy import event

import flowq
from flowq import JobStatus
from flowq.engine import RunningJob
from flowq.store.base import ClaimedJob
from flowq.store.sql.postgres import POOL_SIZE

pytestmark = pytest.mark.anyio

CONCURRENCY = 4


def alive(kind: type, workflow_prefix: str) -> int:
    """How many objects of ``kind`` (a running job or a claim) of this test's jobs are
    still referenced after a full collection (other tests of the session may leave
    theirs, in tracebacks they keep)."""
    gc.collect()
    return sum(
        1
        for obj in gc.get_objects()
        if isinstance(obj, kind) and _claim_of(obj).job.workflow.startswith(workflow_prefix)
    )


def _claim_of(obj: Any) -> ClaimedJob:
    return obj if isinstance(obj, ClaimedJob) else obj.claimed


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
        assert alive(RunningJob, "memory.") == 0
        assert alive(ClaimedJob, "memory.") == 0
        await worker.stop()


@pytest.mark.postgres
async def test_a_busy_postgres_app_reuses_its_connections(postgres_url: str) -> None:
    """Connections the pool opened for a burst are kept for the next burst, up to its
    size: after a burst of 30 concurrent transactions, a second one opens none (with
    10 kept and 20 overflow, each burst closed 20 and the next opened them again; a
    worker parking jobs at concurrency 50 opened one every ten jobs or so)."""
    opened = 0

    def count(*_: object) -> None:
        nonlocal opened
        opened += 1

    async with flowq.App(postgres_url) as app:
        store: Any = app.store
        event.listen(store.engine.sync_engine, "connect", count)
        openings = []
        for _ in range(2):
            before = opened
            held = anyio.Event()
            busy = 0

            async def transaction(held: anyio.Event) -> None:
                nonlocal busy
                async with store.engine.connect() as connection:
                    await connection.exec_driver_sql("SELECT 1")
                    busy += 1
                    if busy == POOL_SIZE:
                        held.set()
                    await held.wait()

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tasks:
                    for _ in range(POOL_SIZE):
                        tasks.start_soon(transaction, held)
            openings.append(opened - before)
        assert openings[0] > 0  # the pool grew to its size...
        assert openings[1] == 0  # ...and kept it
        assert store.engine.pool.checkedin() == POOL_SIZE
