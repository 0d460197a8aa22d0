"""Schedules declared in code: ``@flowq.schedule`` (and ``registry.schedule``), checked
when the decorator runs (no I/O here; workers save them when they start)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowq import cron
from flowq.errors import ScheduleError
from flowq.options import JobOptions, build_new_job
from flowq.registry import Workflow

__all__ = ["DeclaredSchedule", "declare"]


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
    expression = cron.check_expression(cron_expression)
    cron.check_timezone(timezone)
    if catch_up not in cron.CATCH_UP:
        raise ScheduleError(f"catch_up must be one of {', '.join(cron.CATCH_UP)}, got {catch_up!r}")
    if not isinstance(allow_overlap, bool):
        raise ScheduleError(f"allow_overlap must be True or False, got {allow_overlap!r}")
    label = name if name is not None else f"{workflow.name}@{expression}"
    if not isinstance(label, str) or not label or len(label) > 255:
        raise ScheduleError(f"schedule names are 1-255 characters, got {label!r}")
    if "idempotency_key" in options:
        raise ScheduleError("a scheduled job gets its idempotency key from its tick")
    build_new_job(workflow, payload, options, datetime.now(UTC))  # checks payload and options
    return DeclaredSchedule(
        name=label,
        workflow=workflow.name,
        cron_expression=expression,
        timezone=timezone,
        allow_overlap=allow_overlap,
        catch_up=catch_up,
        payload=payload,
        options=options,
    )
