"""SQLite hot paths on the aiosqlite driver connection (no SQLAlchemy per statement).

Each function runs one ``BEGIN IMMEDIATE`` transaction of a few plain statements: the
same rows and events as the general SQLAlchemy path of
:class:`flowq.store.sql.SqlStore`, several times cheaper per call. Values are stored
as SQLAlchemy stores them on SQLite (UTC datetimes as ``YYYY-MM-DD HH:MM:SS.ffffff``
text, tags as a JSON array, booleans as 0/1), and the contract suite runs through
these paths.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio

from flowq import codec
from flowq.models import EventType, JobStatus
from flowq.replay import RecordedCall
from flowq.store import records
from flowq.store.base import ClaimedJob, Completion, Lease, NewJob
from flowq.store.batch import plan_batch

__all__ = ["add_plain_jobs", "claim_jobs", "complete_jobs", "load_history", "record_calls"]

_JOB_COLUMNS = (
    "id", "workflow", "payload", "status", "priority", "attempts", "max_attempts", "run_at",
    "ready_at", "next_attempt_at", "tags", "idempotency_key", "group_name", "timeout_ms",
    "force_kill_on_timeout", "retry", "dead_letter", "dead_letter_job_id", "progress", "output",
    "error_history", "failure_reason", "pending_reason", "wait_until", "wait_token_id",
    "lease_id", "locked_by", "locked_at", "created_at", "updated_at", "started_at",
    "completed_at", "last_failed_at", "last_retried_at", "last_cancelled_at", "finished_at",
    "parent_job_id",
)  # fmt: skip
_DATETIME_COLUMNS = frozenset(
    {
        "run_at", "ready_at", "next_attempt_at", "wait_until", "locked_at", "created_at",
        "updated_at", "started_at", "completed_at", "last_failed_at", "last_retried_at",
        "last_cancelled_at", "finished_at",
    }
)  # fmt: skip
_INSERT_JOB = (
    f"INSERT INTO flowq_jobs ({', '.join(_JOB_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _JOB_COLUMNS)})"
)
_INSERT_EVENT = (
    "INSERT INTO flowq_job_events (job_id, event_type, at, metadata) VALUES (?, ?, ?, ?)"
)


def stored_time(value: datetime | None) -> str | None:
    """A datetime as SQLAlchemy stores it on SQLite (naive UTC text)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def read_time(value: str | None) -> datetime | None:
    """Stored text back to an aware UTC datetime."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _job_values(row: dict[str, Any]) -> tuple[Any, ...]:
    values = []
    for column in _JOB_COLUMNS:
        value = row[column]
        if column in _DATETIME_COLUMNS:
            value = stored_time(value)
        elif column == "tags":
            value = json.dumps(list(value))
        elif column == "force_kill_on_timeout":
            value = int(value)
        values.append(value)
    return tuple(values)


def _job_row(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    row = dict(zip(names, values, strict=True))
    for column in _DATETIME_COLUMNS:
        row[column] = read_time(row[column])
    row["tags"] = tuple(json.loads(row["tags"]))
    return row


async def _fetch(db: Any, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
    async with db.execute(sql, parameters) as cursor:
        return list(await cursor.fetchall())


async def _run(db: Any, sql: str, parameters: Sequence[Any] = ()) -> int:
    async with db.execute(sql, parameters) as cursor:
        return int(cursor.rowcount)


LOCK_WAIT_SECONDS = 30.0
"""How long the hot paths wait for the write lock (in short, cancellable tries)."""


@asynccontextmanager
async def immediate(db: Any, writers: anyio.Lock) -> AsyncIterator[Any]:
    """A write transaction taken at its start (``BEGIN IMMEDIATE``) on ``db``.

    ``writers`` lines up this process's writers first (SQLite has one writer at a
    time: waiting in a queue beats polling for the file lock). BEGIN is then retried
    while another process holds the lock (up to 30 s), sleeping between tries; each
    try, like COMMIT and ROLLBACK, is shielded from cancellation, so a cancelled
    caller never leaves the reused connection inside a transaction.
    """
    async with writers, _transaction(db):
        yield db


@asynccontextmanager
async def _transaction(db: Any) -> AsyncIterator[Any]:
    deadline = anyio.current_time() + LOCK_WAIT_SECONDS
    delay = 0.002
    while True:
        try:
            with anyio.CancelScope(shield=True):
                await db.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or anyio.current_time() > deadline:
                raise
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.05)
    try:
        yield db
    except BaseException:
        with anyio.CancelScope(shield=True):
            await db.rollback()
        raise
    with anyio.CancelScope(shield=True):
        await db.commit()


async def _events(db: Any, events: Sequence[tuple[int, EventType, Any]], now: datetime) -> None:
    at = stored_time(now)
    rows = [
        (job_id, kind.value, at, codec.encode(meta, what="event metadata") if meta else None)
        for job_id, kind, meta in events
    ]
    if rows:
        await db.executemany(_INSERT_EVENT, rows)


async def add_plain_jobs(
    db: Any, writers: anyio.Lock, jobs: Sequence[NewJob], now: datetime
) -> list[int]:
    """Jobs without dependencies, with their ``added`` events, in one transaction."""
    async with immediate(db, writers):
        keys = sorted({job.idempotency_key for job in jobs if job.idempotency_key is not None})
        existing: dict[str | None, int] = {}
        if keys:
            existing = dict(
                await _fetch(
                    db,
                    f"SELECT idempotency_key, id FROM flowq_jobs WHERE idempotency_key IN "
                    f"({', '.join('?' for _ in keys)})",
                    keys,
                )
            )
        count = records.count_new_jobs(jobs, existing)
        [(last,)] = await _fetch(
            db,
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'flowq_jobs'), 0),"
            " COALESCE((SELECT MAX(id) FROM flowq_jobs), 0))",
        )
        first = int(last or 0) + 1
        plan = plan_batch(jobs, existing, {}, {}, range(first, first + count))
        if plan.rows:
            rows = [_job_values(records.new_job_row(job, job_id, now)) for job_id, job in plan.rows]
            await db.executemany(_INSERT_JOB, rows)
            await _events(db, [(job_id, EventType.ADDED, None) for job_id, _ in plan.rows], now)
        return plan.ids


_CLAIMABLE = """
SELECT j.id, j.status, EXISTS (SELECT 1 FROM flowq_steps s WHERE s.job_id = j.id)
FROM flowq_jobs j
WHERE j.ready_at <= ? AND j.workflow IN ({workflows})
  AND NOT EXISTS (
      SELECT 1 FROM flowq_job_dependencies d JOIN flowq_jobs p ON p.id = d.depends_on_id
      WHERE d.job_id = j.id AND p.status <> 'completed'
  )
ORDER BY j.priority DESC, j.id LIMIT ?
"""

_CLAIM = """
UPDATE flowq_jobs SET
    status = 'processing',
    attempts = attempts + CASE WHEN status = 'waiting' THEN 0 ELSE 1 END,
    started_at = CASE WHEN status = 'waiting' THEN started_at ELSE ?1 END,
    lease_id = lease_id + 1, locked_by = ?2, locked_at = ?1, ready_at = NULL,
    next_attempt_at = NULL, wait_until = NULL, wait_token_id = NULL, pending_reason = NULL,
    updated_at = ?1
WHERE id IN ({ids})
RETURNING {columns}
"""


async def claim_jobs(
    db: Any,
    writers: anyio.Lock,
    worker_id: str,
    limit: int,
    workflows: Sequence[str],
    now: datetime,
) -> list[ClaimedJob]:
    """Lock up to ``limit`` runnable jobs of ``workflows`` (no group limits)."""
    if not workflows:
        return []
    at = stored_time(now)
    # An idle worker polls: look without the write lock first, so that polling
    # never makes writers of other processes wait.
    if not await _fetch(db, "SELECT 1 FROM flowq_jobs WHERE ready_at <= ? LIMIT 1", [at]):
        return []
    async with immediate(db, writers):
        previous = {
            job_id: (status, bool(has_history))
            for job_id, status, has_history in await _fetch(
                db,
                _CLAIMABLE.format(workflows=", ".join("?" for _ in workflows)),
                [at, *sorted(workflows), limit],
            )
        }
        if not previous:
            return []
        ids = sorted(previous)
        claim = _CLAIM.format(
            ids=", ".join(str(int(i)) for i in ids), columns=", ".join(_JOB_COLUMNS)
        )
        rows = [
            _job_row(_JOB_COLUMNS, values) for values in await _fetch(db, claim, [at, worker_id])
        ]
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        claimed = [
            ClaimedJob(
                records.job_from_row(row, ()),
                Lease(row["id"], row["lease_id"], worker_id),
                previous[row["id"]][0] == JobStatus.WAITING.value,
                row["payload"],
                previous[row["id"]][1],
            )
            for row in rows
        ]
        await _events(
            db,
            [(c.job.id, EventType.PROCESSING, records.processing_metadata(c)) for c in claimed],
            now,
        )
        return claimed


_COMPLETE = """
UPDATE flowq_jobs SET status = 'completed', output = ?, failure_reason = NULL,
    completed_at = ?, finished_at = ?, updated_at = ?, locked_by = NULL, locked_at = NULL
WHERE id = ? AND lease_id = ? AND status = 'processing'
"""


async def complete_jobs(
    db: Any, writers: anyio.Lock, completions: Sequence[Completion], now: datetime
) -> tuple[list[bool], bool]:
    """Complete held jobs; return which were recorded and whether any has dependants."""
    at = stored_time(now)
    done: list[bool] = []
    async with immediate(db, writers):
        for completion in completions:
            lease = completion.lease
            parameters = [completion.output, at, at, at, lease.job_id, lease.lease_id]
            done.append(await _run(db, _COMPLETE, parameters) == 1)
        finished = sorted(c.lease.job_id for c, ok in zip(completions, done, strict=True) if ok)
        await _events(db, [(job_id, EventType.COMPLETED, None) for job_id in finished], now)
        unblocked = False
        if finished:
            unblocked = bool(
                await _fetch(
                    db,
                    f"SELECT 1 FROM flowq_job_dependencies WHERE depends_on_id IN "
                    f"({', '.join(str(int(i)) for i in finished)}) LIMIT 1",
                )
            )
    return done, unblocked


_RECORD = """
INSERT INTO flowq_steps (job_id, seq, name, attempt, output, error, started_at, completed_at)
VALUES {rows}
ON CONFLICT (job_id, seq) DO UPDATE SET
    name = excluded.name, attempt = excluded.attempt, output = excluded.output,
    error = excluded.error, started_at = excluded.started_at, completed_at = excluded.completed_at
WHERE flowq_steps.error IS NOT NULL
RETURNING job_id, seq
"""
_RECORD_CHUNK = 500
"""Calls per INSERT (8 parameters each, well under SQLite's parameter limit)."""

_CALL_COLUMNS = "seq, name, attempt, output, error, started_at, completed_at"


async def record_calls(
    db: Any, writers: anyio.Lock, calls: Sequence[tuple[Lease, RecordedCall]]
) -> list[RecordedCall | None]:
    """Store recorded calls of held jobs; return each as stored (an earlier success
    wins), None where the lease is stale."""
    async with immediate(db, writers):
        wanted = sorted({lease.job_id for lease, _ in calls})
        leases = {
            (job_id, lease_id)
            for job_id, lease_id in await _fetch(
                db,
                f"SELECT id, lease_id FROM flowq_jobs WHERE status = 'processing' AND id IN "
                f"({', '.join(str(int(i)) for i in wanted)})",
            )
        }
        rows = [
            (
                lease.job_id, call.seq, call.name, call.attempt, call.output, call.error,
                stored_time(call.started_at), stored_time(call.completed_at),
            )
            for lease, call in calls
            if (lease.job_id, lease.lease_id) in leases
        ]  # fmt: skip
        written: set[tuple[int, int]] = set()
        for start in range(0, len(rows), _RECORD_CHUNK):
            chunk = rows[start : start + _RECORD_CHUNK]
            sql = _RECORD.format(rows=", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk))
            found = await _fetch(db, sql, [value for row in chunk for value in row])
            written.update((job_id, seq) for job_id, seq in found)
        held: dict[tuple[int, int], RecordedCall | None] = {}
        for job_id, seq, *_ in rows:
            held[(job_id, seq)] = (
                None if (job_id, seq) in written else await _recorded_call(db, job_id, seq)
            )
    return records.as_stored(calls, held)


async def _recorded_call(db: Any, job_id: int, seq: int) -> RecordedCall:
    [row] = await _fetch(
        db, f"SELECT {_CALL_COLUMNS} FROM flowq_steps WHERE job_id = ? AND seq = ?", [job_id, seq]
    )
    return _call(row)


def _call(row: Sequence[Any]) -> RecordedCall:
    seq, name, attempt, output, error, started, completed = row
    return RecordedCall(
        seq=seq,
        name=name,
        attempt=attempt,
        output=output,
        error=error,
        started_at=read_time(started),  # type: ignore[arg-type]
        completed_at=read_time(completed),  # type: ignore[arg-type]
    )


async def load_history(db: Any, job_id: int) -> list[RecordedCall]:
    """The job's recorded calls in position order."""
    found = await _fetch(
        db, f"SELECT {_CALL_COLUMNS} FROM flowq_steps WHERE job_id = ? ORDER BY seq", [job_id]
    )
    return [_call(row) for row in found]
