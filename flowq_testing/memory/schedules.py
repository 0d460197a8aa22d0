"""The cron schedule verbs of :class:`flowq_testing.InMemoryStore`.

They mirror :class:`flowq.store.sql.schedules.SqlScheduleVerbs` verb for verb; each
runs without awaiting half way, so a due tick is enqueued once however many workers
of the process look at the same moment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowq.errors import ScheduleError
from flowq.models import CronSchedule, ScheduleStatus
from flowq.store import schedule_rows
from flowq.store.schedules import DueSchedules, NewSchedule, SavedSchedules
from flowq_testing.memory.jobs import MemoryJobVerbs

__all__ = ["MemoryScheduleVerbs"]


class MemoryScheduleVerbs(MemoryJobVerbs):
    """Cron schedules in memory (enqueuing uses the job verbs)."""

    async def add_schedule(self, schedule: NewSchedule) -> CronSchedule:
        """Store a new schedule (see :class:`flowq.store.schedules.ScheduleVerbs`)."""
        if self._schedule_named(schedule.schedule_name) is not None:
            raise ScheduleError(f"a schedule named {schedule.schedule_name!r} exists already")
        row = self._insert_schedule(schedule)
        self._wake("schedules")
        return schedule_rows.schedule_from_row(row)

    async def save_schedules(
        self, schedules: Sequence[NewSchedule], workflows: Sequence[str]
    ) -> SavedSchedules:
        """Create or update schedules declared in code, by name."""
        now = self._now()
        stored = {
            row["schedule_name"] for row in self._schedules.values() if row["workflow"] in workflows
        }
        created: list[str] = []
        updated: list[str] = []
        for schedule in schedules:
            old = self._schedule_named(schedule.schedule_name)
            if old is None:
                self._insert_schedule(schedule)
                created.append(schedule.schedule_name)
                continue
            values = schedule_rows.declared_changes(old, schedule, now)
            if values:
                old.update(values)
                updated.append(schedule.schedule_name)
        if created or updated:
            self._wake("schedules")
        declared = {schedule.schedule_name for schedule in schedules}
        return SavedSchedules(tuple(created), tuple(updated), tuple(sorted(stored - declared)))

    async def get_schedule(
        self, *, schedule_id: int | None = None, name: str | None = None
    ) -> CronSchedule | None:
        """The schedule with this id (or name), or None."""
        row = (
            self._schedules.get(schedule_id)
            if schedule_id is not None
            else self._schedule_named(name)
        )
        return None if row is None else schedule_rows.schedule_from_row(row)

    async def list_schedules(self, status: ScheduleStatus | None = None) -> list[CronSchedule]:
        """Every schedule (of ``status``), by name."""
        wanted = None if status is None else ScheduleStatus(status).value
        found = [
            row for row in self._schedules.values() if wanted is None or row["status"] == wanted
        ]
        found.sort(key=lambda row: row["schedule_name"])
        return [schedule_rows.schedule_from_row(row) for row in found]

    async def edit_schedule(
        self, schedule_id: int, changes: Mapping[str, Any]
    ) -> CronSchedule | None:
        """Change a schedule's columns; ``next_run_at`` follows (see the protocol)."""
        row = self._schedules.get(schedule_id)
        if row is None:
            return None
        row.update(schedule_rows.edited_values(row, changes, self._now()))
        self._wake("schedules")
        return schedule_rows.schedule_from_row(row)

    async def remove_schedule(self, schedule_id: int) -> bool:
        """Delete the schedule (its jobs stay)."""
        return self._schedules.pop(schedule_id, None) is not None

    async def enqueue_due_schedules(self, *, limit: int = 100) -> DueSchedules:
        """Enqueue due ticks, advancing each schedule with its jobs."""
        now = self._now()
        active = ScheduleStatus.ACTIVE.value
        due = sorted(
            (
                row
                for row in self._schedules.values()
                if row["status"] == active and row["next_run_at"] <= now
            ),
            key=lambda row: (row["next_run_at"], row["id"]),
        )[:limit]
        enqueued = skipped = 0
        for row in due:
            last = self._rows.get(row["last_job_id"]) if row["last_job_id"] is not None else None
            unfinished = last is not None and last["finished_at"] is None
            plan = schedule_rows.plan_ticks(row, now, previous_unfinished=unfinished)
            new_jobs = [schedule_rows.job_of_tick(row, tick) for tick in plan.ticks]
            ids = await self.add_jobs(new_jobs) if new_jobs else []
            row.update(schedule_rows.updated_row(row, plan, ids[-1] if ids else None, now))
            enqueued += len(ids)
            skipped += plan.skipped is not None
        following = [
            row["next_run_at"] for row in self._schedules.values() if row["status"] == active
        ]
        return DueSchedules(enqueued, skipped, min(following, default=None))

    def _schedule_named(self, name: str | None) -> dict[str, Any] | None:
        for row in self._schedules.values():
            if row["schedule_name"] == name:
                return row
        return None

    def _insert_schedule(self, schedule: NewSchedule) -> dict[str, Any]:
        self._last_schedule_id += 1
        row = {
            "id": self._last_schedule_id,
            **schedule_rows.new_schedule_row(schedule, self._now()),
        }
        self._schedules[row["id"]] = row
        return row
