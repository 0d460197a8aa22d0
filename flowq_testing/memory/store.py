"""An in-memory :class:`flowq.store.base.Store` for unit tests.

:class:`InMemoryStore` mirrors, verb for verb, the semantics of
:class:`flowq.store.sql.SqlStore`: the same ids, events, dependency rules, filters
and lease fencing, without a database. Its verbs follow the SQL store's topics
(``jobs``, ``runs``, ``durable``, ``schedules``) over the tables of ``tables``, and share the job
state machine, the row mapping and the batch planning of :mod:`flowq.store`.

Every verb runs synchronously inside its coroutine (it never awaits half way), so a
verb is atomic with respect to other tasks and needs no lock; the store works from
any number of event loops. Verbs wake this process's listeners (:meth:`listen`)
exactly where the SQL store does.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from flowq.clock import Clock
from flowq.models import Job, JobEvent
from flowq.store.base import StoreCapabilities
from flowq.store.wakeups import LocalWakeups
from flowq.system_clock import SystemClock
from flowq_testing.memory.durable import MemoryDurableVerbs
from flowq_testing.memory.report import MemoryReportVerbs
from flowq_testing.memory.runs import MemoryRunVerbs
from flowq_testing.memory.schedules import MemoryScheduleVerbs
from flowq_testing.memory.workers import MemoryWorkerVerbs

__all__ = ["InMemoryStore"]


class InMemoryStore(
    MemoryScheduleVerbs, MemoryRunVerbs, MemoryDurableVerbs, MemoryReportVerbs, MemoryWorkerVerbs
):
    """flowq's tables as Python dicts: a :class:`flowq.store.base.Store` for tests.

    It behaves like the SQL store (ids from 1, never reused; the same events and
    metadata; the same filters, dependency rules and leases) but keeps nothing on
    disk. ``open``, ``close`` and ``migrate`` do nothing, and the store stays usable
    after ``close``. ``connection=`` (joining a database transaction) is refused.
    Only this process's writes wake its workers (there are no others), which poll
    every 0.1 s by default (:attr:`capabilities`).

    Args:
        clock: Where "now" comes from (the system clock by default). The attribute
            :attr:`clock` may be replaced later (``flowq.App(clock=...)`` does).

    Example:
        >>> from flowq_testing import FakeClock, InMemoryStore
        >>> app = flowq.App(store=InMemoryStore(clock=FakeClock()))
    """

    capabilities = StoreCapabilities(notifications=False, poll_interval=0.1)
    """No notifications from other processes; workers poll every 0.1 s."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.wakeups = LocalWakeups()
        self._reset_tables()

    def __repr__(self) -> str:
        return f"InMemoryStore(jobs={len(self._rows)}, events={len(self._events)})"

    # -- inspection -----------------------------------------------------------------

    def reset(self) -> None:
        """Forget every job, event, recorded call and token: the store is as new (ids
        restart at 1)."""
        self._reset_tables()

    @property
    def jobs(self) -> list[Job]:
        """Every stored job, oldest first (id ascending), as fresh snapshots."""
        return [self._job(row) for _, row in sorted(self._rows.items())]

    @property
    def events(self) -> list[JobEvent]:
        """Every stored event of every job, oldest first (id ascending)."""
        return [event.to_event() for event in self._events.values()]

    # -- connection and schema ------------------------------------------------------

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release; the data stays and the store stays usable."""

    async def migrate(self) -> list[str]:
        """There is no schema: nothing to apply."""
        return []

    async def listen(self, on_wake: Callable[[str], None], *, remote: bool = True) -> None:
        """Call ``on_wake(hint)`` after this store's writes that may wake workers,
        until cancelled. There are no other processes, so ``remote`` changes nothing."""
        self.wakeups.add_listener(on_wake)
        try:
            await anyio.sleep_forever()
        finally:
            self.wakeups.remove_listener(on_wake)
