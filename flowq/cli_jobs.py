"""The operator commands of ``flowq``: jobs, tokens, maintenance, migrations as SQL.

Each command prints a table for people, or JSON with ``--json`` for scripts (one
document on stdout; nothing else is printed there). Errors are ``FlowqError``s, which
``flowq.cli`` prints as one line with exit status 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from flowq import codec
from flowq.client import App
from flowq.errors import ValidationError
from flowq.models import Job, JobStatus, TagQuery

__all__ = ["migrate_sql", "run_jobs_command", "run_maintenance", "status_text", "table"]

_LIST_COLUMNS = ("id", "workflow", "status", "attempts", "run_at", "tags")


async def run_jobs_command(app: App, args: argparse.Namespace) -> str:
    """``flowq jobs list|show|events|steps|retry|cancel|export``: what to print."""
    command = args.jobs_command
    if command == "list":
        tags = None if not args.tag else TagQuery(args.tag, args.tag_mode)
        status, will_retry = _retry_filter(args)
        jobs = await app.get_jobs(
            status=status, will_retry=will_retry, workflow=args.workflow, tags=tags,
            limit=args.limit, cursor=args.cursor,
        )  # fmt: skip
        if args.json:
            return _json(jobs)
        rows = [
            [status_text(job) if column == "status" else _cell(getattr(job, column))
             for column in _LIST_COLUMNS]
            for job in jobs
        ]  # fmt: skip
        more = f"\nmore: flowq jobs list --cursor {jobs[-1].id}" if len(jobs) == args.limit else ""
        return table(_LIST_COLUMNS, rows) + more
    if command == "export":
        return await app.export_job(args.job_id)
    if command == "retry":
        return _changed(await app.retry_job(args.job_id), "retried", args)
    if command == "cancel":
        return _changed(await app.cancel_job(args.job_id), "cancelled", args)
    job = await _job(app, args.job_id)
    if command == "show":
        return _json(job) if args.json else _show(job)
    if command == "events":
        events = await app.get_job_events(job.id)
        if args.json:
            return _json(events)
        rows = [[_cell(e.at), e.event_type.value, _cell(e.metadata or "")] for e in events]
        return table(("at", "event", "metadata"), rows)
    steps = await app.get_job_steps(job.id)
    if args.json:
        return _json(steps)
    rows = [
        [str(s.seq), s.name, str(s.attempt), _cell(s.error or s.output), _cell(s.completed_at)]
        for s in steps
    ]
    return table(("seq", "name", "attempt", "result", "completed_at"), rows)


async def run_maintenance(app: App, args: argparse.Namespace) -> str:
    """``flowq reclaim`` and ``flowq cleanup``: what they did."""
    if args.command == "reclaim":
        done = {"reclaimed_jobs": await app.reclaim_stuck_jobs(args.minutes)}
    else:
        done = {
            "cleaned_up_jobs": await app.cleanup_old_jobs(args.days),
            "cleaned_up_events": await app.cleanup_old_job_events(args.events_days or args.days),
        }
    if args.json:
        return _json(done)
    return ", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in done.items())


def migrate_sql(dialect: str, pg_schema: str | None = None) -> str:
    """Every migration of ``dialect`` as SQL (``flowq migrate --sql``), for teams that
    apply migrations with their own tool: the version table, then each migration's
    statements and the row that records it, so that flowq finds the schema current.

    With ``pg_schema`` (PostgreSQL only), the SQL first creates that schema if it is
    missing and sets the session's ``search_path`` to it, and the functions notify on
    the schema's own channel.

    Raises:
        ValidationError: ``pg_schema`` is not a usable name, or the database is SQLite.
    """
    from sqlalchemy import func
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.engine import Dialect, make_url
    from sqlalchemy.schema import CreateTable

    from flowq.store.sql import migrate, schema
    from flowq.store.sql.base import dialect_for_url

    kind = postgresql if dialect == "postgresql" else sqlite
    compiler: Dialect = kind.dialect()
    store_dialect = dialect_for_url(make_url(f"{dialect}://"), pg_schema)
    version_table = CreateTable(schema.schema_version, if_not_exists=True).compile(dialect=compiler)
    header = f"-- flowq schema for {dialect}: apply in one transaction"
    if pg_schema is not None:
        from flowq.store.sql.pg_schema import quote_identifier, search_path

        header += (
            f"\n-- in the schema {pg_schema!r} (SET search_path lasts for the session)\n"
            f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(pg_schema)};\n"
            f"SET search_path TO {search_path(pg_schema)};"
        )
    parts = [f"{header}\n{version_table};"]
    for migration in migrate.load_migrations(dialect):
        statements = "\n\n".join(
            f"{store_dialect.migration_statement(statement)};" for statement in migration.statements
        )
        record = schema.schema_version.insert().values(
            version=migration.version, name=migration.name, applied_at=func.current_timestamp()
        )
        rendered = record.compile(dialect=compiler, compile_kwargs={"literal_binds": True})
        parts.append(f"-- migration {migration.name}\n{statements}\n\n{rendered};")
    return "\n\n".join(parts) + "\n"


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, one header line (``(none)`` when there are no rows)."""
    if not rows:
        return "(none)"
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


async def _job(app: App, job_id: int) -> Job:
    job = await app.get_job(job_id)
    if job is None:
        raise ValidationError(f"there is no job {job_id}")
    return job


def _changed(changed: bool, verb: str, args: argparse.Namespace) -> str:
    if args.json:
        return _json({"job_id": args.job_id, "changed": changed})
    return f"job {args.job_id} {verb}" if changed else f"job {args.job_id} unchanged"


def status_text(job: Job) -> str:
    """A job's status for people: a failed job says whether it will run again
    (``failed (retries at 2026-01-02 03:04:05+00:00)``) or not (``failed (gave up)``)."""
    if job.status is not JobStatus.FAILED:
        return job.status.value
    if job.will_retry:
        return f"failed (retries at {_cell(job.next_attempt_at)})"
    return "failed (gave up)"


def _retry_filter(args: argparse.Namespace) -> tuple[str | None, bool | None]:
    """The ``status`` and ``will_retry`` filters of ``jobs list``."""
    if not (args.retrying or args.gave_up):
        return args.status, None
    option = "--retrying" if args.retrying else "--gave-up"
    if args.status not in (None, JobStatus.FAILED.value):
        raise ValidationError(
            f"{option} lists failed jobs; leave out --status {args.status} or use --status failed"
        )
    return JobStatus.FAILED.value, bool(args.retrying)


def _show(job: Job) -> str:
    fields = msgspec.to_builtins(job) | {"status": status_text(job)}
    width = max(len(name) for name in fields)
    return "\n".join(f"{name.ljust(width)}  {_cell(value)}" for name, value in fields.items())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, str):
        return value
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return ",".join(value) or "-"
    if hasattr(value, "value") and isinstance(value.value, str):  # str enums
        return str(value.value)
    return json.dumps(msgspec.to_builtins(value), separators=(",", ":"))


def _json(value: Any) -> str:
    return codec.encode(value, what="command output")
