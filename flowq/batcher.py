"""Group commit: items submitted while a flush is in flight share the next flush."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio

__all__ = ["Batcher"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _Slot(Generic[ResultT]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: ResultT | None = None
        self.error: BaseException | None = None


class Batcher(Generic[ItemT, ResultT]):
    """Writes items in batches; each caller waits for its own item's result.

    ``flush(items)`` returns one result per item, in order. Nothing waits on a timer:
    the first item flushes at once, and whatever arrives during that flush goes out
    together next, so batches grow exactly as fast as writes are slower than work.

    Args:
        flush: Writes a batch (one transaction) and returns per-item results.
    """

    def __init__(self, flush: Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT]]]) -> None:
        self._flush = flush
        self._pending: list[tuple[ItemT, _Slot[ResultT]]] = []
        self._has_items = anyio.Event()

    async def submit(self, item: ItemT) -> ResultT:
        """Queue ``item`` and wait until its batch is written; return its result.

        Raises:
            Exception: Whatever the flush of its batch raised.
        """
        slot: _Slot[ResultT] = _Slot()
        self._pending.append((item, slot))
        self._has_items.set()
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    async def run(self) -> None:
        """Flush batches until cancelled (run it in the worker's task group)."""
        while True:
            await self._has_items.wait()
            batch, self._pending = self._pending, []
            self._has_items = anyio.Event()
            slots = [slot for _, slot in batch]
            try:
                with anyio.CancelScope(shield=True):
                    results = await self._flush([item for item, _ in batch])
            except Exception as exc:
                for slot in slots:
                    slot.error = exc
                    slot.done.set()
                continue
            for slot, result in zip(slots, results, strict=True):
                slot.result = result
                slot.done.set()
