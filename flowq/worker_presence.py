"""A worker's row in the workers table: recorded when it starts and on its heartbeat
cadence (never per job), removed when it stops. Failures are logged, never raised:
presence is for operators to look at, and must not stop a worker."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

import anyio

from flowq.clock import Clock
from flowq.errors import DatabaseUnavailableError
from flowq.store.base import Store
from flowq.store.workers import WorkerPresence

__all__ = ["REMOVE_TIMEOUT", "Presence"]

log = logging.getLogger("flowq.worker")

REMOVE_TIMEOUT = 2.0
"""Seconds a stopping worker gives the removal of its row (then the row ages out)."""


class Presence:
    """One worker's presence, for the store's workers table."""

    def __init__(self, store: Store, clock: Clock, worker_id: str) -> None:
        self.store = store
        self.clock = clock
        self.worker_id = worker_id
        self._presence: WorkerPresence | None = None

    async def start(self, workflows: Sequence[str]) -> None:
        """Record the worker as started now, running ``workflows``."""
        self._presence = WorkerPresence(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            workflows=tuple(sorted(workflows)),
            started_at=self.clock.now(),
        )
        await self.refresh()

    async def refresh(self) -> None:
        """Record the worker as seen now (on each heartbeat)."""
        if self._presence is None:
            return
        try:
            await self.store.record_worker(self._presence)
        except DatabaseUnavailableError:
            return  # the heartbeat's own calls report the outage
        except Exception as exc:
            log.warning("flowq: worker %s could not record itself: %s", self.worker_id, exc)

    async def stop(self) -> None:
        """Remove the worker's row (shielded, at most :data:`REMOVE_TIMEOUT`)."""
        if self._presence is None:
            return
        self._presence = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(REMOVE_TIMEOUT):
            try:
                await self.store.remove_worker(self.worker_id)
            except Exception as exc:
                log.warning("flowq: worker %s could not remove itself: %s", self.worker_id, exc)
