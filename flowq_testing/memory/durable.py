"""The replay engine's verbs of :class:`flowq_testing.InMemoryStore`: recorded calls,
tokens, and parking a job until a time, a token or a child job.

They mirror :class:`flowq.store.sql.durable.SqlDurableVerbs` verb for verb (the same
rows, the same errors, the same wake-ups).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from flowq import replay
from flowq.errors import TokenError
from flowq.models import EventType, JobStatus, Token, TokenStatus
from flowq.replay import RecordedCall
from flowq.store import rows, transitions
from flowq.store.base import Lease, NewToken
from flowq_testing.memory.tables import MemoryTables, utc, utc_values

__all__ = ["MemoryDurableVerbs"]


class MemoryDurableVerbs(MemoryTables):
    """Recording durable calls, tokens, and waking jobs that wait on them."""

    async def load_history(self, job_id: int) -> list[RecordedCall]:
        """The job's recorded durable calls, in position order."""
        calls = self._steps.get(job_id, {})
        return [rows.recorded_call(calls[seq]) for seq in sorted(calls)]

    async def record_calls(
        self, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        """Store durable calls of running jobs at once; return each call as stored (an
        earlier successful record wins), None where the lease is stale."""
        held_jobs = self._held([lease for lease, _ in calls])
        held: dict[tuple[int, int], RecordedCall | None] = {}
        for lease, call in calls:
            if lease.job_id in held_jobs:
                stored = self._steps.setdefault(lease.job_id, {})
                existing = stored.get(call.seq)
                if existing is None or existing["error"] is not None:
                    stored[call.seq] = utc_values(rows.call_row(lease.job_id, call))
                    held[(lease.job_id, call.seq)] = None
                else:
                    held[(lease.job_id, call.seq)] = rows.recorded_call(existing)
        return rows.as_stored(calls, held)

    async def create_token(self, token: NewToken, lease: Lease | None) -> Token | None:
        """Store a waiting token, of the lease's job if given; None on a stale lease.

        Raises:
            ValueError: A token with this id exists already (a unique key violation).
        """
        if lease is not None and not self._held([lease]):
            return None
        if token.id in self._tokens:
            raise ValueError(f"a token with id {token.id!r} exists already")
        row = rows.token_row(token, None if lease is None else lease.job_id, self._now())
        row = utc_values({**row, "tags": tuple(row["tags"])})
        self._tokens[token.id] = row
        return rows.token_from_row(row)

    async def get_token(self, token_id: str) -> Token | None:
        """The token, or None."""
        row = self._tokens.get(token_id)
        return None if row is None else rows.token_from_row(row)

    async def get_tokens(
        self, *, job_id: int | None = None, status: TokenStatus | None = None, limit: int = 100
    ) -> list[Token]:
        """Tokens (of a job, of a status), newest first, at most ``limit``."""
        found = [
            row
            for row in self._tokens.values()
            if (job_id is None or row["job_id"] == job_id)
            and (status is None or row["status"] == status.value)
        ]
        found.sort(key=lambda row: row["id"])
        found.sort(key=lambda row: row["created_at"], reverse=True)
        return [rows.token_from_row(row) for row in found[:limit]]

    async def settle_token(self, token_id: str) -> Token | None:
        """The token, timed out first if its deadline passed while it was waiting."""
        self._time_out([token_id], self._now())
        return await self.get_token(token_id)

    async def complete_token(self, token_id: str, output: str) -> Token:
        """Complete a waiting token and wake its job at once.

        Raises:
            TokenError: The token is unknown, completed already, or timed out (also
                when its deadline passed without anyone noticing yet).
        """
        now = self._now()
        row = self._tokens.get(token_id)
        if row is None:
            raise TokenError(f"there is no token {token_id!r}")
        transitions.check_completable(rows.token_from_row(row), now)
        row.update(transitions.completed_token(output, now))
        if self._wake_waiters([token_id], now):
            self._wake("jobs")
        return rows.token_from_row(row)

    async def expire_timed_out_tokens(self) -> int:
        """Mark waiting tokens past their deadline timed out and wake their jobs."""
        now = self._now()
        expired = self._time_out(list(self._tokens), now)
        if expired and self._wake_waiters(expired, now):
            self._wake("jobs")
        return len(expired)

    async def suspend_job(
        self, lease: Lease, *, wait_until: datetime | None, token_id: str | None
    ) -> bool:
        """Park a processing job as waiting (releases its lock); False on a stale lease.

        If the token (or child job) it parks on is resolved already, nobody else will
        wake it: it is runnable at once. The look and the write happen with no await
        between them, so no completion can fall in between (the SQL store locks the
        token or child row for that).
        """
        row = self._leased(lease)
        if row is None:
            return False
        now = self._now()
        until = None if wait_until is None else utc(wait_until)
        over = token_id is not None and self._wait_is_over(token_id)
        self._apply(
            transitions.SUSPEND,
            row,
            now,
            wait_until=until,
            wait_token_id=token_id,
            ready_at=now if over else until,
        )
        meta = {"until": wait_until.isoformat() if wait_until else None, "token_id": token_id}
        self._add_events([(lease.job_id, EventType.WAITING, meta)], now)
        if over:
            self._wake("jobs")
        return True

    def _wait_is_over(self, wait_id: str) -> bool:
        """Whether the token (or child job) a job waits for is already resolved."""
        child_id = replay.waited_child(wait_id)
        if child_id is not None:
            child = self._rows.get(child_id)
            return child is not None and child["finished_at"] is not None
        token = self._tokens.get(wait_id)
        return token is not None and token["status"] != TokenStatus.WAITING

    def _time_out(self, token_ids: Collection[str], now: datetime) -> list[str]:
        """Mark those of ``token_ids`` that wait past their deadline timed out; return
        their ids (sorted)."""
        expired = sorted(
            token_id
            for token_id in token_ids
            if (row := self._tokens.get(token_id)) is not None
            and row["status"] == TokenStatus.WAITING
            and row["timeout_at"] is not None
            and row["timeout_at"] <= now
        )
        for token_id in expired:
            self._tokens[token_id].update(transitions.timed_out_token(now))
        return expired

    def _wake_waiters(self, wait_ids: Collection[str], now: datetime) -> int:
        """Make jobs waiting on these tokens (or children) runnable now; return how many."""
        waiting = [
            row
            for row in self._rows.values()
            if row["status"] == JobStatus.WAITING and row["wait_token_id"] in wait_ids
        ]
        for row in waiting:
            self._apply(transitions.WAKE, row, now)
        return len(waiting)
