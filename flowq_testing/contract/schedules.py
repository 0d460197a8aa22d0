"""Contract: cron schedules (stored, edited, and their ticks enqueued exactly once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import flowq
from flowq.models import JobStatus, ScheduleStatus
from flowq.schedules import declare, stored_form
from flowq_testing.clock import FakeClock
from flowq_testing.contract.base import ContractBase, echo, signup

__all__ = ["ScheduleVerbsContract"]

_HOUR = timedelta(hours=1)
_START = datetime(2030, 1, 1, 12, tzinfo=UTC)  # the contract clock's start


class ScheduleVerbsContract(ContractBase):
    """What ``add_cron_job`` and the workers' tick enqueuing rely on."""

    async def test_a_schedule_is_stored_with_its_first_tick(self, app: flowq.App) -> None:
        """The record shows the schedule as given and its first tick after now."""
        schedule_id = await app.add_cron_job(
            "hourly-echo", "0 * * * *", echo, {"n": 1}, priority=5, tags=["cron"]
        )
        stored = await app.get_cron_job(schedule_id)
        assert stored is not None
        assert (stored.schedule_name, stored.workflow, stored.payload) == (
            "hourly-echo", "contract.echo", {"n": 1},
        )  # fmt: skip
        assert (stored.timezone, stored.allow_overlap, stored.catch_up) == ("UTC", False, "latest")
        assert stored.status is ScheduleStatus.ACTIVE
        assert stored.next_run_at == _START + _HOUR
        assert (stored.last_enqueued_at, stored.last_job_id, stored.last_skipped_at) == (
            None, None, None,
        )  # fmt: skip
        assert stored.job_options["priority"] == 5 and stored.job_options["tags"] == ["cron"]
        assert await app.get_cron_job_by_name("hourly-echo") == stored
        assert await app.list_cron_jobs() == [stored]
        assert await app.get_cron_job(999) is None
        assert await app.get_cron_job_by_name("nope") is None

    @pytest.mark.parametrize(
        ("arguments", "named"),
        [
            ({"cron_expression": "61 * * * *"}, "61"),
            ({"cron_expression": "0 * * *"}, "4 field"),
            ({"cron_expression": "every monday"}, "every monday"),
            ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
            ({"workflow": ""}, "workflow name"),
            ({"workflow": 42}, "workflow"),
            ({"catch_up": "some"}, "catch_up"),
            ({"delay": 5}, "delay"),
            ({"idempotency_key": "k"}, "idempotency_key"),
        ],
    )
    async def test_bad_schedules_are_refused_and_nothing_is_written(
        self, app: flowq.App, arguments: dict[str, Any], named: str
    ) -> None:
        """Bad expressions, zones, workflows and options raise ScheduleError naming them
        (a workflow this process does not know is not bad: see add_cron_job)."""
        given: dict[str, Any] = {
            "schedule_name": "bad",
            "cron_expression": "0 * * * *",
            "workflow": "contract.echo",
            **arguments,
        }
        with pytest.raises(flowq.ScheduleError, match=named):
            await app.add_cron_job(**given)
        assert await app.list_cron_jobs() == []

    async def test_a_taken_name_is_refused(self, app: flowq.App) -> None:
        """A second schedule with the same name raises ScheduleError; the first stays."""
        await app.add_cron_job("daily", "@daily", echo, {})
        with pytest.raises(flowq.ScheduleError, match="'daily' exists"):
            await app.add_cron_job("daily", "@hourly", "contract.echo", {})
        [stored] = await app.list_cron_jobs()
        assert stored.cron_expression == "@daily"

    async def test_a_payload_that_does_not_fit_is_refused(self, app: flowq.App) -> None:
        """The payload is checked against the workflow's type when the schedule is added."""
        with pytest.raises(flowq.PayloadError):
            await app.add_cron_job("typed", "@daily", signup, {"user_id": "not a number"})
        assert await app.list_cron_jobs() == []

    async def test_a_due_tick_is_enqueued_once(self, app: flowq.App, clock: FakeClock) -> None:
        """At its tick the schedule enqueues one job with its payload and options, due at
        the tick; looking again enqueues nothing more."""
        schedule_id = await app.add_cron_job(
            "hourly", "0 * * * *", echo, {"n": 1}, priority=7, tags=["cron"]
        )
        assert await app.enqueue_due_cron_jobs() == 0
        clock.advance(_HOUR)
        assert await app.enqueue_due_cron_jobs() == 1
        assert await app.enqueue_due_cron_jobs() == 0
        [job] = await app.get_jobs()
        assert (job.workflow, job.payload, job.priority, job.tags) == (
            "contract.echo", {"n": 1}, 7, ("cron",),
        )  # fmt: skip
        assert job.run_at == _START + _HOUR
        stored = await app.get_cron_job(schedule_id)
        assert stored is not None
        assert (stored.last_enqueued_at, stored.last_job_id) == (_START + _HOUR, job.id)
        assert stored.next_run_at == _START + 2 * _HOUR

    async def test_racing_enqueuers_enqueue_each_tick_once(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Many concurrent looks at the same due ticks enqueue each tick once."""
        for n in range(5):
            await app.add_cron_job(f"s{n}", "*/5 * * * *", echo, {"n": n}, allow_overlap=True)
        clock.advance(timedelta(minutes=5))
        counts: list[int] = []

        async def look() -> None:
            counts.append(await app.enqueue_due_cron_jobs())

        async with anyio.create_task_group() as tasks:
            for _ in range(8):
                tasks.start_soon(look)
        assert sum(counts) == 5
        assert sorted(job.payload["n"] for job in await app.get_jobs()) == [0, 1, 2, 3, 4]

    async def test_without_overlap_a_tick_is_skipped_while_the_last_job_runs(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """While the previous job is unfinished a tick is skipped and recorded; once it
        finished, the next tick enqueues again."""
        schedule_id = await app.add_cron_job("no-overlap", "0 * * * *", echo, {})
        clock.advance(_HOUR)
        assert await app.enqueue_due_cron_jobs() == 1
        clock.advance(_HOUR)
        assert await app.enqueue_due_cron_jobs() == 0
        stored = await app.get_cron_job(schedule_id)
        assert stored is not None
        assert stored.last_skipped_at == _START + 2 * _HOUR
        assert stored.next_run_at == _START + 3 * _HOUR
        [first] = await app.get_jobs()
        await self.run_to_completion(app, first.id)
        clock.advance(_HOUR)
        assert await app.enqueue_due_cron_jobs() == 1
        assert len(await app.get_jobs()) == 2

    async def test_with_overlap_every_tick_starts_a_job(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """allow_overlap=True enqueues a tick while the previous job is still pending."""
        await app.add_cron_job("overlap", "0 * * * *", echo, {}, allow_overlap=True)
        for _ in range(3):
            clock.advance(_HOUR)
            assert await app.enqueue_due_cron_jobs() == 1
        jobs = await app.get_jobs()
        assert [job.status for job in jobs] == [JobStatus.PENDING] * 3

    @pytest.mark.parametrize(
        ("catch_up", "expected_runs"),
        [("latest", [5]), ("all", [1, 2, 3, 4, 5]), ("none", [])],
    )
    async def test_ticks_missed_while_no_worker_ran_follow_catch_up(
        self, app: flowq.App, clock: FakeClock, catch_up: str, expected_runs: list[int]
    ) -> None:
        """After five hours without a look (and 10 minutes past the last tick):
        "latest" runs the last tick, "all" each, "none" none; all go on from the next."""
        schedule_id = await app.add_cron_job(
            f"catch-{catch_up}", "0 * * * *", echo, {}, allow_overlap=True, catch_up=catch_up
        )
        clock.advance(5 * _HOUR + timedelta(minutes=10))
        assert await app.enqueue_due_cron_jobs() == len(expected_runs)
        runs = sorted(job.run_at for job in await app.get_jobs())
        assert runs == [_START + n * _HOUR for n in expected_runs]
        stored = await app.get_cron_job(schedule_id)
        assert stored is not None and stored.next_run_at == _START + 6 * _HOUR

    async def test_an_on_time_tick_runs_even_without_catch_up(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """catch_up="none" still runs a tick looked at within a minute of its time."""
        await app.add_cron_job("none", "0 * * * *", echo, {}, catch_up="none")
        clock.advance(_HOUR + timedelta(seconds=30))
        assert await app.enqueue_due_cron_jobs() == 1

    async def test_a_paused_schedule_enqueues_nothing_and_resumes_from_now(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Paused: no jobs. Resumed: ticks missed while paused are not caught up."""
        schedule_id = await app.add_cron_job("pausable", "0 * * * *", echo, {})
        assert await app.pause_cron_job(schedule_id)
        assert [s.schedule_name for s in await app.list_cron_jobs("paused")] == ["pausable"]
        assert await app.list_cron_jobs(ScheduleStatus.ACTIVE) == []
        clock.advance(3 * _HOUR + timedelta(minutes=30))
        assert await app.enqueue_due_cron_jobs() == 0
        assert await app.resume_cron_job(schedule_id)
        stored = await app.get_cron_job(schedule_id)
        assert stored is not None
        assert stored.status is ScheduleStatus.ACTIVE
        assert stored.next_run_at == _START + 4 * _HOUR
        assert await app.enqueue_due_cron_jobs() == 0
        assert not await app.pause_cron_job(999)
        with pytest.raises(flowq.ScheduleError, match="'sleeping'"):
            await app.list_cron_jobs("sleeping")

    async def test_editing_recomputes_the_next_tick_and_changes_new_jobs(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A new expression or zone recomputes next_run_at; new options and payload
        apply to the jobs enqueued afterwards."""
        schedule_id = await app.add_cron_job("editable", "0 * * * *", echo, {"v": 1})
        assert await app.edit_cron_job(
            schedule_id, cron_expression="30 * * * *", payload={"v": 2}, priority=9
        )
        stored = await app.get_cron_job(schedule_id)
        assert stored is not None
        assert stored.next_run_at == _START + timedelta(minutes=30)
        clock.advance(timedelta(minutes=30))
        assert await app.enqueue_due_cron_jobs() == 1
        [job] = await app.get_jobs()
        assert (job.payload, job.priority) == ({"v": 2}, 9)
        assert await app.edit_cron_job(schedule_id, timezone="Asia/Kolkata")  # UTC+05:30
        stored = await app.get_cron_job(schedule_id)
        assert stored is not None and stored.next_run_at == _START + timedelta(hours=1)
        with pytest.raises(flowq.ScheduleError, match="run_at"):
            await app.edit_cron_job(schedule_id, run_at=_START)
        with pytest.raises(flowq.ScheduleError, match="61"):
            await app.edit_cron_job(schedule_id, cron_expression="61 * * * *")
        assert not await app.edit_cron_job(999, priority=1)

    async def test_removing_a_schedule_keeps_its_jobs(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """remove_cron_job deletes the schedule; jobs it enqueued stay and nothing more comes."""
        schedule_id = await app.add_cron_job("removable", "0 * * * *", echo, {})
        clock.advance(_HOUR)
        assert await app.enqueue_due_cron_jobs() == 1
        assert await app.remove_cron_job(schedule_id)
        assert not await app.remove_cron_job(schedule_id)
        clock.advance(_HOUR)
        assert await app.enqueue_due_cron_jobs() == 0
        assert len(await app.get_jobs()) == 1
        assert await app.list_cron_jobs() == []

    @pytest.mark.parametrize(
        ("now", "first_tick"),
        [
            (datetime(2030, 1, 10, 12, tzinfo=UTC), datetime(2030, 1, 10, 14, tzinfo=UTC)),
            (datetime(2030, 7, 10, 12, tzinfo=UTC), datetime(2030, 7, 10, 13, tzinfo=UTC)),
        ],
    )
    async def test_a_zone_moves_the_tick_with_daylight_saving_time(
        self, app: flowq.App, clock: FakeClock, now: datetime, first_tick: datetime
    ) -> None:
        """America/New_York 09:00 is 14:00 UTC in winter and 13:00 UTC in summer."""
        clock.set(now)
        await app.add_cron_job("ny", "0 9 * * *", echo, {}, timezone="America/New_York")
        clock.set(first_tick)
        assert await app.enqueue_due_cron_jobs() == 1
        [job] = await app.get_jobs()
        assert job.run_at == first_tick

    async def test_saving_declared_schedules_creates_updates_and_reports(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Saving code's schedules creates new ones, updates changed ones (keeping their
        status; next_run_at moves only with the expression) and reports stored ones the
        code no longer declares without deleting them."""

        def stored(expression: str, name: str) -> Any:
            declared = declare(
                echo,
                expression,
                name=name,
                timezone="UTC",
                allow_overlap=False,
                catch_up="latest",
                payload={},
                options={},
            )
            return stored_form(declared, echo)

        saved = await app.store.save_schedules(
            [stored("0 * * * *", "a"), stored("0 * * * *", "b")], ["contract.echo"]
        )
        assert (saved.created, saved.updated, saved.undeclared) == (("a", "b"), (), ())
        a = await app.get_cron_job_by_name("a")
        assert a is not None
        await app.pause_cron_job(a.id)
        again = await app.store.save_schedules([stored("0 * * * *", "a")], ["contract.echo"])
        assert (again.created, again.updated, again.undeclared) == ((), (), ("b",))
        changed = await app.store.save_schedules([stored("15 * * * *", "a")], ["contract.echo"])
        assert changed.updated == ("a",)
        a = await app.get_cron_job_by_name("a")
        assert a is not None
        assert a.status is ScheduleStatus.PAUSED
        assert a.next_run_at == _START + timedelta(minutes=15)
        assert {s.schedule_name for s in await app.list_cron_jobs()} == {"a", "b"}
