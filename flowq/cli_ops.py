"""The operator commands of ``flowq`` beyond jobs: ``tokens list``, ``cron ...`` and
``doctor``. Tables for people, JSON with ``--json`` for scripts."""

from __future__ import annotations

import argparse
from typing import Any

from flowq import codec
from flowq.cli_jobs import table
from flowq.client import App
from flowq.errors import ScheduleError
from flowq.models import CronSchedule
from flowq.store.report import HealthReport

__all__ = ["WORKERS_WINDOW", "problems", "run_cron_command", "run_doctor", "run_tokens_list"]


async def run_tokens_list(app: App, args: argparse.Namespace) -> str:
    """``flowq tokens list``: tokens, newest first."""
    tokens = await app.get_tokens(job_id=args.job, status=args.status, limit=args.limit)
    if args.json:
        return _json(tokens)
    rows = [
        [t.id, _text(t.job_id), t.status.value, ",".join(t.tags) or "-", _text(t.timeout_at),
         _text(t.created_at)]
        for t in tokens
    ]  # fmt: skip
    return table(("id", "job", "status", "tags", "timeout_at", "created_at"), rows)


async def run_cron_command(app: App, args: argparse.Namespace) -> str:
    """``flowq cron list|show|pause|resume|remove|enqueue``."""
    command = args.cron_command
    if command == "list":
        schedules = await app.list_cron_jobs(args.status)
        if args.json:
            return _json(schedules)
        rows = [
            [str(s.id), s.schedule_name, s.cron_expression, s.timezone, s.workflow,
             s.status.value, _text(s.next_run_at), _text(s.last_job_id)]
            for s in schedules
        ]  # fmt: skip
        columns = ("id", "name", "expression", "zone", "workflow", "status", "next_run_at",
                   "last_job")  # fmt: skip
        return table(columns, rows)
    if command == "enqueue":
        count = await app.enqueue_due_cron_jobs()
        return _json({"enqueued": count}) if args.json else f"enqueued {count} job(s)"
    schedule = await _schedule(app, args.schedule)
    if command == "show":
        return _json(schedule) if args.json else _fields(codec.decode(_json(schedule)))
    verbs = {
        "pause": app.pause_cron_job,
        "resume": app.resume_cron_job,
        "remove": app.remove_cron_job,
    }
    changed = await verbs[command](schedule.id)
    if args.json:
        return _json({"schedule_id": schedule.id, "changed": changed})
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[command]
    return f"schedule {schedule.schedule_name!r} {done}"


async def run_doctor(app: App, args: argparse.Namespace) -> str:
    """``flowq doctor``: the store's state, and what looks wrong."""
    report = await app.health_report(stuck_minutes=args.stuck_minutes)
    workers = await app.get_workers(seen_within=WORKERS_WINDOW)
    if args.json:
        found = problems(report, args.stuck_minutes)
        return _json({"report": report, "workers": workers, "problems": found})
    lines = [
        f"schema version    {_text(report.schema_version)} (this flowq needs "
        f"{_text(report.latest_schema_version)})",
        "jobs              "
        + (", ".join(f"{n} {s}" for s, n in sorted(report.jobs_by_status.items())) or "none"),
        f"failed            {report.retrying_jobs} retrying, {report.gave_up_jobs} gave up",
        f"oldest due job    {_age(report.oldest_due_seconds)}",
        f"stuck jobs        {report.stuck_jobs} (locked > {args.stuck_minutes:g} min)",
        f"waiting tokens    {report.waiting_tokens}",
        "workers seen      "
        + (", ".join(f"{w.worker_id} ({w.host}, pid {w.pid})" for w in workers) or "none")
        + f" (in the last {WORKERS_WINDOW // 60} min)",
        "schedules         "
        + (", ".join(f"{n} {s}" for s, n in sorted(report.schedules_by_status.items())) or "none"),
    ]
    lines += [
        f"size              {name}: {_bytes(size)}" for name, size in report.table_bytes.items()
    ]
    found = problems(report, args.stuck_minutes)
    lines += [f"PROBLEM: {problem}" for problem in found] or ["no problems found"]
    return "\n".join(lines)


WORKERS_WINDOW = 120
"""Seconds within which ``flowq doctor`` lists the workers seen."""


def problems(report: HealthReport, stuck_minutes: float) -> list[str]:
    """What an operator should act on."""
    found = []
    if report.schema_version is not None and report.schema_version != report.latest_schema_version:
        found.append("the schema is not at this flowq's version: run `flowq migrate`")
    if report.stuck_jobs:
        found.append(
            f"{report.stuck_jobs} job(s) locked longer than {stuck_minutes:g} min: "
            "`flowq reclaim` takes them back"
        )
    if report.oldest_due_seconds is not None and report.oldest_due_seconds > 300:
        found.append(
            f"a due job has waited {_age(report.oldest_due_seconds)}: are workers running "
            "for its workflow?"
        )
    return found


async def _schedule(app: App, given: str) -> CronSchedule:
    schedule = (
        await app.get_cron_job(int(given))
        if given.isdigit()
        else await app.get_cron_job_by_name(given)
    )
    if schedule is None:
        raise ScheduleError(f"there is no schedule {given!r}")
    return schedule


def _fields(values: dict[str, Any]) -> str:
    width = max(len(name) for name in values)
    return "\n".join(f"{name.ljust(width)}  {_text(value)}" for name, value in values.items())


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "isoformat"):
        return str(value.isoformat(sep=" ", timespec="seconds"))
    if isinstance(value, dict | list):
        return _json(value)
    return str(value)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"


def _json(value: Any) -> str:
    return codec.encode(value, what="command output")
