"""flowq's tables, declared once. ``migrations/`` must create exactly this.

A migration test applies every SQL file to an empty database and compares the result
with ``metadata.create_all`` on another, on PostgreSQL and SQLite.

``flowq_jobs`` is the hot table: it holds one row per job and only what claiming and
listing need. Events, step results, dependency edges and tokens live in their own
tables so large or numerous rows never bloat it. ``ready_at`` is the instant a job
becomes claimable (its ``run_at``, next retry or wake time); it is NULL while the job
is running, finished, waiting on a token without a timeout, or *blocked*: pending
with ``blocked_by`` prerequisites not completed yet. The claim index holds only rows
with a ``ready_at``, so claims never walk blocked jobs; the
``flowq_jobs_unblock_dependants`` trigger counts a dependant's ``blocked_by`` down when
a prerequisite completes and sets its ``ready_at`` after the last
(``transitions.UNBLOCK``); it fires only for jobs whose ``has_dependants`` is set
(when a dependant is added), so other completions pay nothing. It is a trigger so
that its statements see dependants added by transactions that committed while the
completing statement waited for the prerequisite's row (PostgreSQL gives each
statement of a trigger function a fresh snapshot; the completing statement's own
would miss them). Its statements are
planned for the job at hand (``plan_cache_mode``): a generic plan, made for an
"average" prerequisite, scans every edge when one job has 100,000 dependants.
``parent_outcome_seq`` is set on a child started by ``ctx.call``: the position in its
parent's history where the parent records the child's outcome. ``cleanup_old_jobs``
keeps the finished child while the parent is unfinished and nothing is recorded there.
``unresolved_options`` is a bit set of the options (:data:`flowq.store.base.WORKER_RESOLVED`)
a job enqueued by name, where its workflow was not registered, did not get explicitly:
the first worker that runs it writes the workflow's declared values and sets it to 0.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
    event,
    false,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from flowq.replay import CHILD_WAIT_PREFIX

__all__ = [
    "NOTIFY_FUNCTION",
    "NOTIFY_TRIGGER",
    "UNBLOCK_FUNCTION",
    "UNBLOCK_TRIGGER_POSTGRES",
    "UNBLOCK_TRIGGER_SQLITE",
    "WAKE_PARENT_FUNCTION",
    "WAKE_PARENT_TRIGGER_POSTGRES",
    "WAKE_PARENT_TRIGGER_SQLITE",
    "Id",
    "TagList",
    "UtcDateTime",
    "cron_schedules",
    "job_dependencies",
    "job_events",
    "jobs",
    "metadata",
    "schema_version",
    "steps",
    "tokens",
    "workers",
]


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: ``timestamptz`` on PostgreSQL, UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TagList(TypeDecorator[tuple[str, ...]]):
    """A list of strings: ``text[]`` on PostgreSQL, a JSON array on SQLite."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(Text))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return list(value) if dialect.name == "postgresql" else json.dumps(list(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[str, ...] | None:
        if value is None:
            return None
        return tuple(json.loads(value) if isinstance(value, str) else value)


Id = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()

schema_version = Table(
    "flowq_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

jobs = Table(
    "flowq_jobs",
    metadata,
    Column("id", Id, Identity(), primary_key=True),
    Column("workflow", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", UtcDateTime, nullable=False),
    Column("ready_at", UtcDateTime),
    Column("next_attempt_at", UtcDateTime),
    Column("tags", TagList, nullable=False),
    Column("idempotency_key", Text),
    Column("group_name", Text),
    Column("timeout_ms", BigInteger),
    Column("force_kill_on_timeout", Boolean, nullable=False),
    Column("retry", Text, nullable=False),
    Column("dead_letter", Text),
    Column("dead_letter_job_id", BigInteger),
    Column("progress", Integer),
    Column("output", Text),
    Column("error_history", Text, nullable=False),
    Column("failure_reason", Text),
    Column("pending_reason", Text),
    Column("wait_until", UtcDateTime),
    Column("wait_token_id", Text),
    Column("lease_id", BigInteger, nullable=False),
    Column("locked_by", Text),
    Column("locked_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("completed_at", UtcDateTime),
    Column("last_failed_at", UtcDateTime),
    Column("last_retried_at", UtcDateTime),
    Column("last_cancelled_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("parent_job_id", BigInteger),
    Column("parent_outcome_seq", Integer),
    Column("blocked_by", Integer, nullable=False, server_default=text("0")),
    Column("has_dependants", Boolean, nullable=False, server_default=false()),
    Column("unresolved_options", Integer, nullable=False, server_default=text("0")),
    sqlite_autoincrement=True,
    postgresql_with={
        "fillfactor": "70",
        "autovacuum_vacuum_scale_factor": "0.02",
        "autovacuum_analyze_scale_factor": "0.02",
        "autovacuum_vacuum_cost_delay": "1",
    },
)
Index(
    "ix_flowq_jobs_claim",
    jobs.c.priority.desc(),
    jobs.c.id,
    jobs.c.ready_at,
    postgresql_where=jobs.c.ready_at.is_not(None),
    sqlite_where=jobs.c.ready_at.is_not(None),
)
Index(
    "ix_flowq_jobs_claim_workflow",
    jobs.c.workflow,
    -jobs.c.priority,
    jobs.c.id,
    jobs.c.ready_at,
    postgresql_where=jobs.c.ready_at.is_not(None),
).ddl_if(dialect="postgresql")
Index(
    "ix_flowq_jobs_claim_workflow",
    jobs.c.workflow,
    jobs.c.priority.desc(),
    jobs.c.id,
    jobs.c.ready_at,
    sqlite_where=jobs.c.ready_at.is_not(None),
).ddl_if(dialect="sqlite")
# Claims read it once per workflow the worker runs, merged in claim order, so due
# jobs of workflows it does not run are never visited. On PostgreSQL its order is
# (-priority, id), which ix_flowq_jobs_claim cannot give, so that the planner does
# not walk that one instead (SQLite's planner prefers it as it is). Both claim indexes
# end with ready_at (migration 0006): a claim passes over the jobs due later that come
# before the first due one in claim order (timers, delays, backoffs) by their index
# entries, without reading their rows.
Index(
    "ix_flowq_jobs_ready_at",
    jobs.c.ready_at,
    postgresql_where=jobs.c.ready_at.is_not(None),
    sqlite_where=jobs.c.ready_at.is_not(None),
)
Index(
    "ix_flowq_jobs_locked_at",
    jobs.c.locked_at,
    postgresql_where=text("status = 'processing'"),
    sqlite_where=text("status = 'processing'"),
)
Index(
    "ix_flowq_jobs_group_running",
    jobs.c.group_name,
    postgresql_where=text("status = 'processing' AND group_name IS NOT NULL"),
    sqlite_where=text("status = 'processing' AND group_name IS NOT NULL"),
)
Index(
    "ix_flowq_jobs_finished_at",
    jobs.c.finished_at,
    postgresql_where=jobs.c.finished_at.is_not(None),
    sqlite_where=jobs.c.finished_at.is_not(None),
)
Index(
    "ix_flowq_jobs_parent_job_id",
    jobs.c.parent_job_id,
    postgresql_where=jobs.c.parent_job_id.is_not(None),
    sqlite_where=jobs.c.parent_job_id.is_not(None),
)
Index(
    "ux_flowq_jobs_idempotency_key",
    jobs.c.idempotency_key,
    unique=True,
    postgresql_where=jobs.c.idempotency_key.is_not(None),
    sqlite_where=jobs.c.idempotency_key.is_not(None),
)
Index("ix_flowq_jobs_status_id", jobs.c.status, jobs.c.id)
Index("ix_flowq_jobs_tags", jobs.c.tags, postgresql_using="gin").ddl_if(dialect="postgresql")

NOTIFY_FUNCTION = (
    "CREATE OR REPLACE FUNCTION flowq_notify_new_jobs() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_notify('flowq_jobs', 'jobs'); RETURN NULL; END $$"
)
NOTIFY_TRIGGER = (
    "CREATE OR REPLACE TRIGGER flowq_jobs_notify_insert AFTER INSERT ON flowq_jobs "
    "FOR EACH STATEMENT EXECUTE FUNCTION flowq_notify_new_jobs()"
)
# New jobs wake LISTENing workers on PostgreSQL without an extra round trip per enqueue.
WAKE_PARENT_FUNCTION = (
    "CREATE OR REPLACE FUNCTION flowq_wake_parent() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN UPDATE flowq_jobs SET ready_at = NEW.finished_at, updated_at = NEW.finished_at "
    "WHERE id = NEW.parent_job_id AND status = 'waiting' "
    f"AND wait_token_id = '{CHILD_WAIT_PREFIX}' || NEW.id; "
    "IF FOUND THEN PERFORM pg_notify('flowq_jobs', 'jobs'); END IF; RETURN NULL; END $$"
)
WAKE_PARENT_TRIGGER_POSTGRES = (
    "CREATE OR REPLACE TRIGGER flowq_jobs_wake_parent AFTER UPDATE OF finished_at ON flowq_jobs "
    "FOR EACH ROW WHEN (NEW.parent_job_id IS NOT NULL AND NEW.finished_at IS NOT NULL "
    "AND OLD.finished_at IS NULL) EXECUTE FUNCTION flowq_wake_parent()"
)
WAKE_PARENT_TRIGGER_SQLITE = (
    "CREATE TRIGGER IF NOT EXISTS flowq_jobs_wake_parent AFTER UPDATE OF finished_at ON "
    "flowq_jobs FOR EACH ROW WHEN NEW.parent_job_id IS NOT NULL AND NEW.finished_at IS NOT NULL "
    "AND OLD.finished_at IS NULL BEGIN UPDATE flowq_jobs SET ready_at = NEW.finished_at, "
    "updated_at = NEW.finished_at WHERE id = NEW.parent_job_id AND status = 'waiting' AND "
    f"wait_token_id = '{CHILD_WAIT_PREFIX}' || NEW.id; END"
)
# When a child job finishes, its parent waiting in ctx.call() becomes runnable (the
# in-memory store does the same in Python).
UNBLOCK_FUNCTION = (
    "CREATE OR REPLACE FUNCTION flowq_unblock_dependants() RETURNS trigger LANGUAGE plpgsql "
    "SET plan_cache_mode = force_custom_plan AS $$ BEGIN WITH locked AS MATERIALIZED "
    "(SELECT j.id FROM flowq_jobs j JOIN flowq_job_dependencies e ON e.job_id = j.id "
    "WHERE e.depends_on_id = NEW.id "
    "AND j.status = 'pending' AND j.blocked_by > 0 ORDER BY j.id FOR UPDATE OF j) "
    "UPDATE flowq_jobs j SET blocked_by = j.blocked_by + -1, "
    "ready_at = CASE WHEN j.blocked_by = 1 THEN j.run_at ELSE NULL END, "
    "pending_reason = CASE WHEN j.blocked_by = 1 THEN NULL ELSE j.pending_reason END "
    "FROM locked WHERE j.id = locked.id; "
    "IF FOUND THEN PERFORM pg_notify('flowq_jobs', 'jobs'); END IF; RETURN NULL; END $$"
)
UNBLOCK_TRIGGER_POSTGRES = (
    "CREATE OR REPLACE TRIGGER flowq_jobs_unblock_dependants AFTER UPDATE OF status ON "
    "flowq_jobs FOR EACH ROW WHEN (NEW.has_dependants AND NEW.status = 'completed' "
    "AND OLD.status <> 'completed') "
    "EXECUTE FUNCTION flowq_unblock_dependants()"
)
UNBLOCK_TRIGGER_SQLITE = (
    "CREATE TRIGGER IF NOT EXISTS flowq_jobs_unblock_dependants AFTER UPDATE OF status ON "
    "flowq_jobs FOR EACH ROW WHEN NEW.has_dependants AND NEW.status = 'completed' "
    "AND OLD.status <> 'completed' "
    "BEGIN UPDATE flowq_jobs SET blocked_by = blocked_by + -1, "
    "ready_at = CASE WHEN blocked_by = 1 THEN run_at ELSE NULL END, "
    "pending_reason = CASE WHEN blocked_by = 1 THEN NULL ELSE pending_reason END "
    "WHERE id IN (SELECT job_id FROM flowq_job_dependencies WHERE depends_on_id = NEW.id) "
    "AND status = 'pending' AND blocked_by > 0; END"
)
# When a job completes, the pending jobs that depend on it count one prerequisite
# less; the last makes them claimable (transitions.UNBLOCK; the in-memory store does
# the same in Python). Rows are locked in id order, as everywhere.
for _statement, _dialect in (
    (NOTIFY_FUNCTION, "postgresql"),
    (NOTIFY_TRIGGER, "postgresql"),
    (WAKE_PARENT_FUNCTION, "postgresql"),
    (WAKE_PARENT_TRIGGER_POSTGRES, "postgresql"),
    (WAKE_PARENT_TRIGGER_SQLITE, "sqlite"),
    (UNBLOCK_FUNCTION, "postgresql"),
    (UNBLOCK_TRIGGER_POSTGRES, "postgresql"),
    (UNBLOCK_TRIGGER_SQLITE, "sqlite"),
):
    _ddl = DDL(_statement)  # type: ignore[no-untyped-call]
    event.listen(jobs, "after_create", _ddl.execute_if(dialect=_dialect))

job_events = Table(
    "flowq_job_events",
    metadata,
    Column("id", Id, Identity(), primary_key=True),
    Column("job_id", BigInteger, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("metadata", Text),
    sqlite_autoincrement=True,
    postgresql_with={"autovacuum_vacuum_scale_factor": "0.05"},
)
Index("ix_flowq_job_events_job_id", job_events.c.job_id, job_events.c.id)
Index("ix_flowq_job_events_at", job_events.c.at)

job_dependencies = Table(
    "flowq_job_dependencies",
    metadata,
    Column("job_id", BigInteger, nullable=False),
    Column("depends_on_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("job_id", "depends_on_id", name="pk_flowq_job_dependencies"),
)
Index("ix_flowq_job_dependencies_depends_on_id", job_dependencies.c.depends_on_id)

steps = Table(
    "flowq_steps",
    metadata,
    Column("job_id", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("output", Text),
    Column("error", Text),
    Column("started_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("job_id", "seq", name="pk_flowq_steps"),
    postgresql_with={"autovacuum_vacuum_scale_factor": "0.05"},
)

tokens = Table(
    "flowq_tokens",
    metadata,
    Column("id", Text, primary_key=True),
    Column("job_id", BigInteger),
    Column("status", Text, nullable=False),
    Column("output", Text),
    Column("tags", TagList, nullable=False),
    Column("timeout_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
)
Index("ix_flowq_tokens_job_id", tokens.c.job_id)
Index(
    "ix_flowq_tokens_timeout_at",
    tokens.c.timeout_at,
    postgresql_where=text("status = 'waiting'"),
    sqlite_where=text("status = 'waiting'"),
)

workers = Table(
    "flowq_workers",
    metadata,
    Column("worker_id", Text, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("workflows", TagList, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
)
# One row per running worker (a few rows): written when a worker starts and on its
# heartbeat cadence, deleted when it stops; read by the dashboard and flowq doctor.

cron_schedules = Table(
    "flowq_cron_schedules",
    metadata,
    Column("id", Id, Identity(), primary_key=True),
    Column("schedule_name", Text, nullable=False, unique=True),
    Column("cron_expression", Text, nullable=False),
    Column("workflow", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("timezone", Text, nullable=False),
    Column("allow_overlap", Boolean, nullable=False),
    Column("catch_up", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("options", Text, nullable=False),
    Column("next_run_at", UtcDateTime, nullable=False),
    Column("last_enqueued_at", UtcDateTime),
    Column("last_job_id", BigInteger),
    Column("last_skipped_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)
Index(
    "ix_flowq_cron_schedules_next_run_at",
    cron_schedules.c.next_run_at,
    postgresql_where=text("status = 'active'"),
    sqlite_where=text("status = 'active'"),
)
