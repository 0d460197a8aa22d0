"""PostgreSQL hot paths: adding, claiming and completing jobs in one round trip each.

Each function runs ONE statement on the asyncpg connection under a pooled SQLAlchemy
connection, outside an explicit transaction (a single statement is its own
transaction), with its events written by a data-modifying CTE of the same
statement. The general SQLAlchemy path of :class:`flowq.store.sql.SqlStore` does the
same work in several statements; the contract suite runs both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flowq import codec
from flowq.models import JobStatus
from flowq.replay import RecordedCall
from flowq.store import records
from flowq.store.base import ClaimedJob, Completion, Lease, NewJob

__all__ = ["ADD_JOBS", "CLAIM_JOBS", "COMPLETE_JOBS", "add_job_arguments", "claimed_from_rows"]

ADD_JOBS = """
WITH input AS MATERIALIZED (
    SELECT nextval('flowq_jobs_id_seq'::regclass) AS id, t.*
    FROM unnest(
        $1::text[], $2::text[], $3::int[], $4::int[], $5::timestamptz[], $6::text[],
        $7::text[], $8::text[], $9::bigint[], $10::bool[], $11::text[], $12::text[]
    ) WITH ORDINALITY AS t(
        workflow, payload, priority, max_attempts, run_at, tags, idempotency_key,
        group_name, timeout_ms, force_kill_on_timeout, retry, dead_letter, ord
    )
), inserted AS (
    INSERT INTO flowq_jobs (
        id, workflow, payload, status, priority, attempts, max_attempts, run_at, ready_at,
        tags, idempotency_key, group_name, timeout_ms, force_kill_on_timeout, retry,
        dead_letter, error_history, lease_id, created_at, updated_at
    )
    SELECT
        id, workflow, payload, 'pending', priority, 0, max_attempts,
        COALESCE(run_at, $13), COALESCE(run_at, $13),
        ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)), idempotency_key, group_name,
        timeout_ms, force_kill_on_timeout, retry, dead_letter, '[]', 0, $13, $13
    FROM input
    ORDER BY ord
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), events AS (
    INSERT INTO flowq_job_events (job_id, event_type, at)
    SELECT id, 'added', $13 FROM inserted
)
SELECT input.ord, input.id, input.idempotency_key, inserted.id IS NOT NULL AS inserted
FROM input LEFT JOIN inserted ON inserted.id = input.id
ORDER BY input.ord
"""

CLAIM_JOBS = """
WITH chosen AS (
    SELECT j.id, j.status AS previous_status
    FROM flowq_jobs j
    WHERE j.ready_at <= $1
      AND j.workflow = ANY($2::text[])
      AND NOT EXISTS (
          SELECT 1 FROM flowq_job_dependencies d
          JOIN flowq_jobs p ON p.id = d.depends_on_id
          WHERE d.job_id = j.id AND p.status <> 'completed'
      )
    ORDER BY j.priority DESC, j.id
    LIMIT $3
    FOR UPDATE OF j SKIP LOCKED
), claimed AS (
    UPDATE flowq_jobs j SET
        status = 'processing',
        attempts = j.attempts + CASE WHEN c.previous_status = 'waiting' THEN 0 ELSE 1 END,
        started_at = CASE WHEN c.previous_status = 'waiting' THEN j.started_at ELSE $1 END,
        lease_id = j.lease_id + 1,
        locked_by = $4,
        locked_at = $1,
        ready_at = NULL,
        next_attempt_at = NULL,
        wait_until = NULL,
        wait_token_id = NULL,
        pending_reason = NULL,
        updated_at = $1
    FROM chosen c
    WHERE j.id = c.id
    RETURNING j.*, c.previous_status,
        EXISTS (SELECT 1 FROM flowq_steps s WHERE s.job_id = j.id) AS has_history
), events AS (
    INSERT INTO flowq_job_events (job_id, event_type, at, metadata)
    SELECT id, 'processing', $1, json_build_object(
        'worker_id', $4::text, 'attempt', attempts, 'resumed', previous_status = 'waiting'
    )::text
    FROM claimed
)
SELECT * FROM claimed ORDER BY priority DESC, id
"""

COMPLETE_JOBS = """
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(id, lease_id, output)
), locked AS MATERIALIZED (
    -- Lock rows in id order, as every statement that locks several job rows does:
    -- concurrent batches of one worker must not deadlock each other.
    SELECT j.id FROM flowq_jobs j JOIN input i ON j.id = i.id AND j.lease_id = i.lease_id
    WHERE j.status = 'processing' ORDER BY j.id FOR UPDATE OF j
), completed AS (
    UPDATE flowq_jobs j SET
        status = 'completed',
        output = i.output,
        failure_reason = NULL,
        completed_at = $4,
        finished_at = $4,
        updated_at = $4,
        locked_by = NULL,
        locked_at = NULL
    FROM input i JOIN locked l ON l.id = i.id
    WHERE j.id = i.id AND j.lease_id = i.lease_id AND j.status = 'processing'
    RETURNING j.id,
        EXISTS (SELECT 1 FROM flowq_job_dependencies d WHERE d.depends_on_id = j.id)
            AS has_dependants
), events AS (
    INSERT INTO flowq_job_events (job_id, event_type, at)
    SELECT id, 'completed', $4 FROM completed ORDER BY id
)
SELECT id, has_dependants,
    CASE WHEN has_dependants THEN pg_notify('flowq_jobs', 'jobs') END AS notified
FROM completed
"""


RECORD_CALLS = """
WITH input AS (
    SELECT * FROM unnest(
        $1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::int[], $6::text[], $7::text[],
        $8::timestamptz[], $9::timestamptz[]
    ) AS t(job_id, lease_id, seq, name, attempt, output, error, started_at, completed_at)
), held AS (
    SELECT i.* FROM input i
    JOIN flowq_jobs j ON j.id = i.job_id AND j.lease_id = i.lease_id AND j.status = 'processing'
    ORDER BY j.id
    FOR SHARE OF j
), recorded AS (
    INSERT INTO flowq_steps (job_id, seq, name, attempt, output, error, started_at, completed_at)
    SELECT job_id, seq, name, attempt, output, error, started_at, completed_at FROM held
    ON CONFLICT (job_id, seq) DO UPDATE SET
        name = excluded.name, attempt = excluded.attempt, output = excluded.output,
        error = excluded.error, started_at = excluded.started_at,
        completed_at = excluded.completed_at
    WHERE flowq_steps.error IS NOT NULL
    RETURNING job_id, seq
)
-- Every held call, with the row already recorded at its position when the insert
-- neither added nor replaced one (a success is never replaced). The statement's
-- snapshot shows that row as it was, which is as it stays.
SELECT h.job_id, h.seq, r.seq IS NOT NULL AS stored,
    s.name, s.attempt, s.output, s.error, s.started_at, s.completed_at
FROM held h
LEFT JOIN recorded r ON r.job_id = h.job_id AND r.seq = h.seq
LEFT JOIN flowq_steps s ON r.seq IS NULL AND s.job_id = h.job_id AND s.seq = h.seq
"""

LOAD_HISTORY = """
SELECT seq, name, attempt, output, error, started_at, completed_at
FROM flowq_steps WHERE job_id = $1 ORDER BY seq
"""


def record_call_arguments(calls: Sequence[tuple[Lease, RecordedCall]]) -> list[Any]:
    """The 9 parameters of :data:`RECORD_CALLS` (one array per column)."""
    return [
        [lease.job_id for lease, _ in calls],
        [lease.lease_id for lease, _ in calls],
        [call.seq for _, call in calls],
        [call.name for _, call in calls],
        [call.attempt for _, call in calls],
        [call.output for _, call in calls],
        [call.error for _, call in calls],
        [call.started_at for _, call in calls],
        [call.completed_at for _, call in calls],
    ]


def add_job_arguments(jobs: Sequence[NewJob], now: datetime) -> list[Any]:
    """The 13 parameters of :data:`ADD_JOBS` (one array per varying column, then now)."""
    return [
        [job.workflow for job in jobs],
        [job.payload for job in jobs],
        [job.priority for job in jobs],
        [job.max_attempts for job in jobs],
        [job.run_at for job in jobs],
        [codec.encode(list(job.tags), what="tags") for job in jobs],
        [job.idempotency_key for job in jobs],
        [job.group for job in jobs],
        [records.to_ms(job.timeout) for job in jobs],
        [job.force_kill_on_timeout for job in jobs],
        [records.encode_retry(job.retry) for job in jobs],
        [job.dead_letter for job in jobs],
        now,
    ]


def claimed_from_rows(rows: Sequence[Any], worker_id: str) -> list[ClaimedJob]:
    """ClaimedJob records from the rows :data:`CLAIM_JOBS` returns."""
    return [
        ClaimedJob(
            records.job_from_row(row, ()),
            Lease(row["id"], row["lease_id"], worker_id),
            row["previous_status"] == JobStatus.WAITING.value,
            row["payload"],
            row["has_history"],
        )
        for row in rows
    ]


def complete_arguments(completions: Sequence[Completion], now: datetime) -> list[Any]:
    """The 4 parameters of :data:`COMPLETE_JOBS`."""
    return [
        [c.lease.job_id for c in completions],
        [c.lease.lease_id for c in completions],
        [c.output for c in completions],
        now,
    ]
