"""The App's cron verbs (``add_cron_job``, ``pause_cron_job``...): part of
:class:`flowq.App`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from flowq import schedules, validate
from flowq.errors import ScheduleError, ValidationError
from flowq.models import CronSchedule, ScheduleStatus
from flowq.options import JobOptions
from flowq.registry import Registry, Workflow
from flowq.store.base import Store
from flowq.workflow_ref import WorkflowRef

__all__ = ["SCHEDULE_CHANGES", "CronJobs"]

SCHEDULE_CHANGES = frozenset(
    {"cron_expression", "timezone", "allow_overlap", "catch_up", "payload", "workflow"}
)
"""What ``edit_cron_job`` changes besides the jobs' options (:class:`flowq.JobOptions`
other than those :data:`flowq.schedules.NOT_FOR_SCHEDULES` names)."""


class CronJobs:
    """Cron schedules of an App: stored, paused, edited, removed, and their due ticks
    enqueued. Workers enqueue due ticks by themselves; these verbs are for code and
    operators that manage schedules at run time."""

    registry: Registry

    if TYPE_CHECKING:  # provided by flowq.App, which these verbs are part of

        async def _ready(self, connection: Any = None) -> Store: ...

    async def add_cron_job(
        self,
        schedule_name: str,
        cron_expression: str,
        workflow: Workflow[Any, Any] | WorkflowRef[Any, Any] | str,
        payload: Any = None,
        *,
        timezone: str = "UTC",
        allow_overlap: bool = False,
        catch_up: str = "latest",
        **job_options: Unpack[JobOptions],
    ) -> int:
        """Store a schedule that starts ``workflow`` at every tick; return its id.

        Args:
            schedule_name: Its unique name.
            cron_expression: 5 fields (``"0 9 * * *"``) or ``@hourly``, ``@daily``,
                ``@weekly``, ``@monthly``, ``@yearly``.
            workflow: A ``@flowq.workflow`` object, a :func:`flowq.workflow_ref`, or a
                workflow's name (it need not be registered in this process: its
                declared timeout, retry policy, max attempts, dead letter and
                ``force_kill_on_timeout`` are then applied by the worker that runs
                each job, unless given here).
            payload: The payload of every job (checked against the workflow when it
                is known here).
            timezone: IANA zone of the expression's wall-clock times.
            allow_overlap: Start a tick's job while the previous one is unfinished
                (default False: the tick is skipped and recorded as skipped).
            catch_up: Ticks missed while no worker ran: ``"latest"`` runs one,
                ``"all"`` each (at most 100), ``"none"`` none.
            **job_options: ``start()``'s options for every job (not ``run_at``,
                ``delay``, ``depends_on`` or ``idempotency_key``).

        Raises:
            ScheduleError: A bad expression, zone or option, a taken name, or a
                workflow that is not a name. Nothing is written.
            PayloadError: The payload does not fit the workflow.
        """
        definition = self._schedule_workflow(workflow)
        expression = schedules.check_fields(cron_expression, timezone, allow_overlap, catch_up)
        schedules.check_job_options(job_options)
        new = schedules.new_schedule(
            definition,
            name=schedules.check_name(schedule_name),
            cron_expression=expression,
            timezone=timezone,
            allow_overlap=allow_overlap,
            catch_up=catch_up,
            payload=payload,
            options=job_options,
        )
        stored = await (await self._ready()).add_schedule(new)
        return stored.id

    async def get_cron_job(self, schedule_id: int) -> CronSchedule | None:
        """The schedule with this id, or None."""
        store = await self._ready()
        return await store.get_schedule(schedule_id=validate.integer(schedule_id, "schedule id"))

    async def get_cron_job_by_name(self, schedule_name: str) -> CronSchedule | None:
        """The schedule with this name, or None."""
        store = await self._ready()
        return await store.get_schedule(name=schedules.check_name(schedule_name))

    async def list_cron_jobs(
        self, status: ScheduleStatus | str | None = None
    ) -> list[CronSchedule]:
        """Every schedule, by name; with ``status`` (``"active"``/``"paused"``) only those.

        Raises:
            ScheduleError: An unknown status.
        """
        wanted = None if status is None else _status(status)
        return await (await self._ready()).list_schedules(wanted)

    async def pause_cron_job(self, schedule_id: int) -> bool:
        """Stop enqueuing the schedule's ticks (jobs already enqueued run); False if
        there is no such schedule."""
        return await self._change(schedule_id, {"status": ScheduleStatus.PAUSED.value})

    async def resume_cron_job(self, schedule_id: int) -> bool:
        """Enqueue the schedule's ticks again, from its next tick after now (ticks
        missed while paused are not caught up); False if there is no such schedule."""
        return await self._change(schedule_id, {"status": ScheduleStatus.ACTIVE.value})

    async def edit_cron_job(self, schedule_id: int, **changes: Any) -> bool:
        """Change a schedule; False if there is no such schedule.

        ``changes`` are ``cron_expression``, ``timezone``, ``allow_overlap``,
        ``catch_up``, ``payload``, ``workflow`` and the jobs' options (``priority``,
        ``tags``, ``timeout``...). A new expression or zone recomputes ``next_run_at``
        from now. Jobs already enqueued are not changed.

        Raises:
            ScheduleError: An unknown or bad change (nothing is written).
            PayloadError: The payload does not fit the workflow.
        """
        store = await self._ready()
        current = await store.get_schedule(schedule_id=validate.integer(schedule_id, "schedule id"))
        if current is None:
            return False
        values = self._edited(current, changes)
        return await store.edit_schedule(current.id, values) is not None

    async def remove_cron_job(self, schedule_id: int) -> bool:
        """Delete the schedule; the jobs it enqueued stay. False if there was none."""
        store = await self._ready()
        return await store.remove_schedule(validate.integer(schedule_id, "schedule id"))

    async def enqueue_due_cron_jobs(self) -> int:
        """Enqueue the due ticks of every schedule now (workers do this by themselves);
        return the number of jobs enqueued. Safe beside running workers: a tick is
        enqueued once."""
        store = await self._ready()
        total = 0
        while True:
            due = await store.enqueue_due_schedules()
            total += due.enqueued
            if due.next_run_at is None or due.next_run_at > store.clock.now():
                return total

    # -- helpers ----------------------------------------------------------------------

    def _schedule_workflow(
        self, workflow: Workflow[Any, Any] | WorkflowRef[Any, Any] | str
    ) -> Workflow[Any, Any] | WorkflowRef[Any, Any]:
        """The registered workflow, or a reference to one this process does not know
        (its declared options are then applied by the worker that runs each job)."""
        if isinstance(workflow, Workflow):
            return workflow
        if not isinstance(workflow, str | WorkflowRef):
            raise ScheduleError(
                f"workflow must be a @flowq.workflow object, a flowq.workflow_ref(...) or "
                f"a name, got {workflow!r}"
            )
        try:
            ref = workflow if isinstance(workflow, WorkflowRef) else WorkflowRef(workflow)
        except ValidationError as exc:
            raise ScheduleError(str(exc)) from None
        found = self.registry.get(ref.name)
        return ref if found is None else found

    async def _change(self, schedule_id: int, values: dict[str, Any]) -> bool:
        store = await self._ready()
        changed = await store.edit_schedule(validate.integer(schedule_id, "schedule id"), values)
        return changed is not None

    def _edited(self, current: CronSchedule, changes: dict[str, Any]) -> dict[str, Any]:
        option_names = set(JobOptions.__annotations__) - set(schedules.NOT_FOR_SCHEDULES)
        unknown = sorted(set(changes) - SCHEDULE_CHANGES - option_names)
        if unknown:
            raise ScheduleError(
                f"edit_cron_job cannot change {', '.join(unknown)}; it changes "
                f"{', '.join(sorted(SCHEDULE_CHANGES | option_names))}"
            )
        merged: dict[str, Any] = {
            "cron_expression": current.cron_expression,
            "timezone": current.timezone,
            "allow_overlap": current.allow_overlap,
            "catch_up": current.catch_up,
            "payload": current.payload,
            "workflow": current.workflow,
            **{key: value for key, value in changes.items() if key in SCHEDULE_CHANGES},
        }
        options: dict[str, Any] = dict(current.job_options)
        if {"retry_delay", "retry_backoff", "retry_delay_max"} & set(changes):
            options.pop("retry")
        options.update({key: value for key, value in changes.items() if key in option_names})
        expression = schedules.check_fields(
            merged["cron_expression"],
            merged["timezone"],
            merged["allow_overlap"],
            merged["catch_up"],
        )
        definition = self._schedule_workflow(merged["workflow"])
        new = schedules.new_schedule(
            definition,
            name=current.schedule_name,
            cron_expression=expression,
            timezone=merged["timezone"],
            allow_overlap=merged["allow_overlap"],
            catch_up=merged["catch_up"],
            payload=merged["payload"],
            options=options,  # type: ignore[arg-type]
        )
        return {
            "cron_expression": new.cron_expression,
            "timezone": new.timezone,
            "allow_overlap": new.allow_overlap,
            "catch_up": new.catch_up,
            "payload": new.payload,
            "workflow": new.workflow,
            "options": new.options,
        }


def _status(value: ScheduleStatus | str) -> ScheduleStatus:
    try:
        return ScheduleStatus(value)
    except ValueError:
        raise ScheduleError(f"a schedule's status is 'active' or 'paused', got {value!r}") from None
