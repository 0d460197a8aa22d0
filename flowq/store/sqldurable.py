"""SQL verbs of the replay engine: recorded calls (steps, waits...) and tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flowq.errors import TokenError
from flowq.models import JobStatus, Token, TokenStatus
from flowq.replay import RecordedCall
from flowq.store import pg_hot, records, sqlite_hot
from flowq.store.base import Lease, NewToken
from flowq.store.schema import jobs, tokens
from flowq.store.sqlbase import SqlBase

__all__ = ["SqlDurableVerbs"]


class SqlDurableVerbs(SqlBase):
    """Recording durable calls, tokens, and waking jobs that wait on them."""

    async def load_history(self, job_id: int) -> list[RecordedCall]:
        """The job's recorded durable calls, in position order."""
        if self.dialect.name == "postgresql":
            async with self._driver() as driver:
                rows = await driver.fetch(pg_hot.LOAD_HISTORY, job_id)
            return [records.recorded_call(row) for row in rows]
        async with self._driver() as db:
            return await sqlite_hot.load_history(db, job_id)

    async def record_calls(
        self, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        """Store durable calls of running jobs in one transaction; return each call as
        stored (an earlier successful record wins), None where the lease is stale."""
        if not calls:
            return []
        if self.dialect.name == "postgresql":
            async with self._driver("record") as driver:
                rows = await driver.fetch(pg_hot.RECORD_CALLS, *pg_hot.record_call_arguments(calls))
            held = {
                (row["job_id"], row["seq"]): None if row["stored"] else records.recorded_call(row)
                for row in rows
            }
            return records.as_stored(calls, held)
        async with self._driver("record") as db:
            return await sqlite_hot.record_calls(db, self._writers(), calls)

    async def _held_ids(self, conn: AsyncConnection, leases: Sequence[Lease]) -> set[int]:
        """Ids of the jobs still held by these leases, locked until the transaction ends."""
        pairs = {(lease.job_id, lease.lease_id) for lease in leases}
        result = await conn.execute(
            select(jobs.c.id, jobs.c.lease_id)
            .where(
                jobs.c.id.in_(sorted({job_id for job_id, _ in pairs})),
                jobs.c.status == JobStatus.PROCESSING.value,
            )
            .with_for_update(read=True)
        )
        return {row.id for row in result if (row.id, row.lease_id) in pairs}

    async def create_token(self, token: NewToken, lease: Lease | None) -> Token | None:
        """Store a waiting token, of the lease's job if given; None on a stale lease."""
        async with self._transaction() as conn:
            if lease is not None and not await self._held_ids(conn, [lease]):
                return None
            row = records.token_row(
                token, None if lease is None else lease.job_id, self.clock.now()
            )
            await conn.execute(insert(tokens), [row])
            return records.token_from_row({**row, "output": None})

    async def get_token(self, token_id: str) -> Token | None:
        """The token, or None."""
        async with self._transaction() as conn:
            row = (await conn.execute(select(tokens).where(tokens.c.id == token_id))).first()
            return None if row is None else records.token_from_row(row._mapping)

    async def settle_token(self, token_id: str) -> Token | None:
        """The token, timed out first if its deadline passed while it was waiting."""
        async with self._transaction() as conn:
            now = self.clock.now()
            await self._time_out(conn, tokens.c.id == token_id, now)
            row = (await conn.execute(select(tokens).where(tokens.c.id == token_id))).first()
            return None if row is None else records.token_from_row(row._mapping)

    async def complete_token(self, token_id: str, output: str) -> Token:
        """Complete a waiting token and wake its job at once."""
        async with self._transaction() as conn:
            now = self.clock.now()
            row = (
                await conn.execute(select(tokens).where(tokens.c.id == token_id).with_for_update())
            ).first()
            if row is None:
                raise TokenError(f"there is no token {token_id!r}")
            token = records.token_from_row(row._mapping)
            records.check_completable(token, now)
            await conn.execute(
                update(tokens)
                .where(tokens.c.id == token_id)
                .values(status=TokenStatus.COMPLETED.value, output=output, completed_at=now)
            )
            woken = await self._wake_waiters(conn, [token_id], now)
            if woken:
                await self.dialect.notify(conn, "jobs")
        if woken:
            self._wake("jobs")
        return records.token_from_row(
            {**row._mapping, "status": "completed", "output": output, "completed_at": now}
        )

    async def expire_timed_out_tokens(self) -> int:
        """Mark waiting tokens past their deadline timed out and wake their jobs."""
        async with self._transaction() as conn:
            now = self.clock.now()
            expired = await self._time_out(
                conn, and_(tokens.c.timeout_at.is_not(None), tokens.c.timeout_at <= now), now
            )
            woken = await self._wake_waiters(conn, expired, now) if expired else 0
            if woken:
                await self.dialect.notify(conn, "jobs")
        if woken:
            self._wake("jobs")
        return len(expired)

    async def _time_out(self, conn: AsyncConnection, which: Any, now: datetime) -> list[str]:
        result = await conn.execute(
            update(tokens)
            .where(
                which,
                tokens.c.status == TokenStatus.WAITING.value,
                tokens.c.timeout_at.is_not(None),
                tokens.c.timeout_at <= now,
            )
            .values(status=TokenStatus.TIMED_OUT.value, completed_at=now)
            .returning(tokens.c.id)
        )
        return sorted(result.scalars())

    async def _wake_waiters(self, conn: AsyncConnection, wait_ids: list[str], now: datetime) -> int:
        """Make jobs waiting on these tokens (or children) runnable now."""
        result = await conn.execute(
            update(jobs)
            .where(
                jobs.c.status == JobStatus.WAITING.value,
                jobs.c.wait_token_id.in_(wait_ids),
            )
            .values(ready_at=now, updated_at=now)
            .returning(jobs.c.id)
        )
        return len(result.all())
