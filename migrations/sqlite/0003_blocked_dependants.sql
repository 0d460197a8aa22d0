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
ALTER TABLE flowq_jobs ADD COLUMN has_dependants BOOLEAN NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_claim_workflow ON flowq_jobs (workflow, priority DESC, id) WHERE ready_at IS NOT NULL;

-- Jobs that are prerequisites, and jobs waiting on prerequisites, before this version.
UPDATE flowq_jobs SET has_dependants = 1 WHERE id IN (SELECT depends_on_id FROM flowq_job_dependencies);
UPDATE flowq_jobs
SET blocked_by = (
        SELECT count(*) FROM flowq_job_dependencies d JOIN flowq_jobs p ON p.id = d.depends_on_id
        WHERE d.job_id = flowq_jobs.id AND p.status <> 'completed'
    ),
    ready_at = NULL,
    pending_reason = 'waiting for its prerequisites to complete'
WHERE status = 'pending' AND EXISTS (
    SELECT 1 FROM flowq_job_dependencies d JOIN flowq_jobs p ON p.id = d.depends_on_id
    WHERE d.job_id = flowq_jobs.id AND p.status <> 'completed'
);

CREATE TRIGGER IF NOT EXISTS flowq_jobs_unblock_dependants AFTER UPDATE OF status ON flowq_jobs FOR EACH ROW WHEN NEW.has_dependants AND NEW.status = 'completed' AND OLD.status <> 'completed' BEGIN UPDATE flowq_jobs SET blocked_by = blocked_by + -1, ready_at = CASE WHEN blocked_by = 1 THEN run_at ELSE NULL END, pending_reason = CASE WHEN blocked_by = 1 THEN NULL ELSE pending_reason END WHERE id IN (SELECT job_id FROM flowq_job_dependencies WHERE depends_on_id = NEW.id) AND status = 'pending' AND blocked_by > 0; END;
