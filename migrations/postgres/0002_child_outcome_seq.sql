-- flowq schema version 2: where a parent records a child's outcome.
-- A child started by ctx.call stores the position in its parent's history where the
-- parent records the child's outcome (its @child_result). cleanup_old_jobs keeps a
-- finished child while its parent is unfinished and has recorded nothing there.
-- Every statement ends with ';' at the end of a line (the migrator splits on that).

ALTER TABLE flowq_jobs ADD COLUMN parent_outcome_seq INTEGER;

-- Children added before this version: their key is flowq.child:<parent id>:<start
-- position>, and ctx.call records the outcome at the next position. (A child started by
-- ctx.start_child alone is then kept until its parent records its next call.)
UPDATE flowq_jobs
SET parent_outcome_seq = CAST(substr(idempotency_key, length('flowq.child:' || parent_job_id || ':') + 1) AS INTEGER) + 1
WHERE parent_job_id IS NOT NULL
  AND idempotency_key LIKE ('flowq.child:' || parent_job_id || ':%');
