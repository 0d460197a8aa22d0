-- flowq schema version 3: jobs that cannot run yet leave the claim index.
-- A job added with prerequisites that have not completed is blocked: pending, with
-- blocked_by counting them and no ready_at, so claims never walk it. When a
-- prerequisite completes, the flowq_jobs_unblock_dependants trigger counts it down
-- and, after the last, gives the job its ready_at (its run_at). It fires only for
-- jobs whose has_dependants is set.
-- Claims read the new index once per workflow the worker runs, so due jobs of
-- workflows no worker runs are never visited.
-- Every statement ends with ';' at the end of a line (the migrator splits on that).

ALTER TABLE flowq_jobs ADD COLUMN blocked_by INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flowq_jobs ADD COLUMN has_dependants BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_claim_workflow ON flowq_jobs (workflow, (- priority), id) WHERE ready_at IS NOT NULL;

-- Jobs that are prerequisites, and jobs waiting on prerequisites, before this version.
UPDATE flowq_jobs SET has_dependants = true WHERE id IN (SELECT depends_on_id FROM flowq_job_dependencies);
UPDATE flowq_jobs j
SET blocked_by = b.unfinished, ready_at = NULL,
    pending_reason = 'waiting for its prerequisites to complete'
FROM (
    SELECT d.job_id, count(*) AS unfinished
    FROM flowq_job_dependencies d JOIN flowq_jobs p ON p.id = d.depends_on_id
    WHERE p.status <> 'completed'
    GROUP BY d.job_id
) b
WHERE j.id = b.job_id AND j.status = 'pending';

CREATE OR REPLACE FUNCTION flowq_unblock_dependants() RETURNS trigger LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$ BEGIN WITH locked AS MATERIALIZED (SELECT j.id FROM flowq_jobs j JOIN flowq_job_dependencies e ON e.job_id = j.id WHERE e.depends_on_id = NEW.id AND j.status = 'pending' AND j.blocked_by > 0 ORDER BY j.id FOR UPDATE OF j) UPDATE flowq_jobs j SET blocked_by = j.blocked_by + -1, ready_at = CASE WHEN j.blocked_by = 1 THEN j.run_at ELSE NULL END, pending_reason = CASE WHEN j.blocked_by = 1 THEN NULL ELSE j.pending_reason END FROM locked WHERE j.id = locked.id; IF FOUND THEN PERFORM pg_notify('flowq_jobs', 'jobs'); END IF; RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER flowq_jobs_unblock_dependants AFTER UPDATE OF status ON flowq_jobs FOR EACH ROW WHEN (NEW.has_dependants AND NEW.status = 'completed' AND OLD.status <> 'completed') EXECUTE FUNCTION flowq_unblock_dependants();
