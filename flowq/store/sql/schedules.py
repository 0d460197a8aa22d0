"""SQL verbs of cron schedules: storing them and enqueuing their due ticks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from flowq.errors import ScheduleError
from flowq.models import CronSchedule, ScheduleStatus
from flowq.store import schedule_rows
from flowq.store.schedules import DueSchedules, NewSchedule, SavedSchedules
from flowq.store.sql.jobs import SqlJobVerbs
from flowq.store.sql.schema import cron_schedules, jobs

__all__ = ["SqlScheduleVerbs"]

_ACTIVE = ScheduleStatus.ACTIVE.value
_UPDATED = ("next_run_at", "updated_at", "last_enqueued_at", "last_job_id", "last_skipped_at")


class SqlScheduleVerbs(SqlJobVerbs):
    """Cron schedules on PostgreSQL or SQLite (enqueuing uses the job verbs)."""

    async def add_schedule(self, schedule: NewSchedule) -> CronSchedule:
        """Store a new schedule (see :class:`flowq.store.schedules.ScheduleVerbs`)."""
        try:
            async with self._transaction() as conn:
                row = schedule_rows.new_schedule_row(schedule, self.clock.now())
                taken = await conn.execute(
                    select(cron_schedules.c.id).where(
                        cron_schedules.c.schedule_name == schedule.schedule_name
                    )
                )
                if taken.first() is not None:
                    raise _name_taken(schedule.schedule_name)
                result = await conn.execute(
                    insert(cron_schedules).values(row).returning(*cron_schedules.c)
                )
                stored = schedule_rows.schedule_from_row(result.mappings().one())
                await self.dialect.notify(conn, "schedules")
        except IntegrityError:
            raise _name_taken(schedule.schedule_name) from None
        self._wake("schedules")
        return stored

    async def save_schedules(
        self, schedules: Sequence[NewSchedule], workflows: Sequence[str]
    ) -> SavedSchedules:
        """Create or update schedules declared in code, by name, in one transaction."""
        created: list[str] = []
        updated: list[str] = []
        async with self._transaction() as conn:
            now = self.clock.now()
            found = await conn.execute(
                select(cron_schedules).where(cron_schedules.c.workflow.in_(sorted(set(workflows))))
            )
            stored = {row["schedule_name"]: row for row in found.mappings()}
            declared = {schedule.schedule_name for schedule in schedules}
            for schedule in schedules:
                old = stored.get(schedule.schedule_name)
                if old is None:
                    old_elsewhere = await conn.execute(
                        select(cron_schedules.c.id).where(
                            cron_schedules.c.schedule_name == schedule.schedule_name
                        )
                    )
                    old_id = old_elsewhere.scalar()
                    if old_id is None:
                        await conn.execute(
                            insert(cron_schedules).values(
                                schedule_rows.new_schedule_row(schedule, now)
                            )
                        )
                        created.append(schedule.schedule_name)
                        continue
                    old = (
                        (
                            await conn.execute(
                                select(cron_schedules).where(cron_schedules.c.id == old_id)
                            )
                        )
                        .mappings()
                        .one()
                    )
                values = schedule_rows.declared_changes(old, schedule, now)
                if values:
                    await conn.execute(
                        update(cron_schedules)
                        .where(cron_schedules.c.id == old["id"])
                        .values(values)
                    )
                    updated.append(schedule.schedule_name)
            if created or updated:
                await self.dialect.notify(conn, "schedules")
        if created or updated:
            self._wake("schedules")
        return SavedSchedules(tuple(created), tuple(updated), tuple(sorted(set(stored) - declared)))

    async def get_schedule(
        self, *, schedule_id: int | None = None, name: str | None = None
    ) -> CronSchedule | None:
        """The schedule with this id (or name), or None."""
        condition = (
            cron_schedules.c.id == schedule_id
            if schedule_id is not None
            else cron_schedules.c.schedule_name == name
        )
        async with self._transaction() as conn:
            row = (await conn.execute(select(cron_schedules).where(condition))).mappings().first()
        return None if row is None else schedule_rows.schedule_from_row(row)

    async def list_schedules(self, status: ScheduleStatus | None = None) -> list[CronSchedule]:
        """Every schedule (of ``status``), by name."""
        query = select(cron_schedules).order_by(cron_schedules.c.schedule_name)
        if status is not None:
            query = query.where(cron_schedules.c.status == ScheduleStatus(status).value)
        async with self._transaction() as conn:
            found = (await conn.execute(query)).mappings().all()
        return [schedule_rows.schedule_from_row(row) for row in found]

    async def edit_schedule(
        self, schedule_id: int, changes: Mapping[str, Any]
    ) -> CronSchedule | None:
        """Change a schedule's columns; ``next_run_at`` follows (see the protocol)."""
        async with self._transaction() as conn:
            old = (
                (
                    await conn.execute(
                        select(cron_schedules)
                        .where(cron_schedules.c.id == schedule_id)
                        .with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            if old is None:
                return None
            values = schedule_rows.edited_values(old, changes, self.clock.now())
            result = await conn.execute(
                update(cron_schedules)
                .where(cron_schedules.c.id == schedule_id)
                .values(values)
                .returning(*cron_schedules.c)
            )
            stored = schedule_rows.schedule_from_row(result.mappings().one())
            await self.dialect.notify(conn, "schedules")
        self._wake("schedules")
        return stored

    async def remove_schedule(self, schedule_id: int) -> bool:
        """Delete the schedule (its jobs stay)."""
        async with self._transaction() as conn:
            result = await conn.execute(
                delete(cron_schedules).where(cron_schedules.c.id == schedule_id)
            )
        return bool(result.rowcount)

    async def enqueue_due_schedules(self, *, limit: int = 100) -> DueSchedules:
        """Enqueue due ticks, each schedule in the transaction that advances it."""
        enqueued = skipped = 0
        async with self._transaction() as conn:
            now = self.clock.now()
            due = (
                (
                    await conn.execute(
                        select(cron_schedules)
                        .where(
                            cron_schedules.c.status == _ACTIVE,
                            cron_schedules.c.next_run_at <= now,
                        )
                        .order_by(cron_schedules.c.next_run_at)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .all()
            )
            if not due:
                return DueSchedules(0, 0, await self._next_run_at(conn))
            unfinished = await self._unfinished(
                conn, [row["last_job_id"] for row in due if not row["allow_overlap"]]
            )
            plans = [
                (
                    row,
                    schedule_rows.plan_ticks(
                        row, now, previous_unfinished=row["last_job_id"] in unfinished
                    ),
                )
                for row in due
            ]
            new_jobs = [
                schedule_rows.job_of_tick(row, tick) for row, plan in plans for tick in plan.ticks
            ]
            ids = iter(await self._add_jobs_once(new_jobs, conn) if new_jobs else [])
            changes = []
            for row, plan in plans:
                last_id = None
                for _ in plan.ticks:
                    last_id = next(ids)
                values = schedule_rows.updated_row(row, plan, last_id, now)
                changes.append(
                    {"schedule_id": row["id"], **{f"new_{k}": v for k, v in values.items()}}
                )
                skipped += plan.skipped is not None
            enqueued = len(new_jobs)
            await conn.execute(
                update(cron_schedules)
                .where(cron_schedules.c.id == bindparam("schedule_id"))
                .values(
                    {
                        column: bindparam(f"new_{column}", type_=cron_schedules.c[column].type)
                        for column in _UPDATED
                    }
                ),
                changes,
            )
            next_run_at = await self._next_run_at(conn)
        if enqueued:
            self._wake("jobs")
        return DueSchedules(enqueued, skipped, next_run_at)

    async def _next_run_at(self, conn: AsyncConnection) -> datetime | None:
        found = await conn.execute(
            select(func.min(cron_schedules.c.next_run_at)).where(cron_schedules.c.status == _ACTIVE)
        )
        next_run_at: datetime | None = found.scalar()
        return next_run_at

    async def _unfinished(self, conn: AsyncConnection, job_ids: list[int | None]) -> set[int]:
        """Which of ``job_ids`` (at most one batch of schedules) are unfinished."""
        wanted = sorted({job_id for job_id in job_ids if job_id is not None})
        if not wanted:
            return set()
        result = await conn.execute(
            select(jobs.c.id).where(jobs.c.id.in_(wanted), jobs.c.finished_at.is_(None))
        )
        return set(result.scalars())


def _name_taken(name: str) -> ScheduleError:
    return ScheduleError(f"a schedule named {name!r} exists already")
