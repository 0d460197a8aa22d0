"""Cron schedules as rows, and what a due schedule does at a given moment (pure; every
store shares it).

A schedule row keeps the job it starts as a template (``options``: JSON text of the
job's options once the workflow's defaults are merged), so a store can enqueue a
tick in the same transaction that advances the schedule, without the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from flowq import codec, cron
from flowq.models import CronSchedule, ScheduleStatus
from flowq.store.base import NewJob
from flowq.store.rows import decode_retry, encode_retry, from_ms, to_ms
from flowq.store.schedules import NewSchedule

__all__ = [
    "TickPlan",
    "declared_changes",
    "edited_values",
    "encode_template",
    "first_tick",
    "job_of_tick",
    "new_schedule_row",
    "plan_ticks",
    "schedule_from_row",
    "tick_key",
    "updated_row",
]


def encode_template(job: NewJob) -> str:
    """The options of the jobs a schedule starts, as JSON text (payload aside), with
    the options left to the worker (``unresolved_options``)."""
    return codec.encode(
        {
            "priority": job.priority,
            "max_attempts": job.max_attempts,
            "retry": codec.decode(encode_retry(job.retry)),
            "timeout_ms": to_ms(job.timeout),
            "force_kill_on_timeout": job.force_kill_on_timeout,
            "tags": list(job.tags),
            "group": job.group,
            "dead_letter": job.dead_letter,
            "unresolved_options": list(job.unresolved_options),
        },
        what="schedule job options",
    )


def tick_key(schedule_id: int, tick: datetime) -> str:
    """The idempotency key of the job of one tick: a tick is enqueued once, even if
    two enqueuers ever raced past the schedule's row lock."""
    return f"flowq-cron:{schedule_id}:{tick.isoformat()}"


def job_of_tick(row: Mapping[Any, Any], tick: datetime) -> NewJob:
    """The job a schedule row starts for ``tick`` (due at the tick's time)."""
    template = codec.decode(row["options"])
    return NewJob(
        workflow=row["workflow"],
        payload=row["payload"],
        priority=template["priority"],
        max_attempts=template["max_attempts"],
        run_at=tick,
        retry=decode_retry(codec.encode(template["retry"], what="retry policy")),
        timeout=from_ms(template["timeout_ms"]),
        force_kill_on_timeout=template["force_kill_on_timeout"],
        tags=tuple(template["tags"]),
        idempotency_key=tick_key(row["id"], tick),
        group=template["group"],
        depends_on=(),
        depends_on_tags=(),
        dead_letter=template["dead_letter"],
        unresolved_options=tuple(template.get("unresolved_options", ())),
    )


def new_schedule_row(schedule: NewSchedule, now: datetime) -> dict[str, Any]:
    """Column values of a new schedule (its first tick after ``now``)."""
    return {
        "schedule_name": schedule.schedule_name,
        **_declared_columns(schedule),
        "status": ScheduleStatus.ACTIVE.value,
        "next_run_at": first_tick(schedule.cron_expression, schedule.timezone, now),
        "last_enqueued_at": None,
        "last_job_id": None,
        "last_skipped_at": None,
        "created_at": now,
        "updated_at": now,
    }


def first_tick(expression: str, timezone: str, now: datetime) -> datetime:
    """The first tick strictly after ``now``."""
    return cron.next_tick(expression, cron.check_timezone(timezone), now)


def schedule_from_row(row: Mapping[Any, Any]) -> CronSchedule:
    """The user's record of a schedule row."""
    template = codec.decode(row["options"])
    options: dict[str, Any] = {
        "priority": template["priority"],
        "max_attempts": template["max_attempts"],
        "tags": template["tags"],
        "timeout": from_ms(template["timeout_ms"]),
        "force_kill_on_timeout": template["force_kill_on_timeout"],
        "retry": decode_retry(codec.encode(template["retry"], what="retry policy")),
        "group": template["group"],
        "dead_letter": template["dead_letter"],
    }
    for name in template.get("unresolved_options", ()):
        del options[name]  # left to the worker: not an option of the schedule
    return CronSchedule(
        id=row["id"],
        schedule_name=row["schedule_name"],
        cron_expression=row["cron_expression"],
        workflow=row["workflow"],
        payload=codec.decode(row["payload"]),
        timezone=row["timezone"],
        allow_overlap=bool(row["allow_overlap"]),
        catch_up=cast(cron.CatchUp, row["catch_up"]),
        status=ScheduleStatus(row["status"]),
        next_run_at=row["next_run_at"],
        last_enqueued_at=row["last_enqueued_at"],
        last_job_id=row["last_job_id"],
        last_skipped_at=row["last_skipped_at"],
        job_options=options,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What a due schedule does now: the ticks to enqueue (ascending), the tick it
    skips (the previous job is unfinished and overlap is not allowed) and the
    column values to write back."""

    ticks: tuple[datetime, ...]
    skipped: datetime | None
    next_run_at: datetime


def plan_ticks(row: Mapping[Any, Any], now: datetime, *, previous_unfinished: bool) -> TickPlan:
    """What the schedule of ``row`` (due: ``next_run_at <= now``) does at ``now``.

    The due ticks follow its ``catch_up`` (:func:`flowq.cron.due_ticks`). Without
    ``allow_overlap``, while the previous job is unfinished the latest due tick is
    skipped (recorded) and nothing is enqueued; of several caught-up ticks only one
    starts (the latest), since each would overlap the one before.
    """
    zone = cron.check_timezone(row["timezone"])
    due, following = cron.due_ticks(
        row["cron_expression"], zone, row["next_run_at"], now, row["catch_up"]
    )
    if not due:
        return TickPlan((), None, following)
    if row["allow_overlap"]:
        return TickPlan(tuple(due), None, following)
    if previous_unfinished:
        return TickPlan((), due[-1], following)
    return TickPlan((due[-1],), None, following)


def updated_row(
    row: Mapping[Any, Any], plan: TickPlan, last_job_id: int | None, now: datetime
) -> dict[str, Any]:
    """The columns a schedule's enqueue writes back (always the same keys, so that many
    schedules are updated by one statement)."""
    enqueued = bool(plan.ticks)
    return {
        "next_run_at": plan.next_run_at,
        "updated_at": now,
        "last_enqueued_at": plan.ticks[-1] if enqueued else row["last_enqueued_at"],
        "last_job_id": last_job_id if enqueued else row["last_job_id"],
        "last_skipped_at": row["last_skipped_at"] if plan.skipped is None else plan.skipped,
    }


def declared_changes(
    old: Mapping[Any, Any], schedule: NewSchedule, now: datetime
) -> dict[str, Any]:
    """The columns to write when code declares ``schedule`` over the stored ``old``
    (empty if nothing changed). Status and history stay; ``next_run_at`` is recomputed
    only when the expression or zone changed."""
    declared = _declared_columns(schedule)
    values = {key: value for key, value in declared.items() if old[key] != value}
    return _with_next_run(old, values, now) if values else {}


def _declared_columns(schedule: NewSchedule) -> dict[str, Any]:
    """The columns a declaration of ``schedule`` sets (all but its name, which finds
    the row)."""
    return {
        "cron_expression": schedule.cron_expression,
        "workflow": schedule.workflow,
        "payload": schedule.payload,
        "timezone": schedule.timezone,
        "allow_overlap": schedule.allow_overlap,
        "catch_up": schedule.catch_up,
        "options": schedule.options,
    }


def edited_values(
    old: Mapping[Any, Any], changes: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The columns an edit writes: ``changes``, ``updated_at`` and, when the expression
    or zone changed or a paused schedule resumes, ``next_run_at`` (its first tick after
    now: ticks missed while paused are not caught up)."""
    values = dict(changes)
    resumed = (
        values.get("status") == ScheduleStatus.ACTIVE.value
        and old["status"] != ScheduleStatus.ACTIVE.value
    )
    return _with_next_run(old, values, now, force=resumed)


def _with_next_run(
    old: Mapping[Any, Any], values: dict[str, Any], now: datetime, *, force: bool = False
) -> dict[str, Any]:
    expression = values.get("cron_expression", old["cron_expression"])
    timezone = values.get("timezone", old["timezone"])
    if force or expression != old["cron_expression"] or timezone != old["timezone"]:
        values["next_run_at"] = first_tick(expression, timezone, now)
    values["updated_at"] = now
    return values
