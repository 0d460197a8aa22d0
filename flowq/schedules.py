"""Schedules declared in code: ``@flowq.schedule`` (and ``registry.schedule``), checked
when the decorator runs (no I/O here; workers save them when they start)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from flowq import cron
from flowq.errors import ScheduleError
from flowq.options import JobOptions, build_new_job
from flowq.registry import Workflow
from flowq.store.schedule_rows import encode_template
from flowq.store.schedules import NewSchedule
from flowq.workflow_ref import WorkflowRef

__all__ = [
    "NOT_FOR_SCHEDULES",
    "DeclaredSchedule",
    "check_fields",
    "check_job_options",
    "check_name",
    "declare",
    "new_schedule",
    "stored_form",
]

NOT_FOR_SCHEDULES = ("run_at", "delay", "depends_on", "idempotency_key")
"""Job options a schedule refuses: each tick sets the job's time and idempotency key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeclaredSchedule:
    """A schedule as declared on a workflow (see ``flowq.schedule``).

    Attributes:
        name: Its unique name (default ``"<workflow>@<expression>"``).
        workflow: The workflow's name.
        cron_expression: 5 fields or an alias, normalised.
        timezone: An IANA zone name.
        allow_overlap: Whether a tick starts a job while the previous one is unfinished.
        catch_up: ``"latest"``, ``"all"`` or ``"none"``: what missed ticks do.
        payload: The payload of every job (checked against the workflow's type).
        options: Job options of every job (``start()``'s, checked).
    """

    name: str
    workflow: str
    cron_expression: str
    timezone: str = "UTC"
    allow_overlap: bool = False
    catch_up: cron.CatchUp = "latest"
    payload: Any = None
    options: JobOptions = field(default_factory=lambda: JobOptions())


def declare(
    workflow: Workflow[Any, Any],
    cron_expression: str,
    *,
    name: str | None,
    timezone: str,
    allow_overlap: bool,
    catch_up: str,
    payload: Any,
    options: JobOptions,
) -> DeclaredSchedule:
    """A checked schedule of ``workflow``.

    Raises:
        ScheduleError: A bad expression, zone, name, ``catch_up`` or ``allow_overlap``,
            or ``workflow`` is not a workflow.
        ValidationError: (``PayloadError``...) the payload or an option does not fit.
    """
    if not isinstance(workflow, Workflow):
        raise ScheduleError(
            f"@schedule goes above @workflow (it takes a workflow), got {workflow!r}"
        )
    expression = check_fields(cron_expression, timezone, allow_overlap, catch_up)
    label = check_name(name if name is not None else f"{workflow.name}@{expression}")
    check_job_options(options)
    build_new_job(workflow, payload, options, datetime.now(UTC))  # checks payload and options
    return DeclaredSchedule(
        name=label,
        workflow=workflow.name,
        cron_expression=expression,
        timezone=timezone,
        allow_overlap=allow_overlap,
        catch_up=cast(cron.CatchUp, catch_up),
        payload=payload,
        options=options,
    )


def check_fields(
    cron_expression: object, timezone: object, allow_overlap: object, catch_up: object
) -> str:
    """Check a schedule's fields; return the normalised expression.

    Raises:
        ScheduleError: A bad expression, zone, ``catch_up`` or ``allow_overlap``.
    """
    expression = cron.check_expression(cron_expression)
    cron.check_timezone(timezone)
    if catch_up not in cron.CATCH_UP:
        raise ScheduleError(f"catch_up must be one of {', '.join(cron.CATCH_UP)}, got {catch_up!r}")
    if not isinstance(allow_overlap, bool):
        raise ScheduleError(f"allow_overlap must be True or False, got {allow_overlap!r}")
    return expression


def check_name(name: object) -> str:
    """A schedule name: 1-255 characters.

    Raises:
        ScheduleError: Anything else.
    """
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ScheduleError(f"schedule names are 1-255 characters, got {name!r}")
    return name


def check_job_options(options: JobOptions) -> None:
    """Refuse the job options a tick decides (:data:`NOT_FOR_SCHEDULES`).

    Raises:
        ScheduleError: One of them was given.
    """
    for option in NOT_FOR_SCHEDULES:
        if option in options:
            raise ScheduleError(
                f"a schedule's jobs cannot take {option}=: each tick sets its job's time "
                "and idempotency key"
            )


def new_schedule(
    workflow: Workflow[Any, Any] | WorkflowRef[Any, Any],
    *,
    name: str,
    cron_expression: str,
    timezone: str,
    allow_overlap: bool,
    catch_up: str,
    payload: Any,
    options: JobOptions,
) -> NewSchedule:
    """The store's record of a checked schedule: payload and job options encoded (the
    workflow's defaults merged in; for a reference, left to the worker)."""
    job = build_new_job(workflow, payload, options, datetime.now(UTC))
    return NewSchedule(
        schedule_name=name,
        cron_expression=cron_expression,
        workflow=workflow.name,
        payload=job.payload,
        timezone=timezone,
        allow_overlap=allow_overlap,
        catch_up=catch_up,
        options=encode_template(job),
    )


def stored_form(declared: DeclaredSchedule, workflow: Workflow[Any, Any]) -> NewSchedule:
    """The store's record of a schedule declared in code."""
    return new_schedule(
        workflow,
        name=declared.name,
        cron_expression=declared.cron_expression,
        timezone=declared.timezone,
        allow_overlap=declared.allow_overlap,
        catch_up=declared.catch_up,
        payload=declared.payload,
        options=declared.options,
    )
