"""SQL verbs of the replay engine: recorded calls (steps, waits...), tokens, and
parking a job on a wait."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flowq import replay
from flowq.errors import TokenError
from flowq.models import EventType, JobStatus, Token, TokenStatus
from flowq.replay import RecordedCall
from flowq.store import rows, transitions
from flowq.store.base import Lease, NewToken
from flowq.store.sql import render
from flowq.store.sql.base import SqlBase, held
from flowq.store.sql.schema import jobs, tokens

__all__ = ["EXPIRE_CHUNK", "SqlDurableVerbs"]

EXPIRE_CHUNK = 1000
"""Timed-out tokens an expiry run settles per transaction."""


class SqlDurableVerbs(SqlBase):
    """Recording durable calls, tokens, parking jobs and waking jobs that wait."""

    async def load_history(self, job_id: int) -> list[RecordedCall]:
        """The job's recorded durable calls, in position order."""
        async with self._driver() as driver:
            return await self.dialect.load_history(driver, job_id)

    async def record_calls(
        self, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        """Store durable calls of running jobs in one transaction; return each call as
        stored (an earlier successful record wins), None where the lease is stale."""
        if not calls:
            return []
        async with self._driver("record") as driver:
            return await self.dialect.record_calls(driver, calls)

    async def suspend_job(
        self, lease: Lease, *, wait_until: datetime | None, token_id: str | None
    ) -> bool:
        """Park the job as waiting until ``wait_until`` or the token's completion.

        If the token (or child job) it parks on is resolved already, nobody else will
        wake it: it is runnable at once. That look locks the token (or child) row
        before the job's, in the order their wakers take them (``complete_token`` and
        ``expire_timed_out_tokens``: the token, then the jobs waiting on it; a child
        finishing: its row, then its parent's in the ``flowq_jobs_wake_parent``
        trigger). So a concurrent waker either committed before the look, which sees
        it, or waits for this commit and then finds the job waiting. Without the lock,
        under READ COMMITTED, the waker's UPDATE could skip the job (still processing
        in its snapshot) while the look missed the waker's uncommitted write.
        """
        meta = {"until": wait_until.isoformat() if wait_until else None, "token_id": token_id}
        if token_id is None and self.fast_paths:  # a timer: nothing to look at first
            async with self._driver("park") as driver:
                return await self.dialect.park_job(
                    driver, lease, wait_until, rows.event_metadata(meta), self.clock.now()
                )
        async with self._transaction() as conn:
            now = self.clock.now()
            over = token_id is not None and await self._lock_wait_is_over(conn, token_id)
            values = render.values(
                transitions.SUSPEND,
                now,
                wait_until=wait_until,
                wait_token_id=token_id,
                ready_at=now if over else wait_until,
            )
            result = await conn.execute(
                update(jobs).where(held([lease])).values(values).returning(jobs.c.id)
            )
            if result.first() is None:
                return False
            await self._add_events(conn, [(lease.job_id, EventType.WAITING, meta)], now)
            if over:
                await self.dialect.notify(conn, "jobs")
        if over:
            self._wake("jobs")
        return True

    async def _lock_wait_is_over(self, conn: AsyncConnection, wait_id: str) -> bool:
        """Whether the token (or child job) a job waits for is already resolved; its
        row stays locked FOR SHARE (PostgreSQL) until the transaction ends, so it
        cannot be resolved meanwhile."""
        child = replay.waited_child(wait_id)
        if child is not None:
            query = select(jobs.c.finished_at.is_not(None)).where(jobs.c.id == child)
        else:
            query = select(tokens.c.status != TokenStatus.WAITING.value).where(
                tokens.c.id == wait_id
            )
        return bool((await conn.execute(query.with_for_update(read=True))).scalar())

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
            row = rows.token_row(token, None if lease is None else lease.job_id, self.clock.now())
            await conn.execute(insert(tokens), [row])
            return rows.token_from_row({**row, "output": None})

    async def get_token(self, token_id: str) -> Token | None:
        """The token, or None."""
        async with self._transaction() as conn:
            row = (await conn.execute(select(tokens).where(tokens.c.id == token_id))).first()
            return None if row is None else rows.token_from_row(row._mapping)

    async def get_tokens(
        self, *, job_id: int | None = None, status: TokenStatus | None = None, limit: int = 100
    ) -> list[Token]:
        """Tokens (of a job, of a status), newest first, at most ``limit``."""
        query = select(tokens).order_by(tokens.c.created_at.desc(), tokens.c.id).limit(limit)
        if job_id is not None:
            query = query.where(tokens.c.job_id == job_id)
        if status is not None:
            query = query.where(tokens.c.status == status.value)
        async with self._transaction() as conn:
            found = (await conn.execute(query)).mappings().all()
        return [rows.token_from_row(row) for row in found]

    async def settle_token(self, token_id: str) -> Token | None:
        """The token, timed out first if its deadline passed while it was waiting."""
        async with self._transaction() as conn:
            now = self.clock.now()
            await self._time_out(conn, tokens.c.id == token_id, now)
            row = (await conn.execute(select(tokens).where(tokens.c.id == token_id))).first()
            return None if row is None else rows.token_from_row(row._mapping)

    async def complete_token(self, token_id: str, output: str) -> Token:
        """Complete a waiting token and wake its job at once."""
        async with self._transaction() as conn:
            now = self.clock.now()
            row = (
                await conn.execute(select(tokens).where(tokens.c.id == token_id).with_for_update())
            ).first()
            if row is None:
                raise TokenError(f"there is no token {token_id!r}")
            token = rows.token_from_row(row._mapping)
            transitions.check_completable(token, now)
            completed = transitions.completed_token(output, now)
            await conn.execute(update(tokens).where(tokens.c.id == token_id).values(completed))
            woken = await self._wake_waiters(conn, [token_id], now)
            if woken:
                await self.dialect.notify(conn, "jobs")
        if woken:
            self._wake("jobs")
        return rows.token_from_row({**row._mapping, **completed})

    async def expire_timed_out_tokens(self) -> int:
        """Mark waiting tokens past their deadline timed out and wake their jobs, in
        chunks of :data:`EXPIRE_CHUNK` tokens (one transaction each)."""
        now = self.clock.now()
        total = woken = 0
        while True:
            async with self._transaction() as conn:
                due = await conn.execute(
                    select(tokens.c.id)
                    .where(
                        tokens.c.status == TokenStatus.WAITING.value,
                        tokens.c.timeout_at.is_not(None),
                        tokens.c.timeout_at <= now,
                    )
                    .order_by(tokens.c.id)
                    .limit(EXPIRE_CHUNK)
                    .with_for_update()
                )
                chosen = list(due.scalars())
                expired = await self._time_out(conn, self.dialect.one_of(tokens.c.id, chosen), now)
                chunk_woken = await self._wake_waiters(conn, expired, now) if expired else 0
                if chunk_woken:
                    await self.dialect.notify(conn, "jobs")
            total += len(expired)
            woken += chunk_woken
            if len(chosen) < EXPIRE_CHUNK:
                break
        if woken:
            self._wake("jobs")
        return total

    async def _time_out(self, conn: AsyncConnection, which: Any, now: datetime) -> list[str]:
        result = await conn.execute(
            update(tokens)
            .where(
                which,
                tokens.c.status == TokenStatus.WAITING.value,
                tokens.c.timeout_at.is_not(None),
                tokens.c.timeout_at <= now,
            )
            .values(transitions.timed_out_token(now))
            .returning(tokens.c.id)
        )
        return sorted(result.scalars())

    async def _wake_waiters(self, conn: AsyncConnection, wait_ids: list[str], now: datetime) -> int:
        """Make jobs waiting on these tokens (or children) runnable now."""
        result = await conn.execute(
            update(jobs)
            .where(
                jobs.c.status == JobStatus.WAITING.value,
                self.dialect.one_of(jobs.c.wait_token_id, wait_ids),
            )
            .values(render.values(transitions.WAKE, now))
            .returning(jobs.c.id)
        )
        return len(result.all())
