"""SQL verbs of worker presence (the ``flowq_workers`` table, one row per worker)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from flowq.store.sql.base import SqlBase
from flowq.store.sql.schema import workers
from flowq.store.workers import FORGET_WORKERS_AFTER, WorkerPresence, WorkerRecord

__all__ = ["SqlWorkerVerbs"]


class SqlWorkerVerbs(SqlBase):
    """Workers recording themselves, and the list of those seen recently."""

    async def record_worker(self, worker: WorkerPresence) -> None:
        """Insert or refresh the worker's row (see :class:`flowq.store.workers.WorkerVerbs`)."""
        async with self._transaction() as conn:
            now = self.clock.now()
            values = {
                "host": worker.host,
                "pid": worker.pid,
                "workflows": tuple(worker.workflows),
                "started_at": worker.started_at,
                "last_seen_at": now,
            }
            statement = self.dialect.insert_into(workers).values(
                worker_id=worker.worker_id, **values
            )
            await conn.execute(
                statement.on_conflict_do_update(index_elements=[workers.c.worker_id], set_=values)
            )
            await conn.execute(
                delete(workers).where(workers.c.last_seen_at < now - FORGET_WORKERS_AFTER)
            )

    async def remove_worker(self, worker_id: str) -> bool:
        """Delete a stopping worker's row."""
        async with self._transaction() as conn:
            result = await conn.execute(delete(workers).where(workers.c.worker_id == worker_id))
            return bool(result.rowcount)

    async def get_workers(self, seen_within: timedelta) -> list[WorkerRecord]:
        """Workers seen within ``seen_within``, the most recently seen first."""
        async with self._transaction() as conn:
            since = self.clock.now() - seen_within
            result = await conn.execute(
                select(workers)
                .where(workers.c.last_seen_at >= since)
                .order_by(workers.c.last_seen_at.desc(), workers.c.worker_id)
            )
            return [
                WorkerRecord(
                    worker_id=row.worker_id,
                    host=row.host,
                    pid=int(row.pid),
                    workflows=tuple(row.workflows),
                    started_at=row.started_at,
                    last_seen_at=row.last_seen_at,
                )
                for row in result
            ]
