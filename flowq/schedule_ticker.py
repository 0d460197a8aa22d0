"""A worker's cron duty: save the schedules declared in code when it starts, then
enqueue due ticks as they come due (each tick once, whichever worker gets there)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

import anyio

from flowq import schedules
from flowq.clock import Clock
from flowq.errors import DatabaseUnavailableError
from flowq.registry import Registry
from flowq.store.base import Store

__all__ = ["LOOK_EVERY", "SHIELD_SECONDS", "ScheduleTicker"]

log = logging.getLogger("flowq.schedules")

SHIELD_SECONDS = 10.0
"""The longest a stopping worker waits for a look at the schedules to finish."""

LOOK_EVERY = 5.0
"""Seconds (real time) between two looks at the schedules when nothing told the worker
that they changed: schedules added or edited by another process without notifications
(SQLite, ``notify=False``) are noticed within this long."""


class ScheduleTicker:
    """Saves declared schedules and enqueues due ticks for one worker.

    Args:
        store: Where schedules live.
        registry: Where declared schedules are read.
        clock: Job time: ticks come due by it (a fake clock moves them).
        worker_id: Named in log lines.
    """

    def __init__(self, store: Store, registry: Registry, clock: Clock, worker_id: str) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.worker_id = worker_id
        self.next_at: datetime | None = None
        """The earliest next tick of the active schedules (None: none, or not looked yet)."""
        self._changed = anyio.Event()

    async def save_declared(self, workflows: Collection[str]) -> None:
        """Create or update the schedules declared in code for ``workflows``; log what
        changed and the stored schedules the code no longer declares (left in place)."""
        declared = [
            schedules.stored_form(schedule, self.registry.require(schedule.workflow))
            for schedule in self.registry.schedules()
            if schedule.workflow in workflows
        ]
        saved = await self.store.save_schedules(declared, sorted(workflows))
        for name in saved.created:
            log.info("flowq: worker %s saved the new schedule %r", self.worker_id, name)
        for name in saved.updated:
            log.info("flowq: worker %s updated the schedule %r from code", self.worker_id, name)
        for name in saved.undeclared:
            log.warning(
                "flowq: schedule %r is stored but no longer declared in code; it keeps "
                "running until removed (app.remove_cron_job)",
                name,
            )

    def changed(self) -> None:
        """Schedules changed somewhere: look again at once."""
        self._changed.set()

    async def enqueue_due(self) -> int:
        """Enqueue every due tick now; return the number of jobs enqueued."""
        total = 0
        while True:
            due = await self.store.enqueue_due_schedules()
            total += due.enqueued
            self.next_at = due.next_run_at
            if due.enqueued or due.skipped:
                log.info(
                    "flowq: worker %s enqueued %d scheduled job(s), skipped %d tick(s) "
                    "whose previous job was unfinished",
                    self.worker_id,
                    due.enqueued,
                    due.skipped,
                )
            if self.next_at is None or self.next_at > self.clock.now():
                return total

    async def run(self) -> None:
        """Enqueue due ticks as they come due, until cancelled."""
        while True:
            self._changed = anyio.Event()
            try:
                # A stopping worker cancels this task: let a look that began finish its
                # short transaction (bounded), so no connection is left half-used and
                # the process can exit.
                with anyio.CancelScope(shield=True), anyio.move_on_after(SHIELD_SECONDS):
                    await self.enqueue_due()
            except DatabaseUnavailableError as exc:
                log.warning("flowq: worker %s cannot enqueue due ticks (%s)", self.worker_id, exc)
            except Exception:  # one bad schedule must not stop the worker
                log.exception("flowq: worker %s failed to enqueue due ticks", self.worker_id)
            await self._wait()

    async def _wait(self) -> None:
        next_at = self.next_at
        with anyio.move_on_after(LOOK_EVERY):
            async with anyio.create_task_group() as waits:

                async def first_of_changed() -> None:
                    await self._changed.wait()
                    waits.cancel_scope.cancel()

                waits.start_soon(first_of_changed)
                if next_at is not None:
                    await self.clock.sleep_until(next_at)
                    waits.cancel_scope.cancel()
