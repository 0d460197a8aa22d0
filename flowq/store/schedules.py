"""The storage verbs of cron schedules (part of :class:`flowq.store.base.Store`) and
their records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from flowq.models import CronSchedule, ScheduleStatus

__all__ = [
    "SCHEDULE_FIELDS",
    "DueSchedules",
    "NewSchedule",
    "SavedSchedules",
    "ScheduleVerbs",
]

SCHEDULE_FIELDS = frozenset(
    {
        "cron_expression",
        "workflow",
        "payload",
        "timezone",
        "allow_overlap",
        "catch_up",
        "options",
        "status",
    }
)
"""Columns ``edit_schedule`` may change (values already checked and encoded)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSchedule:
    """A checked schedule ready to store: ``payload`` and ``options`` (the job
    template of :func:`flowq.store.schedule_rows.encode_template`) are JSON text."""

    schedule_name: str
    cron_expression: str
    workflow: str
    payload: str
    timezone: str
    allow_overlap: bool
    catch_up: str
    options: str


@dataclass(frozen=True, slots=True)
class DueSchedules:
    """What one look at the due schedules did: jobs enqueued, ticks skipped, and the
    earliest ``next_run_at`` of the active schedules afterwards (None: there are none)."""

    enqueued: int
    skipped: int
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True)
class SavedSchedules:
    """What saving the schedules declared in code did."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    undeclared: tuple[str, ...]
    """Stored schedules of the given workflows that the code no longer declares."""


class ScheduleVerbs(Protocol):
    """Cron schedules: stored, changed, and their due ticks enqueued exactly once."""

    async def add_schedule(self, schedule: NewSchedule) -> CronSchedule:
        """Store a new schedule, first due at its first tick after now.

        Raises:
            ScheduleError: The name is taken.
        """

    async def save_schedules(
        self, schedules: Sequence[NewSchedule], workflows: Sequence[str]
    ) -> SavedSchedules:
        """Create or update (by name) schedules declared in code, in one transaction.

        An existing schedule keeps its status and history; its ``next_run_at`` is
        recomputed only when its expression or zone changed. Stored schedules of
        ``workflows`` whose names are not among ``schedules`` are left alone and
        reported as undeclared.
        """

    async def get_schedule(
        self, *, schedule_id: int | None = None, name: str | None = None
    ) -> CronSchedule | None:
        """The schedule with this id (or name), or None."""

    async def list_schedules(self, status: ScheduleStatus | None = None) -> list[CronSchedule]:
        """Every schedule (of ``status``), by name."""

    async def edit_schedule(
        self, schedule_id: int, changes: Mapping[str, Any]
    ) -> CronSchedule | None:
        """Change columns of :data:`SCHEDULE_FIELDS`; recompute ``next_run_at`` from now
        when the expression or zone changes or a paused schedule becomes active. None
        if there is no such schedule."""

    async def remove_schedule(self, schedule_id: int) -> bool:
        """Delete the schedule (its jobs stay); False if there was none."""

    async def enqueue_due_schedules(self, *, limit: int = 100) -> DueSchedules:
        """Enqueue the ticks of up to ``limit`` active schedules due by now, each in the
        transaction that advances its ``next_run_at`` (rows locked, so concurrent
        callers never enqueue a tick twice), following each schedule's ``catch_up``
        and ``allow_overlap`` (:func:`flowq.store.schedule_rows.plan_ticks`)."""
