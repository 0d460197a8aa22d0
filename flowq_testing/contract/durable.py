"""Contract tests of recorded calls (steps, waits) and tokens."""

from __future__ import annotations

import dataclasses
import functools
from datetime import timedelta

import anyio
import anyio.lowlevel
import pytest

import flowq
from flowq import JobStatus, TokenStatus
from flowq.replay import RecordedCall, child_wait_id
from flowq.store.base import (
    CLEANUP_BATCH_SIZE,
    Completion,
    GroupLimits,
    NewJob,
    NewToken,
    Release,
)
from flowq_testing.clock import FakeClock
from flowq_testing.contract.base import ContractBase, contract_registry, echo, start_child

__all__ = [
    "DurableVerbsContract",
    "call",
]


def call(
    seq: int,
    name: str,
    clock: FakeClock,
    *,
    output: str | None = "1",
    error: str | None = None,
    attempt: int = 1,
) -> RecordedCall:
    """A recorded call at ``seq``."""
    return RecordedCall(
        seq=seq,
        name=name,
        attempt=attempt,
        output=output,
        error=error,
        started_at=clock.now(),
        completed_at=clock.now(),
    )


class DurableVerbsContract(ContractBase):
    """What the replay engine relies on."""

    async def test_recorded_calls_come_back_in_order(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Calls recorded by the lease holder are loaded in position order."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        lease = claimed.lease
        calls = [call(1, "second", clock, output='{"v": 2}'), call(0, "first", clock)]
        assert await app.store.record_calls([(lease, c) for c in calls]) == calls
        history = await app.store.load_history(job_id)
        assert [(c.seq, c.name, c.output, c.attempt) for c in history] == [
            (0, "first", "1", 1), (1, "second", '{"v": 2}', 1),
        ]  # fmt: skip
        steps = await app.get_job_steps(job_id)
        assert [(s.seq, s.name, s.output) for s in steps] == [
            (0, "first", 1),
            (1, "second", {"v": 2}),
        ]
        assert await app.store.load_history(999) == []

    async def test_a_stale_lease_records_nothing(self, app: flowq.App, clock: FakeClock) -> None:
        """After its job was taken back, a worker cannot record calls for it."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        clock.advance(timedelta(hours=1))
        assert await app.reclaim_stuck_jobs(10) == 1
        assert await app.store.record_calls([(claimed.lease, call(0, "late", clock))]) == [None]
        assert await app.store.load_history(job_id) == []

    async def test_a_success_is_never_overwritten_but_a_failure_is(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A recorded result stays, and a conflicting write is answered with it (never
        reported as stored); a recorded failure is replaced when the step runs again."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        done = call(0, "done", clock)
        failed = call(1, "flaky", clock, output=None, error='{"message": "x", "type": "E"}')
        await app.store.record_calls([(claimed.lease, done), (claimed.lease, failed)])
        clock.advance(timedelta(seconds=1))
        redo = call(0, "done", clock, output="2", attempt=2)
        fixed = call(1, "flaky", clock, output="3", attempt=2)
        assert await app.store.record_calls([(claimed.lease, redo), (claimed.lease, fixed)]) == [
            done,
            fixed,
        ]
        history = await app.store.load_history(job_id)
        assert history == [done, fixed]

    async def test_tokens_complete_once(self, app: flowq.App, clock: FakeClock) -> None:
        """A token completes once; completing it again, or an unknown one, raises TokenError."""
        token = await app.create_token(timeout="1h", tags=["approval"])
        assert len(token.id) >= 22 and token.status is TokenStatus.WAITING
        assert token.timeout_at == clock.now() + timedelta(hours=1) and token.tags == ("approval",)
        done = await app.complete_token(token.id, {"approved": True})
        assert done.status is TokenStatus.COMPLETED and done.output == {"approved": True}
        stored = await app.get_token(token.id)
        assert stored is not None and stored.output == {"approved": True}
        assert stored.completed_at == clock.now()
        with pytest.raises(flowq.TokenError, match="completed"):
            await app.complete_token(token.id, 1)
        with pytest.raises(flowq.TokenError, match="no token"):
            await app.complete_token("nope", 1)
        assert await app.get_token("nope") is None
        other = await app.create_token()
        assert other.id != token.id and other.timeout_at is None

    async def test_timed_out_tokens_cannot_be_completed(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Past its deadline a token is refused, before and after expire_timed_out_tokens."""
        early = await app.create_token(timeout="10m")
        late = await app.create_token(timeout="1h")
        clock.advance(timedelta(minutes=11))
        with pytest.raises(flowq.TokenError, match="timed out"):
            await app.complete_token(early.id, "too late")
        assert await app.expire_timed_out_tokens() == 1
        expired = await app.get_token(early.id)
        assert expired is not None and expired.status is TokenStatus.TIMED_OUT
        waiting = await app.get_token(late.id)
        assert waiting is not None and waiting.status is TokenStatus.WAITING
        settled = await app.store.settle_token(late.id)
        assert settled is not None and settled.status is TokenStatus.WAITING
        clock.advance(timedelta(hours=1))
        settled = await app.store.settle_token(late.id)
        assert settled is not None and settled.status is TokenStatus.TIMED_OUT

    async def test_completing_a_token_wakes_its_job(self, app: flowq.App, clock: FakeClock) -> None:
        """A job waiting on a token is runnable again as soon as the token is completed."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        token = await app.store.create_token(
            NewToken(id="t-" + "x" * 30, tags=(), timeout_at=None), claimed.lease
        )
        assert token is not None and token.job_id == job_id
        assert await app.store.suspend_job(claimed.lease, wait_until=None, token_id=token.id)
        assert await self.claim(app) == []
        await app.complete_token(token.id, "yes")
        [resumed] = await self.claim(app)
        assert resumed.job.id == job_id and resumed.resumed

    async def test_a_token_resolved_before_the_job_parks_does_not_strand_it(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """If the token completes while the job still runs, parking on it resumes at once."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        token = await app.store.create_token(
            NewToken(id="t-" + "y" * 30, tags=(), timeout_at=None), claimed.lease
        )
        assert token is not None
        await app.complete_token(token.id, "early")
        assert await app.store.suspend_job(claimed.lease, wait_until=None, token_id=token.id)
        [resumed] = await self.claim(app)
        assert resumed.job.id == job_id

    @pytest.mark.parametrize("resolve", ["complete_token", "expire_timed_out_tokens"])
    async def test_a_token_resolved_between_the_look_and_the_park_resumes_at_once(
        self, app: flowq.App, clock: FakeClock, resolve: str
    ) -> None:
        """wait_for_token's order, with the token resolved in the window: the job looks
        (settle_token: waiting), the token is completed or times out (waking nobody:
        the job still runs), then the job parks on it. It is runnable at once, and
        workers are told."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        deadline = clock.now() + timedelta(hours=1)
        token = await app.store.create_token(
            NewToken(id="t-" + "w" * 30, tags=(), timeout_at=deadline), claimed.lease
        )
        assert token is not None
        looked = await app.store.settle_token(token.id)
        assert looked is not None and looked.status is TokenStatus.WAITING
        if resolve == "complete_token":
            await app.complete_token(token.id, "in the window")
        else:
            clock.advance(timedelta(hours=2))
            assert await app.expire_timed_out_tokens() == 1
        hints: list[str] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(functools.partial(app.store.listen, hints.append, remote=False))
            await anyio.lowlevel.checkpoint()
            # No timer of its own (wait_until=None): only the token can make it runnable.
            assert await app.store.suspend_job(claimed.lease, wait_until=None, token_id=token.id)
            tasks.cancel_scope.cancel()
        assert "jobs" in hints
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.WAITING
        [resumed] = await self.claim(app)
        assert resumed.job.id == job_id and resumed.resumed

    @pytest.mark.parametrize("finish", ["complete", "fail", "cancel"])
    async def test_a_child_finished_between_the_look_and_the_park_resumes_at_once(
        self, app: flowq.App, clock: FakeClock, finish: str
    ) -> None:
        """ctx.call()'s order, with the child finishing in the window: the parent looks
        (get_job: not finished), the child completes, fails for good or is cancelled
        (waking nobody: the parent still runs), then the parent parks on it. It is
        runnable at once, and workers are told."""
        parent_id = await app.start(echo, {"role": "parent"})
        [parent] = await self.claim(app)
        child_id = await start_child(
            app, echo, {"role": "child"}, {"max_attempts": 1}, parent_id, 0
        )
        looked = await app.get_job(child_id)
        assert looked is not None and looked.status is JobStatus.PENDING
        if finish == "cancel":
            assert await app.cancel_job(child_id)
        else:
            [child] = await self.claim(app)
            assert child.job.id == child_id
            if finish == "complete":
                assert await self.complete(app, child, '"child done"')
            else:
                assert await self.fail(app, child, retry_in=None)
        hints: list[str] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(functools.partial(app.store.listen, hints.append, remote=False))
            await anyio.lowlevel.checkpoint()
            assert await app.store.suspend_job(
                parent.lease, wait_until=None, token_id=child_wait_id(child_id)
            )
            tasks.cancel_scope.cancel()
        assert "jobs" in hints
        [resumed] = await self.claim(app)
        assert resumed.job.id == parent_id and resumed.resumed

    async def test_expired_token_wakes_its_job(self, app: flowq.App, clock: FakeClock) -> None:
        """expire_timed_out_tokens makes jobs waiting on expired tokens runnable."""
        await app.start(echo, {})
        [claimed] = await self.claim(app)
        deadline = clock.now() + timedelta(days=2)
        token = await app.store.create_token(
            NewToken(id="t-" + "z" * 30, tags=(), timeout_at=deadline), claimed.lease
        )
        assert token is not None
        assert await app.store.suspend_job(claimed.lease, wait_until=deadline, token_id=token.id)
        clock.advance(timedelta(days=1))
        assert await app.expire_timed_out_tokens() == 0
        assert await self.claim(app) == []
        clock.advance(timedelta(days=1))
        assert await app.expire_timed_out_tokens() == 1
        assert len(await self.claim(app)) == 1

    async def test_a_finished_child_wakes_its_parent(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A parent waiting for a child becomes runnable when the child finishes."""
        parent_id = await app.start(echo, {"role": "parent"})
        [parent] = await self.claim(app)
        child_id = await start_child(app, echo, {"role": "child"}, {}, parent_id, 0)
        again = await start_child(app, echo, {"role": "child"}, {}, parent_id, 0)
        assert again == child_id
        child_job = await app.get_job(child_id)
        assert child_job is not None and child_job.parent_job_id == parent_id
        assert await app.store.suspend_job(
            parent.lease, wait_until=None, token_id=child_wait_id(child_id)
        )
        [child] = await self.claim(app)
        assert child.job.id == child_id
        assert await self.complete(app, child, '"child done"')
        [resumed] = await self.claim(app)
        assert resumed.job.id == parent_id and resumed.resumed

    async def test_a_cancelled_child_also_wakes_its_parent(self, app: flowq.App) -> None:
        """Cancelling a child wakes a parent waiting for it (which then sees the failure)."""
        parent_id = await app.start(echo, {})
        [parent] = await self.claim(app)
        child_id = await start_child(app, echo, {}, {}, parent_id, 3)
        assert await app.store.suspend_job(
            parent.lease, wait_until=None, token_id=child_wait_id(child_id)
        )
        assert await app.cancel_job(child_id)
        [resumed] = await self.claim(app)
        assert resumed.job.id == parent_id

    async def test_cleanup_keeps_a_finished_child_its_parent_still_needs(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A finished child of ``ctx.call`` survives cleanup while its parent is
        unfinished and has not recorded its outcome; once the parent finished, it goes."""
        parent_id = await app.start(echo, {"role": "parent"})
        [parent] = await self.claim(app)
        child_id = await start_child(app, echo, {"role": "child"}, {}, parent_id, 0, 1)
        started = [call(0, "@child:x", clock)]
        assert await app.store.record_calls([(parent.lease, c) for c in started]) == started
        assert await app.store.suspend_job(
            parent.lease, wait_until=None, token_id=child_wait_id(child_id)
        )
        await self.run_to_completion(app, child_id)
        clock.advance(timedelta(days=40))
        assert await app.cleanup_old_jobs() == 0
        assert await app.cleanup_old_jobs(days=0) == 0
        assert (await app.get_job(child_id)) is not None
        [resumed] = await self.claim(app)  # woken by its child; still unfinished
        assert resumed.job.id == parent_id
        assert await app.cleanup_old_jobs(days=0) == 0
        assert await self.complete(app, resumed, '"parent done"')
        assert await app.cleanup_old_jobs(days=0) == 2
        assert await app.get_job(child_id) is None and await app.get_job(parent_id) is None

    async def test_cleanup_deletes_a_child_once_its_parent_recorded_the_outcome(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A long-lived parent does not keep its children: a child whose outcome the
        parent recorded is cleaned up like any job while the parent still runs (and a
        sibling whose outcome is not recorded yet stays)."""
        parent_id = await app.start(echo, {})
        [parent] = await self.claim(app)
        child_id = await start_child(app, echo, {}, {}, parent_id, 4, 5)
        awaited_id = await start_child(app, echo, {}, {}, parent_id, 6, 7)
        children = await self.claim(app)
        assert sorted(c.job.id for c in children) == [child_id, awaited_id]
        assert await app.store.complete_jobs([Completion(c.lease, None) for c in children])
        outcome = [call(5, "@child_result", clock)]
        assert await app.store.record_calls([(parent.lease, c) for c in outcome]) == outcome
        assert await app.store.suspend_job(
            parent.lease, wait_until=clock.now() + timedelta(days=365), token_id=None
        )
        clock.advance(timedelta(days=31))
        assert await app.cleanup_old_jobs() == 1
        assert await app.get_job(child_id) is None
        assert await app.get_job(awaited_id) is not None  # its outcome is not recorded
        parent_job = await app.get_job(parent_id)
        assert parent_job is not None and parent_job.status is JobStatus.WAITING

    async def test_cleanup_deletes_children_nobody_waits_for(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A child of ``ctx.start_child`` alone (no outcome position) is deleted like
        any finished job, whatever its parent does."""
        parent_id = await app.start(echo, {})
        assert len(await self.claim(app)) == 1  # the parent runs on
        child_id = await start_child(app, echo, {}, {}, parent_id, 0)
        assert await app.cancel_job(child_id)
        assert await app.cleanup_old_jobs(days=0) == 1
        assert await app.get_job(child_id) is None
        assert (await app.get_job(parent_id)) is not None

    async def test_cleanup_batches_pass_over_kept_children(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """More kept children than a batch holds, finished before the deletable jobs,
        neither stop a cleanup run nor hide the jobs after them."""
        parent_id = await app.start(echo, {})
        [parent] = await self.claim(app)
        kept = CLEANUP_BATCH_SIZE + 5
        template = NewJob(
            workflow=echo.name,
            payload="{}",
            priority=0,
            max_attempts=1,
            run_at=None,
            retry=flowq.RetryPolicy(),
            timeout=None,
            force_kill_on_timeout=False,
            tags=("kept",),
            idempotency_key=None,
            group=None,
            depends_on=(),
            depends_on_tags=(),
            dead_letter=None,
        )
        await app.store.add_jobs(
            [
                dataclasses.replace(template, parent_job_id=parent_id, parent_outcome_seq=n)
                for n in range(kept)
            ]
        )
        assert await app.cancel_all_upcoming_jobs(tags=flowq.TagQuery("kept")) == kept
        clock.advance(timedelta(seconds=1))
        await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(kept)])
        assert await app.cancel_all_upcoming_jobs(tags=flowq.TagQuery("kept", "none")) == kept
        assert await app.cleanup_old_jobs(days=0) == kept
        assert len(await app.get_jobs(limit=None)) == kept + 1
        assert await self.complete(app, parent, None)
        assert await app.cleanup_old_jobs(days=0) == kept + 1
        assert await app.get_jobs(limit=None) == []

    @pytest.mark.parametrize(
        "groups", [None, GroupLimits(default=5)], ids=["plain claim", "group claim"]
    )
    async def test_released_job_keeps_its_history(
        self, app: flowq.App, clock: FakeClock, groups: GroupLimits | None
    ) -> None:
        """Handing a first attempt back keeps what it recorded, and the next claim says
        so (from the recorded calls, not from the attempt count, which is 1 again)."""
        job_id = await app.start(echo, {})
        [claimed] = await app.store.claim_jobs("w", 10, contract_registry.names(), groups)
        assert not claimed.has_history
        await app.store.record_calls([(claimed.lease, call(0, "kept", clock))])
        await app.store.release_jobs([Release(claimed.lease, new_attempt=True)])
        job = await app.get_job(job_id)
        assert job is not None and (job.status, job.attempts) == (JobStatus.PENDING, 0)
        assert [c.name for c in await app.store.load_history(job_id)] == ["kept"]
        [again] = await app.store.claim_jobs("w", 10, contract_registry.names(), groups)
        assert (again.job.attempts, again.resumed, again.has_history) == (1, False, True)

    async def test_cleanup_removes_steps_and_tokens(self, app: flowq.App, clock: FakeClock) -> None:
        """Deleting a finished job deletes its recorded calls and its tokens."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        await app.store.record_calls([(claimed.lease, call(0, "s", clock))])
        token = await app.store.create_token(
            NewToken(id="t-" + "c" * 30, tags=(), timeout_at=None), claimed.lease
        )
        assert token is not None
        assert await self.complete(app, claimed, None)
        assert await app.cleanup_old_jobs(days=0) == 1
        assert await app.store.load_history(job_id) == []
        assert await app.get_token(token.id) is None

    async def test_tokens_of_no_job_expire_and_are_cleaned_up(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Tokens from app.create_token time out at their deadline; cleanup_old_jobs
        deletes them once they finished or passed their deadline ``days`` ago, and
        keeps waiting tokens without a deadline and a job's own tokens."""
        done = await app.create_token()
        await app.complete_token(done.id, "ok")
        expiring = await app.create_token(timeout="1h")
        forever = await app.create_token()
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        owned = await app.store.create_token(
            NewToken(id="t-" + "o" * 30, tags=(), timeout_at=None), claimed.lease
        )
        assert owned is not None and owned.job_id == job_id
        clock.advance(timedelta(hours=2))
        assert await app.expire_timed_out_tokens() == 1
        expired = await app.get_token(expiring.id)
        assert expired is not None and expired.status is TokenStatus.TIMED_OUT
        assert await app.cleanup_old_jobs(days=1) == 0
        assert await app.get_token(done.id) is not None  # finished 2 hours ago only
        clock.advance(timedelta(days=1))
        assert await app.cleanup_old_jobs(days=1) == 0
        assert await app.get_token(done.id) is None
        assert await app.get_token(expiring.id) is None
        assert await app.get_token(forever.id) is not None
        assert await app.get_token(owned.id) is not None

    async def test_a_token_of_no_job_past_its_deadline_is_cleaned_up_unexpired(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A waiting token whose deadline passed ``days`` ago goes even if nothing
        marked it timed out."""
        stale = await app.create_token(timeout="1h")
        clock.advance(timedelta(days=3))
        assert await app.cleanup_old_jobs(days=2) == 0
        assert await app.get_token(stale.id) is None
