"""Group commit: outcomes of concurrent jobs share one store call, others pass through."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence

import anyio
import pytest

import flowq
from flowq.errors import DatabaseUnavailableError
from flowq.store.base import Completion
from flowq.store.batching import Batcher, BatchingStore
from flowq_testing import FakeClock, InMemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """flowq runs on asyncio."""
    return "asyncio"


class SlowFirstFlush(InMemoryStore):
    """An in-memory store whose first complete_jobs waits until released, and which
    remembers the size of every batch it got."""

    def __init__(self) -> None:
        super().__init__(clock=FakeClock())
        self.batches: list[int] = []
        self.release = anyio.Event()

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[bool]:
        self.batches.append(len(completions))
        if len(self.batches) == 1:
            await self.release.wait()
        return await super().complete_jobs(completions)


async def test_completions_arriving_during_a_flush_share_the_next_one() -> None:
    """One completion flushes at once; the nine that arrive meanwhile go out together,
    and each caller gets its own result (False for a stale lease)."""
    inner = SlowFirstFlush()
    registry = flowq.Registry()

    @registry.workflow(name="noop")
    async def noop(payload: dict[str, int]) -> None:
        return None

    app = flowq.App(store=inner, registry=registry, clock=inner.clock)
    for n in range(10):
        await app.start(noop, {"n": n})
    claimed = await inner.claim_jobs("w", 10, ["noop"])
    batching = BatchingStore(inner)
    results: dict[int, list[bool]] = {}

    async def complete(index: int, lease_id: int) -> None:
        lease = claimed[index].lease
        stale = index == 9
        completion = Completion(type(lease)(lease.job_id, lease_id + stale, lease.worker_id), None)
        results[index] = await batching.complete_jobs([completion])

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(batching.run)
            tasks.start_soon(complete, 0, claimed[0].lease.lease_id)
            await anyio.wait_all_tasks_blocked()
            for index in range(1, 10):
                tasks.start_soon(complete, index, claimed[index].lease.lease_id)
            await anyio.wait_all_tasks_blocked()
            inner.release.set()
            while len(results) < 10:
                await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
    assert inner.batches == [1, 9]
    assert results == {i: [i != 9] for i in range(10)}


async def test_every_other_verb_passes_through() -> None:
    """Reads and writes that are not batched go straight to the wrapped store."""
    inner = InMemoryStore(clock=FakeClock())
    batching = BatchingStore(inner)
    assert batching.store.clock is inner.clock
    assert await batching.store.get_job(1) is None
    assert await batching.store.load_history(1) == []


async def _submit_together(batcher: Batcher[int, int], items: list[int]) -> dict[int, object]:
    """Submit each item from its own task while the first flush is blocked, so that
    the others share the second batch; return each item's result or exception."""
    outcomes: dict[int, object] = {}

    async def submit(item: int) -> None:
        try:
            [outcomes[item]] = await batcher.submit([item])
        except Exception as exc:
            outcomes[item] = exc

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(batcher.run)
            for item in items:
                tasks.start_soon(submit, item)
            while len(outcomes) < len(items):
                await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
    return outcomes


async def test_a_batch_with_a_refused_item_is_written_again_item_by_item() -> None:
    """One item the database refuses fails its own caller only: the batch is written
    again one item at a time (nothing of a failed batch was committed)."""
    flushed: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        flushed.append(list(items))
        if 3 in items:
            raise RuntimeError("refused: 3")
        return [item * 10 for item in items]

    outcomes = await _submit_together(Batcher(flush), [1, 2, 3, 4])
    assert isinstance(outcomes.pop(3), RuntimeError)
    assert outcomes == {1: 10, 2: 20, 4: 40}
    assert [1, 2, 3, 4] in flushed and flushed[-4:] == [[1], [2], [3], [4]]


async def test_an_unreachable_database_fails_the_whole_batch_at_once() -> None:
    """DatabaseUnavailableError is not one item's fault: every caller gets it (and
    retries), without a write per item."""
    flushed: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        flushed.append(list(items))
        raise DatabaseUnavailableError("down")

    outcomes = await _submit_together(Batcher(flush), [1, 2, 3])
    assert all(isinstance(o, DatabaseUnavailableError) for o in outcomes.values())
    assert sum(len(batch) for batch in flushed) == 3  # each item written once


class Item:
    """A batch item whose lifetime a test can follow (weak references)."""

    def __init__(self, n: int) -> None:
        self.n = n


async def test_a_written_batch_is_not_kept_while_the_batcher_waits() -> None:
    """Once a batch is written and its callers have their results, the batcher keeps
    no reference to its items or results while it waits for the next one (it used to
    keep the last batch, outputs included, for as long as the worker idled)."""

    async def flush(items: Sequence[Item]) -> list[Item]:
        return [Item(item.n * 10) for item in items]

    batcher: Batcher[Item, Item] = Batcher(flush)
    items = [Item(n) for n in range(3)]
    watched = [weakref.ref(item) for item in items]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(batcher.run)
            results = await batcher.submit(items)
            watched += [weakref.ref(result) for result in results]
            assert [result.n for result in results] == [0, 10, 20]
            del items, results
            await anyio.wait_all_tasks_blocked()
            gc.collect()
            assert [ref() for ref in watched] == [None] * 6
            tasks.cancel_scope.cancel()
