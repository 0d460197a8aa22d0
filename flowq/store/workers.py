"""The storage verbs of worker presence (part of :class:`flowq.store.base.Store`):
each running worker records itself when it starts and on its heartbeat cadence, and
removes itself when it stops, so operators can see which workers are alive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

__all__ = ["FORGET_WORKERS_AFTER", "WorkerPresence", "WorkerRecord", "WorkerVerbs"]

FORGET_WORKERS_AFTER = timedelta(days=1)
"""Workers not seen for this long (they died without removing themselves) are
deleted whenever a worker records itself."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerPresence:
    """What a worker says about itself.

    Attributes:
        worker_id: The worker's id (what its jobs' ``locked_by`` shows).
        host: The machine it runs on.
        pid: Its process id there.
        workflows: The workflows it runs (sorted).
        started_at: When it started.
    """

    worker_id: str
    host: str
    pid: int
    workflows: tuple[str, ...]
    started_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRecord(WorkerPresence):
    """A worker as stored: what it said (the fields of :class:`WorkerPresence`), and
    when it last said it.

    Attributes:
        last_seen_at: When it last recorded itself (by the store's clock).
    """

    last_seen_at: datetime


class WorkerVerbs(Protocol):
    """Worker presence: a small table of the workers that run (one row per worker)."""

    async def record_worker(self, worker: WorkerPresence) -> None:
        """Insert or refresh ``worker``'s row (``last_seen_at`` = now by the store's
        clock), and delete rows not seen for :data:`FORGET_WORKERS_AFTER`."""

    async def remove_worker(self, worker_id: str) -> bool:
        """Delete a stopping worker's row; whether there was one."""

    async def get_workers(self, seen_within: timedelta) -> list[WorkerRecord]:
        """Workers that recorded themselves within ``seen_within`` of now, the most
        recently seen first (ties by id)."""
