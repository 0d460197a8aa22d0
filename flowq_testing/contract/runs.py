"""Contract tests of dependencies, claiming, failures and maintenance."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

import flowq
from flowq import EventType, JobStatus
from flowq.models import FailureReason
from flowq.store.base import Completion, GroupLimits, Release, Store
from flowq_testing.clock import FakeClock
from flowq_testing.contract.base import (
    ContractBase,
    Signup,
    contract_registry,
    dead_letters,
    echo,
    event_types,
    signup,
)

__all__ = ["RunVerbsContract"]


class RunVerbsContract(ContractBase):
    """What workers and operators rely on."""

    # -- dependencies -----------------------------------------------------------------

    async def test_depends_on_rejects_bad_references(self, app: flowq.App) -> None:
        """Unknown ids, self-references and cycles raise DependencyError; nothing is written."""
        with pytest.raises(flowq.DependencyError, match="999"):
            await app.start(echo, {}, depends_on=[999])
        with pytest.raises(flowq.DependencyError, match="itself"):
            await app.add_jobs([flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(0)])])
        with pytest.raises(flowq.DependencyError, match="cycle"):
            await app.add_jobs(
                [
                    flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(2)]),
                    flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(0)]),
                    flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(1)]),
                ]
            )
        with pytest.raises(flowq.DependencyError, match="batch"):
            await app.add_jobs([flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(5)])])
        assert await app.get_jobs() == []

    async def test_depends_on_a_dead_job_is_rejected(self, app: flowq.App) -> None:
        """Depending on a cancelled job raises DependencyError (it can never complete)."""
        dead = await app.start(echo, {})
        await app.cancel_job(dead)
        with pytest.raises(flowq.DependencyError, match=str(dead)):
            await app.start(echo, {}, depends_on=[dead])

    async def test_batch_references_resolve_to_real_ids(self, app: flowq.App) -> None:
        """batch_dep_ref(i) becomes the id of the i-th job of the same add_jobs call."""
        earlier = await app.start(echo, {})
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(1), earlier]),
                flowq.JobSpec(echo, {}),
                flowq.JobSpec(echo, {}, depends_on=flowq.DependsOn([flowq.batch_dep_ref(0)])),
            ]
        )
        first, last = await app.get_job(ids[0]), await app.get_job(ids[2])
        assert first is not None and last is not None
        assert set(first.depends_on) == {ids[1], earlier}
        assert last.depends_on == (ids[0],)

    async def test_dependants_run_only_after_prerequisites(self, app: flowq.App) -> None:
        """A dependant is not claimed until every prerequisite completed."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}),
                flowq.JobSpec(echo, {}),
                flowq.JobSpec(
                    echo, {}, depends_on=[flowq.batch_dep_ref(0), flowq.batch_dep_ref(1)]
                ),
            ]
        )
        first = await self.claim(app)
        assert sorted(c.job.id for c in first) == ids[:2]
        assert await self.complete(app, first[0], None)
        assert await self.claim(app) == []
        assert await self.complete(app, first[1], None)
        [dependant] = await self.claim(app)
        assert dependant.job.id == ids[2]

    async def test_depends_on_tags(self, app: flowq.App) -> None:
        """DependsOn(tags=...) waits for the unfinished jobs carrying all those tags."""
        done = await app.start(echo, {}, tags=["import"])
        await self.run_to_completion(app, done)
        a = await app.start(echo, {}, tags=["import", "eu"])
        b = await app.start(echo, {}, tags=["import"])
        await app.start(echo, {}, tags=["eu"])
        report = await app.start(echo, {}, depends_on=flowq.DependsOn(tags=["import"]))
        job = await app.get_job(report)
        assert job is not None and job.depends_on == (a, b)

    async def test_tag_dependencies_include_jobs_due_to_retry(self, app: flowq.App) -> None:
        """DependsOn(tags=...) also waits for tagged jobs that failed and will retry."""
        flaky = await app.start(echo, {}, tags=["etl"])
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(minutes=1))
        report = await app.start(echo, {}, depends_on=flowq.DependsOn(tags=["etl"]))
        job = await app.get_job(report)
        assert job is not None and job.depends_on == (flaky,)

    async def test_completion_clears_the_failure_reason(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A job that failed once and then completed shows no failure reason."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(seconds=1))
        clock.advance(timedelta(seconds=1))
        [claimed] = await self.claim(app)
        assert await self.complete(app, claimed, None)
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
        assert job.failure_reason is None and len(job.error_history) == 1

    async def test_permanent_failure_cancels_dependants(self, app: flowq.App) -> None:
        """A prerequisite that will retry keeps dependants; one that fails for good cancels them."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}, max_attempts=2),
                flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(0)]),
            ]
        )
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(0))
        dependant = await app.get_job(ids[1])
        assert dependant is not None and dependant.status is JobStatus.PENDING
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(0))
        dependant = await app.get_job(ids[1])
        assert dependant is not None and dependant.status is JobStatus.CANCELLED
        cancelled = (await app.get_job_events(ids[1]))[-1]
        assert cancelled.metadata == {"reason": "dependency_failed", "dependency": ids[0]}

    async def test_blocked_dependant_is_claimable_exactly_when_prerequisites_complete(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A job waiting for prerequisites (one named by id, one of its batch, one by
        tags) stays pending with its run_at, says why, is no claim's or timer's
        business, and becomes claimable when the last one completes."""
        earlier = await app.start(echo, {"n": "earlier"})
        tagged = await app.start(echo, {"n": "tagged"}, tags=["etl"])
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {"n": "batch"}),
                flowq.JobSpec(
                    echo,
                    {"n": "dependant"},
                    depends_on=flowq.DependsOn([earlier, flowq.batch_dep_ref(0)], tags=["etl"]),
                    priority=9,
                ),
            ]
        )
        dependant = await app.get_job(ids[1])
        assert dependant is not None and dependant.status is JobStatus.PENDING
        assert dependant.run_at == clock.now()
        assert dependant.pending_reason == "waiting for its prerequisites to complete"
        assert set(dependant.depends_on) == {earlier, tagged, ids[0]}
        assert await app.store.next_ready_at(after=clock.now() - timedelta(hours=1)) == (
            clock.now()
        )
        assert await app.store.mark_unclaimed(["contract.other"], lambda name: "nobody") == {
            "contract.echo": 3
        }
        claimed = {c.job.id: c for c in await self.claim(app)}
        assert set(claimed) == {earlier, tagged, ids[0]}
        for prerequisite in (earlier, tagged):
            assert await self.complete(app, claimed[prerequisite], None)
            assert await self.claim(app) == []
            job = await app.get_job(ids[1])
            assert job is not None and job.pending_reason is not None
        assert await self.complete(app, claimed[ids[0]], None)
        job = await app.get_job(ids[1])
        assert job is not None and job.status is JobStatus.PENDING
        assert job.pending_reason is None and job.run_at == dependant.run_at
        [claimed_dependant] = await self.claim(app)
        assert claimed_dependant.job.id == ids[1]
        assert event_types(await app.get_job_events(ids[1])) == ["added", "processing"]

    async def test_prerequisites_completed_in_one_batch(self, app: flowq.App) -> None:
        """Prerequisites completed by one complete_jobs call release their dependant."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}),
                flowq.JobSpec(echo, {}),
                flowq.JobSpec(
                    echo, {}, depends_on=[flowq.batch_dep_ref(0), flowq.batch_dep_ref(1)]
                ),
                flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(2)]),
            ]
        )
        claimed = await self.claim(app)
        assert sorted(c.job.id for c in claimed) == ids[:2]
        done = await app.store.complete_jobs([Completion(c.lease, None) for c in claimed])
        assert done == [True, True]
        [middle] = await self.claim(app)
        assert middle.job.id == ids[2]
        assert await self.claim(app) == []
        assert await self.complete(app, middle, None)
        [last] = await self.claim(app)
        assert last.job.id == ids[3]

    async def test_dependant_of_completed_jobs_is_claimable_at_once(self, app: flowq.App) -> None:
        """Prerequisites that completed before the dependant was added do not block it,
        also when a batch reference names a completed duplicate (idempotency key)."""
        done = await app.start(echo, {}, idempotency_key="prerequisite")
        await self.run_to_completion(app, done)
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}, idempotency_key="prerequisite"),
                flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(0), done]),
            ]
        )
        assert ids[0] == done
        job = await app.get_job(ids[1])
        assert job is not None and job.pending_reason is None
        [claimed] = await self.claim(app)
        assert claimed.job.id == ids[1]

    async def test_blocked_dependant_keeps_its_run_at(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Editing a blocked job's run_at does not make it claimable; once its
        prerequisite completed it runs at its (edited) run_at, not before."""
        prerequisite = await app.start(echo, {})
        dependant = await app.start(echo, {}, depends_on=[prerequisite], delay=60)
        later = clock.now() + timedelta(seconds=120)
        assert await app.edit_job(dependant, run_at=later)
        assert await app.edit_all_pending_jobs({"priority": 5}) == 2
        [claimed] = await self.claim(app)
        assert claimed.job.id == prerequisite
        assert await self.claim(app) == []
        assert await self.complete(app, claimed, None)
        assert await self.claim(app) == []
        assert await app.store.next_ready_at(after=clock.now()) == later
        clock.advance(timedelta(seconds=120))
        [released] = await self.claim(app)
        assert released.job.id == dependant

    async def test_failed_or_cancelled_prerequisite_still_cancels_blocked_dependants(
        self, app: flowq.App
    ) -> None:
        """With one prerequisite completed, a second one failing for good (or being
        cancelled) cancels the dependant, which is never claimed."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}, priority=3),
                flowq.JobSpec(echo, {}, priority=2),
                flowq.JobSpec(echo, {}, priority=1),
                flowq.JobSpec(
                    echo, {}, depends_on=[flowq.batch_dep_ref(0), flowq.batch_dep_ref(1)]
                ),
                flowq.JobSpec(
                    echo, {}, depends_on=[flowq.batch_dep_ref(0), flowq.batch_dep_ref(2)]
                ),
            ]
        )
        first, second, third = await self.claim(app)
        assert await self.complete(app, first, None)
        await self.fail(app, second, retry_in=None)
        assert await app.cancel_job(third.job.id)
        for dependant, cause in ((ids[3], ids[1]), (ids[4], ids[2])):
            job = await app.get_job(dependant)
            assert job is not None and job.status is JobStatus.CANCELLED, dependant
            last = (await app.get_job_events(dependant))[-1]
            assert last.metadata["dependency"] == cause
        assert await self.claim(app) == []

    async def test_unclaimable_jobs_do_not_hold_back_claims(self, app: flowq.App) -> None:
        """Due jobs of other workflows and blocked jobs, even of higher priority and
        older, leave the claim of a worker's own jobs alone."""
        await app.start(echo, {}, priority=9)
        held = await app.start(echo, {}, priority=9, delay=3600)
        await app.add_jobs([flowq.JobSpec(echo, {}, depends_on=[held], priority=9)] * 3)
        mine = await app.start(signup, Signup(1, "s@example.com"))
        [claimed] = await self.claim(app, workflows=["contract.signup"])
        assert claimed.job.id == mine

    # -- running ----------------------------------------------------------------------

    async def test_claim_order_and_future_jobs(self, app: flowq.App, clock: FakeClock) -> None:
        """Claims take higher priority first, then older; future run_at waits."""
        low = await app.start(echo, {}, priority=1)
        high = await app.start(echo, {}, priority=9)
        low2 = await app.start(echo, {}, priority=1)
        future = await app.start(echo, {}, priority=99, delay=60)
        assert [c.job.id for c in await self.claim(app, 2)] == [high, low]
        assert [c.job.id for c in await self.claim(app)] == [low2]
        clock.advance(timedelta(seconds=60))
        [claimed] = await self.claim(app)
        assert claimed.job.id == future
        stored = await app.get_job(future)
        assert stored is not None and stored.status is JobStatus.PROCESSING

    async def test_claim_only_listed_workflows(self, app: flowq.App) -> None:
        """A claim restricted to some workflows leaves other jobs alone."""
        await app.start(echo, {})
        mine = await app.start(signup, Signup(1, "s@example.com"))
        [claimed] = await self.claim(app, workflows=["contract.signup"])
        assert claimed.job.id == mine
        assert await self.claim(app, workflows=["contract.signup"]) == []

    async def test_run_once_events(self, app: flowq.App, clock: FakeClock) -> None:
        """A job that runs once has exactly added, processing, completed; output stored."""
        job_id = await app.start(echo, {"x": 1})
        [claimed] = await self.claim(app)
        assert claimed.job.attempts == 1
        running = await app.get_job(job_id)
        assert running is not None and running.started_at == clock.now()
        clock.advance(timedelta(seconds=5))
        assert await self.complete(app, claimed, '{"answer": 42}')
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
        assert job.output == {"answer": 42} and job.completed_at == clock.now()
        assert event_types(await app.get_job_events(job_id)) == ["added", "processing", "completed"]

    async def test_stale_lease_writes_are_refused(self, app: flowq.App, clock: FakeClock) -> None:
        """After a reclaim, the old holder cannot complete, fail or suspend the job."""
        job_id = await app.start(echo, {})
        [old] = await self.claim(app)
        clock.advance(timedelta(minutes=30))
        assert await app.reclaim_stuck_jobs(10) == 1
        [new] = await self.claim(app)
        assert new.lease != old.lease
        assert await self.complete(app, old, '"stale"') is False
        assert await self.fail(app, old, retry_in=None) is False
        assert await app.store.suspend_job(old.lease, wait_until=None, token_id="t") is False
        assert await self.complete(app, new, '"fresh"') is True
        job = await app.get_job(job_id)
        assert job is not None and job.output == "fresh"
        assert event_types(await app.get_job_events(job_id)).count("completed") == 1

    async def test_failures_retry_then_fail_permanently(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Failed attempts are recorded; with attempts left the job retries at the given time."""
        job_id = await app.start(echo, {}, max_attempts=2)
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(seconds=30))
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.next_attempt_at == clock.now() + timedelta(seconds=30)
        assert job.failure_reason is FailureReason.HANDLER_ERROR
        assert await self.claim(app) == []
        clock.advance(timedelta(seconds=30))
        [claimed] = await self.claim(app)
        assert claimed.job.attempts == 2
        await self.fail(app, claimed, retry_in=timedelta(seconds=30))
        job = await app.get_job(job_id)
        assert job is not None and job.next_attempt_at is None and job.last_failed_at == clock.now()
        assert [e.attempt for e in job.error_history] == [1, 2]
        assert (
            job.error_history[0].message == "boom" and job.error_history[0].type == "RuntimeError"
        )
        clock.advance(timedelta(days=1))
        assert await self.claim(app) == []

    async def test_dead_letter_job_is_added_on_permanent_failure(self, app: flowq.App) -> None:
        """A permanently failed job with dead_letter enqueues a job carrying the original."""
        job_id = await app.start(
            echo, {"order": 7}, max_attempts=1, dead_letter="contract.dead_letters"
        )
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(seconds=1))
        job = await app.get_job(job_id)
        assert job is not None and job.dead_letter_job_id is not None
        letter = await app.get_job(job.dead_letter_job_id)
        assert letter is not None and letter.workflow == "contract.dead_letters"
        assert letter.payload["job_id"] == job_id
        assert letter.payload["workflow"] == "contract.echo"
        assert letter.payload["payload"] == {"order": 7}
        assert letter.payload["error"]["message"] == "boom"

    async def test_resuming_from_a_wait_keeps_the_attempt(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A job woken from a timer is claimed again without consuming an attempt."""
        job_id = await app.start(echo, {}, max_attempts=1)
        for _ in range(3):
            [claimed] = await self.claim(app)
            until = clock.now() + timedelta(hours=1)
            assert await app.store.suspend_job(claimed.lease, wait_until=until, token_id=None)
            assert await self.claim(app) == []
            clock.advance(timedelta(hours=1))
        [claimed] = await self.claim(app)
        assert claimed.resumed and claimed.job.attempts == 1
        assert await self.complete(app, claimed, None)
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.attempts == 1

    async def test_claimed_job_carries_its_stored_payload(self, app: flowq.App) -> None:
        """A claim hands the worker the payload exactly as stored (JSON text)."""
        await app.start(signup, Signup(7, "p@example.com"))
        [claimed] = await self.claim(app)
        assert msgspec.json.decode(claimed.payload_json) == {"user_id": 7, "email": "p@example.com"}
        assert claimed.lease.worker_id == "contract-worker" and not claimed.resumed

    async def test_completions_in_one_batch_check_each_lease(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """complete_jobs records every held job and refuses the stale one, in input order."""
        ids = await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(3)])
        first, second, third = await self.claim(app)
        assert await app.cancel_job(ids[1]) is True
        done = await app.store.complete_jobs(
            [
                Completion(first.lease, '"a"'),
                Completion(second.lease, '"b"'),
                Completion(third.lease, None),
            ]
        )
        assert done == [True, False, True]
        outputs = [(await app.get_job(i)).output for i in ids]  # type: ignore[union-attr]
        assert outputs == ["a", None, None]
        assert event_types(await app.get_job_events(ids[0])) == ["added", "processing", "completed"]
        assert await app.store.complete_jobs([]) == []

    async def test_heartbeat_keeps_a_long_job_from_being_reclaimed(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A job whose lock is refreshed is never reclaimed, however long it runs."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        for _ in range(6):
            clock.advance(timedelta(minutes=5))
            assert await app.store.heartbeat([claimed.lease]) == []
            assert await app.reclaim_stuck_jobs(10) == 0
        job = await app.get_job(job_id)
        assert job is not None and job.locked_at == clock.now()
        clock.advance(timedelta(minutes=11))
        assert await app.reclaim_stuck_jobs(10) == 1
        assert await app.store.heartbeat([claimed.lease]) == [claimed.lease]

    async def test_release_hands_jobs_back_without_using_an_attempt(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Released jobs are pending and claimable at once, with their attempt restored."""
        ids = await app.add_jobs([flowq.JobSpec(echo, {}, max_attempts=1) for _ in range(2)])
        first, second = await self.claim(app)
        released = [Release(first.lease, new_attempt=True), Release(second.lease, new_attempt=True)]
        assert await app.store.release_jobs(released) == 2
        for job_id in ids:
            job = await app.get_job(job_id)
            assert job is not None and job.status is JobStatus.PENDING and job.attempts == 0
            last = (await app.get_job_events(job_id))[-1]
            assert last.event_type is EventType.RECLAIMED and last.metadata["reason"] == "released"
        assert await self.complete(app, first, None) is False
        again = await self.claim(app)
        assert [c.job.attempts for c in again] == [1, 1]
        assert await app.store.release_jobs([Release(first.lease, new_attempt=True)]) == 0

    async def test_next_ready_at_is_the_earliest_future_job(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """next_ready_at gives the earliest due time of jobs not yet runnable."""
        assert await app.store.next_ready_at() is None
        await app.start(echo, {})
        await app.start(echo, {}, delay=60)
        await app.start(signup, Signup(1, "n@example.com"), delay=30)
        assert await app.store.next_ready_at() == clock.now() + timedelta(seconds=30)
        assert await app.store.next_ready_at(["contract.echo"]) == clock.now() + timedelta(
            seconds=60
        )
        before = clock.now()
        clock.advance(timedelta(seconds=45))
        assert await app.store.next_ready_at() == clock.now() + timedelta(seconds=15)
        # A worker that claimed before the clock moved still learns of the job due at 30 s.
        assert await app.store.next_ready_at(after=before) == before + timedelta(seconds=30)

    async def test_unclaimed_jobs_say_why(self, app: flowq.App, clock: FakeClock) -> None:
        """Due jobs of workflows no worker here handles get a pending_reason naming
        their workflow, once; the store says how many it marked per workflow."""
        mine = await app.start(echo, {})
        theirs = await app.start(signup, Signup(1, "u@example.com"))
        also_theirs = await app.start(signup, Signup(2, "v@example.com"))
        unknown = await app.start(dead_letters, {"n": 1})
        later = await app.start(signup, Signup(3, "w@example.com"), delay=60)

        def reason(workflow: str) -> str:
            return f"nobody here runs {workflow}"

        assert await app.store.mark_unclaimed(["contract.echo"], reason) == {
            "contract.signup": 2,
            "contract.dead_letters": 1,
        }
        assert await app.store.mark_unclaimed(["contract.echo"], reason) == {}
        for job_id, workflow in [
            (theirs, "contract.signup"),
            (also_theirs, "contract.signup"),
            (unknown, "contract.dead_letters"),
        ]:
            job = await app.get_job(job_id)
            assert job is not None and job.pending_reason == f"nobody here runs {workflow}"
        for job_id in (mine, later):
            other = await app.get_job(job_id)
            assert other is not None and other.pending_reason is None
        clock.advance(timedelta(seconds=60))
        assert await app.store.mark_unclaimed(["contract.echo"], reason) == {"contract.signup": 1}
        claimed = await self.claim(app, workflows=["contract.signup"])
        assert {c.job.id for c in claimed} == {theirs, also_theirs, later}
        for one in claimed:
            claimed_job = await app.get_job(one.job.id)
            assert claimed_job is not None and claimed_job.pending_reason is None

    async def test_group_limit_counts_running_jobs_of_every_worker(self, app: flowq.App) -> None:
        """With a group limit of 1: A1 and B run together; A2 only after A1 finished."""
        a1 = await app.start(echo, {"n": "a1"}, group="A")
        a2 = await app.start(echo, {"n": "a2"}, group="A")
        b = await app.start(echo, {"n": "b"}, group="B")
        limits = GroupLimits(default=1)
        first = await app.store.claim_jobs("w1", 10, None, limits)
        assert [c.job.id for c in first] == [a1, b]
        assert await app.store.claim_jobs("w2", 10, None, limits) == []
        assert await self.complete(app, first[0], None)
        [second] = await app.store.claim_jobs("w2", 10, None, limits)
        assert second.job.id == a2

    async def test_a_full_group_does_not_shorten_a_claim(self, app: flowq.App) -> None:
        """Candidates of a full group are skipped: the claim still fills up with others."""
        a1 = await app.start(echo, {}, group="A", priority=9)
        await app.start(echo, {}, group="A", priority=8)
        await app.start(echo, {}, group="A", priority=7)
        b = await app.start(echo, {}, group="B")
        c = await app.start(echo, {})
        claimed = await app.store.claim_jobs("w1", 3, None, GroupLimits(default=1))
        assert [job.job.id for job in claimed] == [a1, b, c]

    async def test_group_limits_must_be_positive(self) -> None:
        """A group limit below 1 is refused when the limits are made."""
        with pytest.raises(flowq.ValidationError, match="group limit"):
            GroupLimits(per_group={"C": 0})

    async def test_group_limits_per_group(self, app: flowq.App) -> None:
        """Per-group limits apply by name; other groups follow the default (None: no limit)."""
        await app.add_jobs([flowq.JobSpec(echo, {}, group="pair") for _ in range(3)])
        await app.add_jobs([flowq.JobSpec(echo, {}, group="free") for _ in range(3)])
        limits = GroupLimits(per_group={"pair": 2})
        claimed = await app.store.claim_jobs("w1", 10, None, limits)
        assert sorted(c.job.group or "" for c in claimed) == ["free"] * 3 + ["pair"] * 2
        assert await app.store.claim_jobs("w2", 10, None, limits) == []

    async def test_progress_and_output_of_a_running_job(self, app: flowq.App) -> None:
        """A running job's progress (with an event) and output are stored; stale leases refused."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        assert await app.store.record_progress(claimed.lease, 40) is True
        assert await app.store.record_output(claimed.lease, '{"partial": 1}') is True
        job = await app.get_job(job_id)
        assert job is not None and job.progress == 40 and job.output == {"partial": 1}
        progress = (await app.get_job_events(job_id))[-1]
        assert progress.event_type is EventType.PROGRESS and progress.metadata == {"progress": 40}
        await app.cancel_job(job_id)
        assert await app.store.record_progress(claimed.lease, 90) is False
        assert await app.store.record_output(claimed.lease, '"late"') is False
        job = await app.get_job(job_id)
        assert job is not None and job.progress == 40 and job.output == {"partial": 1}

    async def test_a_worker_resolves_the_open_options_of_a_running_job(
        self, app: flowq.App
    ) -> None:
        """resolve_options writes the declared values, closes every open option and
        says so in an ``edited`` event; a stale lease writes nothing."""
        job_id = await app.add_job("elsewhere.onboard", {}, max_attempts=2)
        [claimed] = await self.claim(app, workflows=["elsewhere.onboard"])
        assert claimed.job.unresolved_options == (
            "timeout",
            "retry",
            "dead_letter",
            "force_kill_on_timeout",
        )
        declared = {
            "timeout": timedelta(seconds=30),
            "retry": flowq.RetryPolicy(5, backoff=False),
            "dead_letter": "contract.dead_letters",
            "force_kill_on_timeout": False,
        }
        assert await app.store.resolve_options(claimed.lease, declared) is True
        job = await app.get_job(job_id)
        assert job is not None and job.unresolved_options == ()
        assert (job.timeout, job.retry, job.dead_letter) == (
            timedelta(seconds=30),
            flowq.RetryPolicy(5, backoff=False),
            "contract.dead_letters",
        )
        assert job.max_attempts == 2 and job.status is JobStatus.PROCESSING
        resolved = (await app.get_job_events(job_id))[-1]
        assert resolved.event_type is EventType.EDITED
        assert resolved.metadata == {
            "fields": ["dead_letter", "force_kill_on_timeout", "retry", "timeout"],
            "resolved_by": "contract-worker",
        }
        await app.cancel_job(job_id)
        assert await app.store.resolve_options(claimed.lease, {"timeout": None}) is False
        job = await app.get_job(job_id)
        assert job is not None and job.timeout == timedelta(seconds=30)

    # -- maintenance ------------------------------------------------------------------

    async def test_reclaim_respects_minutes_and_job_timeout(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """reclaim_stuck_jobs takes jobs locked longer than max(minutes, their timeout)."""
        short = await app.start(echo, {})
        long = await app.start(echo, {}, timeout=timedelta(hours=1))
        await self.claim(app)
        clock.advance(timedelta(minutes=15))
        assert await app.reclaim_stuck_jobs(10) == 1
        job = await app.get_job(short)
        assert job is not None and job.status is JobStatus.PENDING
        assert event_types(await app.get_job_events(short))[-1] == "reclaimed"
        still = await app.get_job(long)
        assert still is not None and still.status is JobStatus.PROCESSING
        clock.advance(timedelta(hours=1))
        assert await app.reclaim_stuck_jobs(0) == 1
        assert await app.reclaim_stuck_jobs(0) == 0

    async def test_expired_leases_are_taken_back_whatever_the_timeout(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """reclaim_expired_leases takes jobs whose lock is older than the lease, even
        with a long timeout, at most ``limit`` at a time, never those of ``sparing``,
        and never jobs whose lock a heartbeat refreshed."""
        ids = [await app.start(echo, {"n": n}, timeout=timedelta(hours=1)) for n in range(3)]
        [mine] = await app.store.claim_jobs("me", 1, contract_registry.names())
        others = await app.store.claim_jobs("dead", 2, contract_registry.names())
        fresh = await app.start(echo, {"n": 3})
        clock.advance(timedelta(seconds=31))
        [live] = await app.store.claim_jobs("alive", 1, contract_registry.names())
        assert live.job.id == fresh
        lease = timedelta(seconds=30)
        assert await app.store.reclaim_expired_leases(lease, limit=1, sparing="me") == 1
        assert await app.store.reclaim_expired_leases(lease, limit=10, sparing="me") == 1
        assert await app.store.reclaim_expired_leases(lease, limit=10, sparing="me") == 0
        for claimed in others:
            job = await app.get_job(claimed.job.id)
            assert job is not None and (job.status, job.locked_by) == (JobStatus.PENDING, None)
        assert await app.store.heartbeat([mine.lease]) == []
        clock.advance(timedelta(seconds=29))
        assert await app.store.reclaim_expired_leases(lease, limit=10) == 0
        assert {c.job.id for c in [mine, *others]} == set(ids)

    async def test_reclaiming_the_last_attempt_fails_the_job(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A reclaimed job with no attempts left fails permanently (reason timeout)."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}, max_attempts=1, dead_letter=dead_letters),
                flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(0)]),
            ]
        )
        await self.claim(app)
        clock.advance(timedelta(minutes=20))
        assert await app.reclaim_stuck_jobs(10) == 1
        job = await app.get_job(ids[0])
        assert job is not None and job.status is JobStatus.FAILED and job.attempts == 1
        assert job.failure_reason is FailureReason.TIMEOUT and job.next_attempt_at is None
        assert job.error_history[-1].type == "WorkerLost"
        assert job.dead_letter_job_id is not None
        assert event_types(await app.get_job_events(ids[0]))[-2:] == ["reclaimed", "failed"]
        dependant = await app.get_job(ids[1])
        assert dependant is not None and dependant.status is JobStatus.CANCELLED
        [letter] = await self.claim(app)
        assert letter.job.id == job.dead_letter_job_id

    async def test_reclaim_zero_minutes_takes_every_running_job(self, app: flowq.App) -> None:
        """reclaim_stuck_jobs(0) returns every running job without a timeout to pending."""
        await app.add_jobs([flowq.JobSpec(echo, {}) for _ in range(3)])
        await self.claim(app)
        assert await app.reclaim_stuck_jobs(0) == 3
        assert [c.job.attempts for c in await self.claim(app)] == [2, 2, 2]

    async def test_cleanup_old_jobs(self, app: flowq.App, clock: FakeClock) -> None:
        """cleanup_old_jobs deletes finished jobs older than the cutoff with their events."""
        old_done = await app.start(echo, {}, idempotency_key="nightly")
        await self.run_to_completion(app, old_done)
        old_cancelled = await app.start(echo, {})
        await app.cancel_job(old_cancelled)
        clock.advance(timedelta(days=10))
        recent_done = await app.start(echo, {})
        await self.run_to_completion(app, recent_done)
        pending = await app.start(echo, {})
        clock.advance(timedelta(days=1))
        assert await app.cleanup_old_jobs(days=5) == 2
        assert await app.get_job(old_done) is None and await app.get_job(old_cancelled) is None
        assert await app.get_job_events(old_done) == []
        assert {job.id for job in await app.get_jobs()} == {recent_done, pending}
        again = await app.start(echo, {"fresh": True}, idempotency_key="nightly")
        assert again != old_done
        assert await app.cleanup_old_jobs(days=0) == 1
        assert {job.id for job in await app.get_jobs()} == {pending, again}

    async def test_cleanup_deletes_in_batches(self, app: flowq.App) -> None:
        """cleanup_old_jobs deletes more jobs than one batch holds and counts them all."""
        await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(1050)])
        assert await app.cancel_all_upcoming_jobs() == 1050
        assert await app.cleanup_old_jobs(days=0) == 1050
        assert await app.get_jobs() == []

    async def test_cleanup_old_job_events(self, app: flowq.App, clock: FakeClock) -> None:
        """cleanup_old_job_events deletes events older than the cutoff and counts them."""
        job_id = await app.start(echo, {})
        clock.advance(timedelta(days=3))
        await app.cancel_job(job_id)
        assert await app.cleanup_old_job_events(days=2) == 1
        assert event_types(await app.get_job_events(job_id)) == ["cancelled"]
        assert await app.cleanup_old_job_events(days=0) == 1

    async def test_maintenance_rejects_negative_ages(self, app: flowq.App) -> None:
        """Negative minutes or days raise ValidationError."""
        with pytest.raises(flowq.ValidationError):
            await app.reclaim_stuck_jobs(-1)
        with pytest.raises(flowq.ValidationError):
            await app.cleanup_old_jobs(days=-1)

    # -- transactions -----------------------------------------------------------------

    async def test_enqueue_joins_the_callers_transaction(
        self, app: flowq.App, store: Store
    ) -> None:
        """With connection=, the job commits or rolls back with the caller's transaction."""
        opener = self.connection(store)
        if opener is None:
            with pytest.raises(flowq.ValidationError, match="connection"):
                await app.start(echo, {}, connection=object())  # type: ignore[arg-type]
            assert await app.get_jobs() == []
            return
        async with opener as connection:
            transaction = await connection.begin()
            rolled_back = await app.start(echo, {"n": 1}, connection=connection)
            await transaction.rollback()
        assert await app.get_job(rolled_back) is None
        assert await app.get_job_events(rolled_back) == []
        async with self.connection(store) as connection:  # type: ignore[union-attr]
            transaction = await connection.begin()
            [kept] = await app.add_jobs([flowq.JobSpec(echo, {"n": 2})], connection=connection)
            await transaction.commit()
        job = await app.get_job(kept)
        assert job is not None and job.payload == {"n": 2}
        assert event_types(await app.get_job_events(kept)) == ["added"]
