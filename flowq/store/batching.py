"""Group commit for a worker: a store wrapper whose outcome writes share commits.

The worker's engine writes every job's outcome and every step result through the
one store it is given. Wrapped by :class:`BatchingStore`, ``complete_jobs`` and
``record_calls`` of concurrent jobs go out together, one transaction per batch, and
each caller still waits for its own result; every other verb passes straight
through to the wrapped store.

Its events are asyncio's: ``anyio.Event()`` looks up the running async library on
every creation (~4 us), and a slot is made per write; flowq runs on asyncio only
(its drivers are), and anyio's cancel scopes cancel these waits like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio

from flowq.errors import DatabaseUnavailableError
from flowq.replay import RecordedCall

if TYPE_CHECKING:
    from flowq.store.base import Completion, Lease, Store

__all__ = ["Batcher", "BatchingStore"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _Slot(Generic[ResultT]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.result: ResultT | None = None
        self.error: BaseException | None = None


class Batcher(Generic[ItemT, ResultT]):
    """Writes items in batches; each caller waits for its own items' results.

    ``flush(items)`` returns one result per item, in order. Nothing waits on a timer:
    the first item flushes at once, and whatever arrives during that flush goes out
    together next, so batches grow exactly as fast as writes are slower than work.

    When a batch fails for another reason than an unreachable database (one item the
    database refuses), its items are written again one by one, so that only the
    callers of the items that fail alone get the error.

    Args:
        flush: Writes a batch (one transaction) and returns per-item results.
    """

    def __init__(self, flush: Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT]]]) -> None:
        self._flush = flush
        self._pending: list[tuple[ItemT, _Slot[ResultT]]] = []
        self._has_items = asyncio.Event()

    async def submit(self, items: Sequence[ItemT]) -> list[ResultT]:
        """Queue ``items`` and wait until they are written; return their results.

        Raises:
            Exception: Whatever the flush of their batch raised.
        """
        slots: list[_Slot[ResultT]] = [_Slot() for _ in items]
        self._pending.extend(zip(items, slots, strict=True))
        self._has_items.set()
        for slot in slots:
            await slot.done.wait()
            if slot.error is not None:
                raise slot.error
        return [cast(ResultT, slot.result) for slot in slots]

    async def run(self) -> None:
        """Flush batches until cancelled."""
        while True:
            await self._has_items.wait()
            self._has_items = asyncio.Event()
            # In a call of its own: nothing of a written batch stays referenced
            # (its items, results and errors) while the next one is awaited.
            await self._write_pending()

    async def _write_pending(self) -> None:
        """Write the items queued so far and hand each caller its result or error."""
        batch, self._pending = self._pending, []
        try:
            with anyio.CancelScope(shield=True):
                results = await self._flush([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, DatabaseUnavailableError):
                for _, slot in batch:
                    slot.error = exc
                    slot.done.set()
                return
            for item, slot in batch:
                await self._flush_alone(item, slot)
            return
        for (_, slot), result in zip(batch, results, strict=True):
            slot.result = result
            slot.done.set()

    async def _flush_alone(self, item: ItemT, slot: _Slot[ResultT]) -> None:
        try:
            with anyio.CancelScope(shield=True):
                [slot.result] = await self._flush([item])
        except Exception as exc:
            slot.error = exc
        slot.done.set()


class BatchingStore:
    """``store`` with group commit of ``complete_jobs`` and ``record_calls``.

    :meth:`run` must run (in the worker's task group) for those two verbs to return;
    :attr:`store` is the same object typed as a :class:`flowq.store.base.Store`.

    Args:
        inner: The store that does the work.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._completions: Batcher[Completion, bool] = Batcher(inner.complete_jobs)
        self._calls: Batcher[tuple[Lease, RecordedCall], RecordedCall | None] = Batcher(
            inner.record_calls
        )

    @property
    def store(self) -> Store:
        """This wrapper, as the Store it stands in for."""
        return cast("Store", self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<BatchingStore of {self.inner!r}>"

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[bool]:
        """Complete jobs in the next shared commit; False for each stale lease."""
        return await self._completions.submit(completions)

    async def record_calls(
        self, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        """Record durable calls in the next shared commit (results as the wrapped
        store's ``record_calls``)."""
        return await self._calls.submit(calls)

    async def run(self) -> None:
        """Flush both batches until cancelled."""
        async with anyio.create_task_group() as flushes:
            flushes.start_soon(self._completions.run)
            flushes.start_soon(self._calls.run)
