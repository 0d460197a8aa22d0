"""Worker presence in :class:`flowq_testing.InMemoryStore`."""

from __future__ import annotations

from datetime import timedelta

from flowq.store.workers import FORGET_WORKERS_AFTER, WorkerPresence, WorkerRecord
from flowq_testing.memory.tables import MemoryTables

__all__ = ["MemoryWorkerVerbs"]


class MemoryWorkerVerbs(MemoryTables):
    """Workers recording themselves, and the list of those seen recently."""

    async def record_worker(self, worker: WorkerPresence) -> None:
        """Insert or refresh the worker's row (see :class:`flowq.store.workers.WorkerVerbs`)."""
        now = self._now()
        self._workers[worker.worker_id] = WorkerRecord(
            worker_id=worker.worker_id,
            host=worker.host,
            pid=worker.pid,
            workflows=tuple(worker.workflows),
            started_at=worker.started_at,
            last_seen_at=now,
        )
        for worker_id, row in list(self._workers.items()):
            if row.last_seen_at < now - FORGET_WORKERS_AFTER:
                del self._workers[worker_id]

    async def remove_worker(self, worker_id: str) -> bool:
        """Delete a stopping worker's row."""
        return self._workers.pop(worker_id, None) is not None

    async def get_workers(self, seen_within: timedelta) -> list[WorkerRecord]:
        """Workers seen within ``seen_within``, the most recently seen first."""
        since = self._now() - seen_within
        seen = [row for row in self._workers.values() if row.last_seen_at >= since]
        return sorted(seen, key=lambda row: (-row.last_seen_at.timestamp(), row.worker_id))
