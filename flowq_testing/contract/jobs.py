"""Contract tests of adding, reading, cancelling, retrying and editing jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import flowq
from flowq import EventType, JobStatus, TagQuery
from flowq_testing.clock import FakeClock
from flowq_testing.contract.base import (
    ContractBase,
    Signup,
    dead_letters,
    echo,
    event_types,
    signup,
)

__all__ = ["JobVerbsContract"]


class JobVerbsContract(ContractBase):
    """What users see of the job API."""

    # -- adding -----------------------------------------------------------------------

    async def test_new_job_is_pending_with_defaults(self, app: flowq.App, clock: FakeClock) -> None:
        """A started job is pending, runnable now, with one ``added`` event."""
        job_id = await app.start(echo, {"a": 1})
        job = await app.get_job(job_id)
        assert job is not None
        assert job.status is JobStatus.PENDING
        assert (job.workflow, job.payload, job.attempts, job.max_attempts) == (
            "contract.echo",
            {"a": 1},
            0,
            3,
        )
        assert job.run_at == clock.now() and job.created_at == clock.now()
        assert job.run_at.tzinfo is not None and job.run_at.utcoffset() == timedelta(0)
        assert event_types(await app.get_job_events(job_id)) == ["added"]

    async def test_workflow_defaults_apply_and_options_override(self, app: flowq.App) -> None:
        """Workflow defaults (max_attempts, tags) apply; job options override or extend them."""
        first = await app.start(signup, Signup(1, "a@example.com"))
        second = await app.start(signup, Signup(2, "b@example.com"), max_attempts=2, tags=["vip"])
        a, b = await app.get_job(first), await app.get_job(second)
        assert a is not None and b is not None
        assert (a.max_attempts, a.tags) == (5, ("users",))
        assert (b.max_attempts, b.tags) == (2, ("users", "vip"))
        assert a.payload == {"user_id": 1, "email": "a@example.com"}

    async def test_every_option_round_trips(self, app: flowq.App, clock: FakeClock) -> None:
        """Every job option is stored and read back as given."""
        prerequisite = await app.start(echo, {})
        job_id = await app.start(
            echo,
            {"x": 1},
            delay="90s",
            priority=7,
            max_attempts=4,
            retry_delay="2s",
            retry_backoff=False,
            retry_delay_max="1m",
            timeout="10m",
            force_kill_on_timeout=True,
            tags=["t1", "t2"],
            idempotency_key="key-1",
            group="tenant-1",
            depends_on=[prerequisite],
            dead_letter=dead_letters,
        )
        job = await app.get_job(job_id)
        assert job is not None
        assert job.run_at == clock.now() + timedelta(seconds=90)
        assert (job.priority, job.max_attempts, job.tags) == (7, 4, ("t1", "t2"))
        assert job.retry == flowq.RetryPolicy(2, backoff=False, max_delay=60)
        assert job.timeout == timedelta(minutes=10) and job.force_kill_on_timeout
        assert (job.idempotency_key, job.group, job.depends_on) == (
            "key-1",
            "tenant-1",
            (prerequisite,),
        )
        assert job.dead_letter == "contract.dead_letters"

    async def test_same_idempotency_key_returns_first_id(self, app: flowq.App) -> None:
        """A second add with the same idempotency key returns the first id and keeps its payload."""
        first = await app.start(echo, {"n": 1}, idempotency_key="welcome-42")
        second = await app.start(echo, {"n": 2}, idempotency_key="welcome-42")
        third = await app.add_job("contract.echo", {"n": 3}, idempotency_key="welcome-42")
        assert first == second == third
        job = await app.get_job(first)
        assert job is not None and job.payload == {"n": 1}
        assert event_types(await app.get_job_events(first)) == ["added"]
        assert len(await app.get_jobs()) == 1

    async def test_idempotency_keys_inside_one_batch(self, app: flowq.App) -> None:
        """Inside add_jobs, a repeated key (new or existing) maps to one job."""
        existing = await app.start(echo, {"n": 0}, idempotency_key="old")
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {"n": 1}, idempotency_key="new"),
                flowq.JobSpec(echo, {"n": 2}, idempotency_key="old"),
                {"workflow": "contract.echo", "payload": {"n": 3}, "idempotency_key": "new"},
                flowq.JobSpec(echo, {"n": 4}),
            ]
        )
        assert ids[1] == existing and ids[0] == ids[2] and len(set(ids)) == 3
        assert len(await app.get_jobs()) == 3

    async def test_add_jobs_returns_ids_in_input_order(self, app: flowq.App) -> None:
        """add_jobs returns one id per input, in order, each job carrying its own payload."""
        ids = await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(25)])
        assert len(ids) == 25 and ids == sorted(ids)
        for n, job_id in enumerate(ids):
            job = await app.get_job(job_id)
            assert job is not None and job.payload == {"n": n}

    async def test_payload_that_does_not_fit_writes_nothing(self, app: flowq.App) -> None:
        """A payload that does not match the annotation raises PayloadError; nothing is stored."""
        with pytest.raises(flowq.PayloadError, match=r"contract\.signup"):
            await app.add_job("contract.signup", {"user_id": "not-a-number", "email": "x"})
        with pytest.raises(flowq.PayloadError):
            await app.add_jobs(
                [flowq.JobSpec(echo, {"ok": 1}), flowq.JobSpec(signup, {"user_id": 1})]
            )
        assert await app.get_jobs() == []

    async def test_unencodable_or_oversized_payload_writes_nothing(self, app: flowq.App) -> None:
        """A payload that cannot be JSON-encoded, or is too large, raises SerializationError."""
        with pytest.raises(flowq.SerializationError, match="payload"):
            await app.start(echo, {"handle": object()})
        with pytest.raises(flowq.SerializationError, match="limit"):
            await app.start(echo, {"blob": "x" * (17 * 1024 * 1024)})
        assert await app.get_jobs() == []

    async def test_bad_options_raise_validation_errors(self, app: flowq.App) -> None:
        """Malformed options raise ValidationError naming the option; nothing is stored."""
        cases: list[dict[str, Any]] = [
            {"priority": "high"},
            {"max_attempts": 0},
            {"delay": "soon"},
            {"delay": -5},
            {"timeout": "0s"},
            {"run_at": datetime(2030, 1, 1), "delay": 5},
            {"tags": "single-string"},
            {"idempotency_key": ""},
            {"retry": "fast"},
        ]
        for options in cases:
            with pytest.raises(flowq.ValidationError):
                await app.start(echo, {}, **options)
        with pytest.raises(flowq.ValidationError, match="priorty"):
            await app.add_jobs([{"workflow": "contract.echo", "payload": {}, "priorty": 1}])
        assert await app.get_jobs() == []

    async def test_run_at_round_trips_as_the_same_instant(self, app: flowq.App) -> None:
        """run_at given in any time zone comes back as the same instant in UTC."""
        tokyo = timezone(timedelta(hours=9))
        when = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=tokyo)
        job = await app.get_job(await app.start(echo, {}, run_at=when))
        assert job is not None
        assert job.run_at == when and job.run_at.tzinfo == UTC
        assert job.run_at.isoformat() == "2031-03-03T20:06:07.123456+00:00"

    async def test_naive_datetimes_are_rejected(self, app: flowq.App) -> None:
        """A naive run_at (or run_at filter) raises ValidationError saying it is naive."""
        with pytest.raises(flowq.ValidationError, match="naive"):
            await app.start(echo, {}, run_at=datetime(2031, 1, 1))
        with pytest.raises(flowq.ValidationError, match="naive"):
            await app.get_jobs(run_at={"gt": datetime(2031, 1, 1)})
        assert await app.get_jobs() == []

    async def test_a_job_of_a_workflow_unknown_here_leaves_its_declared_options_open(
        self, app: flowq.App
    ) -> None:
        """Added by a name nothing here registers: stored with flowq's defaults and the
        options it did not give marked for the worker; given ones are fixed (retry by
        any of its spellings), on both insert paths (with and without dependencies)."""
        prerequisite = await app.start(echo, {})
        bare = await app.add_job("elsewhere.onboard", {"user": 1})
        given = await app.add_job(
            "elsewhere.onboard", {"user": 2}, timeout="10s", retry_delay=3, max_attempts=1
        )
        [dependant] = await app.add_jobs(
            [flowq.JobSpec("elsewhere.onboard", None, depends_on=[prerequisite])]
        )
        jobs = [await app.get_job(job_id) for job_id in (bare, given, dependant)]
        assert all(job is not None for job in jobs)
        first, second, third = (job for job in jobs if job is not None)
        all_open = ("timeout", "max_attempts", "retry", "dead_letter", "force_kill_on_timeout")
        assert first.unresolved_options == all_open == third.unresolved_options
        assert (first.max_attempts, first.timeout, first.dead_letter) == (3, None, None)
        assert second.unresolved_options == ("dead_letter", "force_kill_on_timeout")
        assert (second.max_attempts, second.timeout) == (1, timedelta(seconds=10))
        assert second.retry.delay == timedelta(seconds=3)
        known = await app.get_job(prerequisite)
        assert known is not None and known.unresolved_options == ()

    async def test_editing_an_open_option_fixes_it(self, app: flowq.App) -> None:
        """An edit of an option left to the worker makes it the job's own, even when it
        writes the value already stored; bulk edits too."""
        one = await app.add_job("elsewhere.onboard", {})
        two = await app.add_job("elsewhere.onboard", {})
        assert await app.edit_job(one, timeout=None) is True  # same value, now explicit
        edited = await app.edit_all_pending_jobs({"max_attempts": 7}, workflow="elsewhere.onboard")
        assert edited == 2
        first, second = await app.get_job(one), await app.get_job(two)
        assert first is not None and second is not None
        assert first.unresolved_options == ("retry", "dead_letter", "force_kill_on_timeout")
        assert second.unresolved_options == (
            "timeout",
            "retry",
            "dead_letter",
            "force_kill_on_timeout",
        )
        assert first.max_attempts == second.max_attempts == 7
        events = await app.get_job_events(one)
        assert [e.metadata.get("fields") for e in events if e.event_type is EventType.EDITED] == [
            ["timeout"],
            ["max_attempts"],
        ]

    # -- reading ----------------------------------------------------------------------

    async def test_unknown_ids_read_as_nothing(self, app: flowq.App) -> None:
        """get_job of an unknown id is None and its events are []."""
        assert await app.get_job(999) is None
        assert await app.get_job_events(999) == []

    async def test_get_jobs_filters_and_orders_newest_first(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """get_jobs filters by status, workflow, priority and run_at, newest first."""
        a = await app.start(echo, {}, priority=1)
        b = await app.start(echo, {}, priority=5, delay=3600)
        c = await app.start(signup, Signup(1, "x@example.com"), priority=5)
        await app.cancel_job(a)

        def ids(jobs: list[flowq.Job]) -> list[int]:
            return [job.id for job in jobs]

        assert ids(await app.get_jobs()) == [c, b, a]
        assert ids(await app.get_jobs(status="cancelled")) == [a]
        assert ids(await app.get_jobs(status=["pending", JobStatus.CANCELLED])) == [c, b, a]
        assert ids(await app.get_jobs(workflow=echo)) == [b, a]
        assert ids(await app.get_jobs(workflow="contract.signup")) == [c]
        assert ids(await app.get_jobs(priority=5)) == [c, b]
        later = clock.now() + timedelta(minutes=30)
        assert ids(await app.get_jobs(run_at={"gt": later})) == [b]
        assert ids(await app.get_jobs(run_at={"lte": later})) == [c, a]
        assert ids(await app.get_jobs(run_at={"gte": clock.now(), "lt": later})) == [c, a]
        assert ids(await app.get_jobs(run_at=clock.now() + timedelta(hours=1))) == [b]
        assert ids(await app.get_jobs(workflow=echo, priority=5)) == [b]

    async def test_failed_jobs_say_whether_they_will_retry(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """will_retry tells a failed job due to retry from one that gave up, on the
        record and as a get_jobs filter; retrying a job that gave up clears it."""
        retrying = await app.start(echo, {"n": "retrying"}, max_attempts=3)
        gave_up = await app.start(echo, {"n": "gave up"}, max_attempts=1)
        pending = await app.start(signup, Signup(1, "x@example.com"), delay=3600)
        for claimed in await self.claim(app, workflows=["contract.echo"]):
            await self.fail(app, claimed, retry_in=timedelta(minutes=5))

        def ids(jobs: list[flowq.Job]) -> list[int]:
            return [job.id for job in jobs]

        first, second, third = [await app.get_job(i) for i in (retrying, gave_up, pending)]
        assert first is not None and second is not None and third is not None
        assert (first.status, first.will_retry) == (JobStatus.FAILED, True)
        assert first.next_attempt_at == clock.now() + timedelta(minutes=5)
        assert (second.status, second.will_retry) == (JobStatus.FAILED, False)
        assert third.will_retry is False
        assert ids(await app.get_jobs(will_retry=True)) == [retrying]
        assert ids(await app.get_jobs(will_retry=False)) == [pending, gave_up]
        assert ids(await app.get_jobs(status="failed", will_retry=False)) == [gave_up]
        assert ids(await app.get_jobs(status="pending", will_retry=True)) == []
        assert ids(await app.get_jobs(status="failed", will_retry=True, workflow=echo)) == [
            retrying
        ]
        # Due but not claimed yet, the job still will retry; claimed, it is running.
        clock.advance(timedelta(minutes=5))
        assert ids(await app.get_jobs(will_retry=True)) == [retrying]
        [again] = await self.claim(app, workflows=["contract.echo"])
        assert again.job.id == retrying
        assert await app.get_jobs(will_retry=True) == []
        assert await app.retry_job(gave_up) is True
        after = await app.get_job(gave_up)
        assert after is not None and after.status is JobStatus.PENDING
        assert after.will_retry is False
        with pytest.raises(flowq.ValidationError, match="will_retry"):
            await app.get_jobs(will_retry="yes")  # type: ignore[arg-type]

    async def test_get_jobs_pages_with_a_cursor(self, app: flowq.App) -> None:
        """limit + cursor (the last id of the previous page) walk every job once."""
        ids = await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(7)])
        seen: list[int] = []
        cursor = None
        while True:
            page = await app.get_jobs(limit=3, cursor=cursor)
            if not page:
                break
            seen += [job.id for job in page]
            cursor = page[-1].id
        assert seen == sorted(ids, reverse=True)

    async def test_tag_queries(self, app: flowq.App) -> None:
        """Tag modes: all = superset, any = intersection, exact = equal, none = disjoint."""
        ab = await app.start(echo, {}, tags=["a", "b"])
        a = await app.start(echo, {}, tags=["a"])
        bc = await app.start(echo, {}, tags=["b", "c"])
        untagged = await app.start(echo, {})

        async def matching(values: list[str], mode: Any) -> set[int]:
            return {job.id for job in await app.get_jobs(tags=TagQuery(values, mode))}

        assert await matching(["a"], "all") == {ab, a}
        assert await matching(["a", "b"], "all") == {ab}
        assert await matching(["a", "c"], "any") == {ab, a, bc}
        assert await matching(["c"], "any") == {bc}
        assert await matching(["a", "b"], "exact") == {ab}
        assert await matching(["b", "a"], "exact") == {ab}
        assert await matching(["a"], "exact") == {a}
        assert await matching(["a"], "none") == {bc, untagged}
        assert await matching(["a", "c"], "none") == {untagged}
        assert await matching([], "exact") == {untagged}
        assert {job.id for job in await app.get_jobs(tags=["b"])} == {ab, bc}

    # -- cancelling -------------------------------------------------------------------

    async def test_cancel_pending_job(self, app: flowq.App, clock: FakeClock) -> None:
        """Cancelling a pending job records it and it is never claimed."""
        job_id = await app.start(echo, {})
        assert await app.cancel_job(job_id) is True
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.CANCELLED
        assert job.last_cancelled_at == clock.now()
        assert event_types(await app.get_job_events(job_id)) == ["added", "cancelled"]
        assert await self.claim(app) == []

    async def test_cancel_waiting_job_clears_wait(self, app: flowq.App, clock: FakeClock) -> None:
        """Cancelling a waiting job clears its wait fields; the timer never wakes it."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        wake = clock.now() + timedelta(hours=1)
        assert await app.store.suspend_job(claimed.lease, wait_until=wake, token_id=None)
        waiting = await app.get_job(job_id)
        assert (
            waiting is not None
            and waiting.status is JobStatus.WAITING
            and waiting.wait_until == wake
        )
        assert await app.cancel_job(job_id) is True
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.CANCELLED
        assert job.wait_until is None and job.wait_token_id is None
        clock.advance(timedelta(hours=2))
        assert await self.claim(app) == []
        assert event_types(await app.get_job_events(job_id))[-1] == "cancelled"

    async def test_cancel_finished_job_changes_nothing(self, app: flowq.App) -> None:
        """cancel_job on a completed, failed or unknown job returns False and records nothing."""
        done = await app.start(echo, {})
        failed = await app.start(echo, {}, max_attempts=1)
        first, second = await self.claim(app)
        assert await self.complete(app, first, None)
        assert await self.fail(app, second, retry_in=None)
        for job_id in (done, failed):
            before = await app.get_job_events(job_id)
            assert await app.cancel_job(job_id) is False
            assert await app.get_job_events(job_id) == before
        assert await app.cancel_job(12345) is False
        done_job = await app.get_job(done)
        assert done_job is not None and done_job.status is JobStatus.COMPLETED

    async def test_cancel_running_job_ends_its_lease(self, app: flowq.App) -> None:
        """Cancelling a running job cancels it at once; its worker's writes are refused."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        assert await app.cancel_job(job_id) is True
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.CANCELLED and job.locked_by is None
        assert await app.store.heartbeat([claimed.lease]) == [claimed.lease]
        assert await self.complete(app, claimed, '"late"') is False
        cancelled = (await app.get_job_events(job_id))[-1]
        assert cancelled.event_type is EventType.CANCELLED
        assert cancelled.metadata["was_running"] is True
        assert cancelled.metadata["worker_id"] == "contract-worker"
        assert await app.cancel_job(job_id) is False

    async def test_cancel_cascades_to_dependants(self, app: flowq.App) -> None:
        """Cancelling a prerequisite cancels its dependants transitively, naming the cause."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {"step": 0}),
                flowq.JobSpec(echo, {"step": 1}, depends_on=[flowq.batch_dep_ref(0)]),
                flowq.JobSpec(echo, {"step": 2}, depends_on=[flowq.batch_dep_ref(1)]),
                flowq.JobSpec(echo, {"unrelated": True}),
            ]
        )
        assert await app.cancel_job(ids[0]) is True
        statuses = [job.status for job in [await app.get_job(i) for i in ids] if job]
        assert statuses == [JobStatus.CANCELLED] * 3 + [JobStatus.PENDING]
        last = (await app.get_job_events(ids[2]))[-1]
        assert last.event_type is EventType.CANCELLED and last.metadata["dependency"] == ids[1]
        assert last.metadata["reason"] == "dependency_cancelled"

    async def test_cancel_all_upcoming_jobs(self, app: flowq.App) -> None:
        """cancel_all_upcoming_jobs cancels matching pending and waiting jobs and counts them."""
        running = await app.start(echo, {}, tags=["batch"])
        await self.claim(app)
        waiting = await app.start(echo, {}, tags=["batch"])
        [claimed] = await self.claim(app)
        await app.store.suspend_job(claimed.lease, wait_until=None, token_id="token-1")
        pending = await app.start(echo, {}, tags=["batch"])
        other = await app.start(echo, {}, tags=["other"])
        assert await app.cancel_all_upcoming_jobs(tags=["batch"]) == 2
        status = {i: (await app.get_job(i)).status for i in (running, waiting, pending, other)}  # type: ignore[union-attr]
        assert status == {
            running: JobStatus.PROCESSING,
            waiting: JobStatus.CANCELLED,
            pending: JobStatus.CANCELLED,
            other: JobStatus.PENDING,
        }
        for job_id in (waiting, pending):
            assert event_types(await app.get_job_events(job_id))[-1] == "cancelled"
        assert await app.cancel_all_upcoming_jobs(workflow=echo) == 1

    async def test_cancel_a_failed_job_waiting_to_retry(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A failed job that will retry is upcoming: cancel_job stops it for good."""
        job_id = await app.start(echo, {}, tags=["flaky"])
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(minutes=5))
        assert await app.cancel_job(job_id) is True
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.CANCELLED and job.next_attempt_at is None
        clock.advance(timedelta(hours=1))
        assert await self.claim(app) == []
        other = await app.start(echo, {}, tags=["flaky"])
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(minutes=5))
        assert await app.cancel_all_upcoming_jobs(tags=["flaky"]) == 1
        cancelled = await app.get_job(other)
        assert cancelled is not None and cancelled.status is JobStatus.CANCELLED

    async def test_cancel_all_upcoming_records_events_in_id_order(self, app: flowq.App) -> None:
        """Bulk cancellation writes its events in job id order."""
        ids = await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(5)])
        assert await app.cancel_all_upcoming_jobs() == 5
        cancelled = [
            (event.id, event.job_id)
            for job_id in ids
            for event in await app.get_job_events(job_id)
            if event.event_type is EventType.CANCELLED
        ]
        assert [job_id for _, job_id in sorted(cancelled)] == ids

    # -- retrying and editing ---------------------------------------------------------

    async def test_retry_job_grants_an_attempt_when_exhausted(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """retry_job makes a permanently failed job runnable even with no attempts left."""
        job_id = await app.start(echo, {}, max_attempts=1)
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(seconds=1))
        failed = await app.get_job(job_id)
        assert (
            failed is not None
            and failed.status is JobStatus.FAILED
            and failed.next_attempt_at is None
        )
        clock.advance(timedelta(hours=1))
        assert await self.claim(app) == []
        assert await app.retry_job(job_id) is True
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.PENDING
        assert job.max_attempts >= 2 and job.last_retried_at == clock.now()
        [again] = await self.claim(app)
        assert again.job.id == job_id and again.job.attempts == 2
        assert event_types(await app.get_job_events(job_id)) == [
            "added", "processing", "failed", "retried", "processing",
        ]  # fmt: skip

    async def test_retry_job_on_other_states_is_a_no_op(self, app: flowq.App) -> None:
        """retry_job on a completed, pending or unknown job returns False and records nothing."""
        done = await app.start(echo, {})
        await self.run_to_completion(app, done)
        pending = await app.start(echo, {})
        for job_id in (done, pending):
            before = await app.get_job_events(job_id)
            assert await app.retry_job(job_id) is False
            assert await app.get_job_events(job_id) == before
        assert await app.retry_job(4242) is False

    async def test_edit_pending_job(self, app: flowq.App, clock: FakeClock) -> None:
        """edit_job changes a pending job and records which fields changed."""
        job_id = await app.start(echo, {"v": 1}, priority=1)
        when = clock.now() + timedelta(days=1)
        assert (
            await app.edit_job(job_id, priority=9, payload={"v": 2}, run_at=when, tags=["x"])
            is True
        )
        job = await app.get_job(job_id)
        assert job is not None
        assert (job.priority, job.payload, job.run_at, job.tags) == (9, {"v": 2}, when, ("x",))
        edited = (await app.get_job_events(job_id))[-1]
        assert edited.event_type is EventType.EDITED
        assert edited.metadata["fields"] == ["payload", "priority", "run_at", "tags"]
        assert await self.claim(app) == []  # run_at moved to tomorrow

    async def test_edit_that_changes_nothing_says_so(self, app: flowq.App) -> None:
        """edit_job with equal values, on a non-pending job or an unknown id returns False."""
        job_id = await app.start(echo, {}, priority=3, group="g")
        assert await app.edit_job(job_id, priority=3, group="g") is False
        await self.claim(app)
        assert await app.edit_job(job_id, priority=4) is False
        assert await app.edit_job(777, priority=4) is False
        assert event_types(await app.get_job_events(job_id)) == ["added", "processing"]

    async def test_edit_checks_values(self, app: flowq.App) -> None:
        """edit_job validates payloads against the workflow and rejects unknown fields."""
        job_id = await app.start(signup, Signup(1, "a@example.com"))
        with pytest.raises(flowq.PayloadError):
            await app.edit_job(job_id, payload={"user_id": "x"})
        with pytest.raises(flowq.ValidationError, match="status"):
            await app.edit_job(job_id, status="completed")
        job = await app.get_job(job_id)
        assert job is not None and job.payload == {"user_id": 1, "email": "a@example.com"}

    async def test_edit_retry_options_adjust_the_jobs_policy(self, app: flowq.App) -> None:
        """edit_job(retry_delay=...) keeps the job's other retry settings."""
        policy = flowq.RetryPolicy(5, backoff=False, max_delay=600, jitter=False)
        job_id = await app.start(echo, {}, retry=policy)
        assert await app.edit_job(job_id, retry_delay="7s") is True
        job = await app.get_job(job_id)
        assert job is not None
        assert job.retry == flowq.RetryPolicy(7, backoff=False, max_delay=600, jitter=False)

    async def test_edit_rejects_unknown_fields_even_for_unknown_jobs(self, app: flowq.App) -> None:
        """A misspelled field raises ValidationError before the job is even looked up."""
        with pytest.raises(flowq.ValidationError, match="priorty"):
            await app.edit_job(999, priorty=1)

    async def test_bulk_edits_need_checkable_values(self, app: flowq.App) -> None:
        """Bulk payload edits need workflow=; bulk retry edits need a RetryPolicy."""
        job_id = await app.start(signup, Signup(1, "a@example.com"))
        with pytest.raises(flowq.ValidationError, match="workflow"):
            await app.edit_all_pending_jobs({"payload": {"user_id": "x"}})
        with pytest.raises(flowq.ValidationError, match="RetryPolicy"):
            await app.edit_all_pending_jobs({"retry_delay": 5})
        with pytest.raises(flowq.PayloadError):
            await app.edit_all_pending_jobs({"payload": {"user_id": "x"}}, workflow=signup)
        new_payload = {"user_id": 2, "email": "b@example.com"}
        assert await app.edit_all_pending_jobs({"payload": new_payload}, workflow=signup) == 1
        job = await app.get_job(job_id)
        assert job is not None and job.payload == new_payload

    async def test_dead_letter_workflow_must_be_registered(self, app: flowq.App) -> None:
        """dead_letter naming an unregistered workflow raises UnknownWorkflowError."""
        with pytest.raises(flowq.UnknownWorkflowError, match="nowhere"):
            await app.start(echo, {}, dead_letter="nowhere")
        assert await app.get_jobs() == []

    async def test_edit_all_pending_jobs(self, app: flowq.App) -> None:
        """edit_all_pending_jobs edits matching pending jobs only and returns the count."""
        a = await app.start(echo, {}, tags=["bulk"])
        b = await app.start(echo, {}, tags=["bulk"])
        running = await app.start(echo, {}, tags=["bulk"], priority=100)
        [claimed] = await self.claim(app, 1)
        assert claimed.job.id == running
        await app.start(echo, {}, tags=["other"])
        assert await app.edit_all_pending_jobs({"priority": 42}, tags=["bulk"]) == 2
        assert await app.edit_all_pending_jobs({"priority": 42}, tags=["bulk"]) == 0
        for job_id in (a, b):
            job = await app.get_job(job_id)
            assert job is not None and job.priority == 42
            assert (await app.get_job_events(job_id))[-1].metadata["fields"] == ["priority"]
        job = await app.get_job(running)
        assert job is not None and job.priority == 100
