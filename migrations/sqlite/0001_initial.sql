-- flowq schema version 1: jobs, events, dependencies, steps, tokens, cron schedules.
-- Every statement ends with ';' at the end of a line (the migrator splits on that).

CREATE TABLE IF NOT EXISTS flowq_cron_schedules (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    schedule_name TEXT NOT NULL,
    cron_expression TEXT NOT NULL,
    workflow TEXT NOT NULL,
    payload TEXT NOT NULL,
    timezone TEXT NOT NULL,
    allow_overlap BOOLEAN NOT NULL,
    catch_up TEXT NOT NULL,
    status TEXT NOT NULL,
    options TEXT NOT NULL,
    next_run_at DATETIME NOT NULL,
    last_enqueued_at DATETIME,
    last_job_id BIGINT,
    last_skipped_at DATETIME,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    UNIQUE (schedule_name)
);
CREATE INDEX IF NOT EXISTS ix_flowq_cron_schedules_next_run_at ON flowq_cron_schedules (next_run_at) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS flowq_job_dependencies (
    job_id BIGINT NOT NULL,
    depends_on_id BIGINT NOT NULL,
    CONSTRAINT pk_flowq_job_dependencies PRIMARY KEY (job_id, depends_on_id)
);
CREATE INDEX IF NOT EXISTS ix_flowq_job_dependencies_depends_on_id ON flowq_job_dependencies (depends_on_id);

CREATE TABLE IF NOT EXISTS flowq_job_events (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    at DATETIME NOT NULL,
    metadata TEXT
);
CREATE INDEX IF NOT EXISTS ix_flowq_job_events_at ON flowq_job_events (at);
CREATE INDEX IF NOT EXISTS ix_flowq_job_events_job_id ON flowq_job_events (job_id, id);

CREATE TABLE IF NOT EXISTS flowq_jobs (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    workflow TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_at DATETIME NOT NULL,
    ready_at DATETIME,
    next_attempt_at DATETIME,
    tags TEXT NOT NULL,
    idempotency_key TEXT,
    group_name TEXT,
    timeout_ms BIGINT,
    force_kill_on_timeout BOOLEAN NOT NULL,
    retry TEXT NOT NULL,
    dead_letter TEXT,
    dead_letter_job_id BIGINT,
    progress INTEGER,
    output TEXT,
    error_history TEXT NOT NULL,
    failure_reason TEXT,
    pending_reason TEXT,
    wait_until DATETIME,
    wait_token_id TEXT,
    lease_id BIGINT NOT NULL,
    locked_by TEXT,
    locked_at DATETIME,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    started_at DATETIME,
    completed_at DATETIME,
    last_failed_at DATETIME,
    last_retried_at DATETIME,
    last_cancelled_at DATETIME,
    finished_at DATETIME,
    parent_job_id BIGINT
);
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_claim ON flowq_jobs (priority DESC, id) WHERE ready_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_parent_job_id ON flowq_jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_finished_at ON flowq_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_group_running ON flowq_jobs (group_name) WHERE status = 'processing' AND group_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_locked_at ON flowq_jobs (locked_at) WHERE status = 'processing';
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_ready_at ON flowq_jobs (ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_flowq_jobs_status_id ON flowq_jobs (status, id);
CREATE UNIQUE INDEX IF NOT EXISTS ux_flowq_jobs_idempotency_key ON flowq_jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A child job that finishes wakes its parent waiting in ctx.call().
CREATE TRIGGER IF NOT EXISTS flowq_jobs_wake_parent AFTER UPDATE OF finished_at ON flowq_jobs FOR EACH ROW WHEN NEW.parent_job_id IS NOT NULL AND NEW.finished_at IS NOT NULL AND OLD.finished_at IS NULL BEGIN UPDATE flowq_jobs SET ready_at = NEW.finished_at, updated_at = NEW.finished_at WHERE id = NEW.parent_job_id AND status = 'waiting' AND wait_token_id = 'child:' || NEW.id; END;

CREATE TABLE IF NOT EXISTS flowq_schema_version (
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at DATETIME NOT NULL,
    PRIMARY KEY (version)
);

CREATE TABLE IF NOT EXISTS flowq_steps (
    job_id BIGINT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    output TEXT,
    error TEXT,
    started_at DATETIME NOT NULL,
    completed_at DATETIME NOT NULL,
    CONSTRAINT pk_flowq_steps PRIMARY KEY (job_id, seq)
);

CREATE TABLE IF NOT EXISTS flowq_tokens (
    id TEXT NOT NULL,
    job_id BIGINT,
    status TEXT NOT NULL,
    output TEXT,
    tags TEXT NOT NULL,
    timeout_at DATETIME,
    created_at DATETIME NOT NULL,
    completed_at DATETIME,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_flowq_tokens_job_id ON flowq_tokens (job_id);
CREATE INDEX IF NOT EXISTS ix_flowq_tokens_timeout_at ON flowq_tokens (timeout_at) WHERE status = 'waiting';
