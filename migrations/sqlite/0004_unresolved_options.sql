-- flowq schema version 4: options a worker fills in from the workflow's declaration.
-- A job enqueued by name in a process where its workflow is not registered cannot take
-- the workflow's declared defaults (timeout, retry policy, max attempts, dead letter,
-- force_kill_on_timeout). unresolved_options is a bit set of those it did not get
-- explicitly (1 timeout, 2 max_attempts, 4 retry, 8 dead_letter,
-- 16 force_kill_on_timeout); the first worker that runs the job writes the declared
-- values and sets it to 0. Every job added before this version is resolved (0).
-- Every statement ends with ';' at the end of a line (the migrator splits on that).

ALTER TABLE flowq_jobs ADD COLUMN unresolved_options INTEGER NOT NULL DEFAULT 0;
