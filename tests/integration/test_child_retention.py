"""Children and retention: a recorded child outcome is self-contained history, and
``cleanup_old_jobs`` never deletes a child that an unfinished parent still waits on.

Real worker loops on every store, with a fake clock moved past the default 30-day
retention.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import flowq
from flowq import JobStatus, codec
from flowq.replay import RecordedCall
from flowq_testing import FakeClock
from flowq_testing.contract.base import start_child

pytestmark = pytest.mark.anyio

FORTY_DAYS = timedelta(days=40)


@pytest.fixture
def clock() -> FakeClock:
    """Time moves only when a test moves it."""
    return FakeClock(datetime(2030, 1, 31, 12, tzinfo=UTC))


async def run(app: flowq.App, *workflows: flowq.Workflow[Any, Any]) -> None:
    """Run everything runnable now (only jobs of ``workflows`` if given)."""
    await app.create_worker(workflows=list(workflows) or None).run_until_idle()


async def job_of(app: flowq.App, job_id: int) -> flowq.Job:
    """The job, which must exist."""
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def child_of(app: flowq.App, parent_id: int) -> int:
    """The id of the parent's only child."""
    [child] = [j for j in await app.get_jobs(limit=None) if j.parent_job_id == parent_id]
    return child.id


def broken(registry: flowq.Registry) -> flowq.Workflow[Any, Any]:
    """A child workflow that fails for good on its first attempt."""

    @registry.workflow(name="broken", max_attempts=1)
    async def broken(payload: dict[str, Any]) -> None:
        raise ValueError("child broke")

    return broken


def square(registry: flowq.Registry) -> flowq.Workflow[Any, Any]:
    """A child workflow that squares ``n``."""

    @registry.workflow(name="square")
    async def square(payload: dict[str, int]) -> int:
        return payload["n"] ** 2

    return square


async def test_a_caught_child_failure_replays_after_the_child_is_cleaned_up(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A parent that caught a child's JobFailedError and slept 40 days, its child
    deleted by the default retention meanwhile, replays the same error and completes."""
    child_workflow = broken(registry)
    seen: list[flowq.JobFailedError] = []

    @registry.workflow(name="patient_parent", max_attempts=1)
    async def patient_parent(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, Any]:
        try:
            await ctx.call(child_workflow, {"item": 1})
        except flowq.JobFailedError as exc:
            seen.append(exc)
            caught = {
                "id": exc.job.id,
                "status": exc.job.status,
                "reason": exc.job.failure_reason,
                "message": exc.job.error_history[-1].message,
            }
        await ctx.sleep(FORTY_DAYS)
        return caught

    parent_id = await app.start(patient_parent, {})
    await run(app)
    child_id = await child_of(app, parent_id)
    assert (await job_of(app, parent_id)).status is JobStatus.WAITING
    clock.advance(FORTY_DAYS)
    assert await app.cleanup_old_jobs() == 1  # the child: its outcome is recorded
    assert await app.get_job(child_id) is None
    await run(app)
    parent = await job_of(app, parent_id)
    assert parent.status is JobStatus.COMPLETED, parent.error_history
    assert parent.output == {
        "id": child_id,
        "status": "failed",
        "reason": "handler_error",
        "message": "child broke",
    }
    first, replayed = seen
    assert replayed.job == first.job and str(replayed) == str(first)
    assert first.job.payload == {"item": 1} and first.job.workflow == "broken"
    [start, outcome, _timer] = await app.get_job_steps(parent_id)
    assert (start.name, outcome.name, outcome.output) == ("@child:broken", "@child_result", None)
    assert outcome.error is not None
    assert outcome.error["type"] == "flowq.errors.JobFailedError"
    assert outcome.error["message"] == str(first)
    assert outcome.error["job"]["id"] == child_id


async def test_a_child_result_replays_after_the_child_is_cleaned_up(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A parent that got a child's output and slept 40 days completes after the
    child was deleted: the recorded output is all the replay needs."""
    child_workflow = square(registry)

    @registry.workflow(name="sleepy_parent", max_attempts=1)
    async def sleepy_parent(payload: dict[str, Any], ctx: flowq.Context) -> int:
        result: int = await ctx.call(child_workflow, {"n": 7})
        await ctx.sleep(FORTY_DAYS)
        return result + 1

    parent_id = await app.start(sleepy_parent, {})
    await run(app)
    child_id = await child_of(app, parent_id)
    clock.advance(FORTY_DAYS)
    assert await app.cleanup_old_jobs() == 1
    assert await app.get_job(child_id) is None
    await run(app)
    assert await app.result(parent_id, timeout=10) == 50


@pytest.mark.parametrize("outcome", ["completed", "failed"])
async def test_a_child_that_finished_before_its_parent_resumed_survives_cleanup(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock, outcome: str
) -> None:
    """A child finishes while its parent cannot run yet (no worker runs the parent's
    workflow for 40 days): cleanup keeps the child, and the parent, once it runs,
    still gets the child's outcome. After that both go."""

    @registry.workflow(name="late_child", max_attempts=1)
    async def late_child(payload: dict[str, Any]) -> str:
        if payload["fail"]:
            raise ValueError("child broke")
        return "child done"

    @registry.workflow(name="late_parent", max_attempts=1)
    async def late_parent(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, Any]:
        try:
            return {"output": await ctx.call(late_child, payload)}
        except flowq.JobFailedError as exc:
            return {"failed": exc.job.error_history[-1].message}

    parent_id = await app.start(late_parent, {"fail": outcome == "failed"})
    await run(app, late_parent)
    child_id = await child_of(app, parent_id)
    parent = await job_of(app, parent_id)
    assert parent.status is JobStatus.WAITING and parent.wait_token_id == f"child:{child_id}"
    await run(app, late_child)
    assert (await job_of(app, child_id)).status == outcome
    clock.advance(FORTY_DAYS)
    assert await app.cleanup_old_jobs() == 0
    assert await app.cleanup_old_jobs(days=0) == 0
    assert await app.get_job(child_id) is not None
    await run(app)
    expected = {"output": "child done"} if outcome == "completed" else {"failed": "child broke"}
    assert await app.result(parent_id, timeout=10) == expected
    assert await app.cleanup_old_jobs(days=0) == 2


async def test_a_child_deleted_before_its_outcome_was_recorded_fails_the_parent(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A child row deleted before the parent recorded its outcome (here: a child added
    without an outcome position, as nothing protects it then) fails the parent with a
    clear ContextError instead of leaving it waiting forever."""
    child_workflow = square(registry)

    @registry.workflow(name="orphaned_parent", max_attempts=1)
    async def orphaned_parent(payload: dict[str, Any], ctx: flowq.Context) -> int:
        result: int = await ctx.call(child_workflow, {"n": 2})
        return result

    parent_id = await app.start(orphaned_parent, {})
    [claimed] = await app.store.claim_jobs("test", 1, [orphaned_parent.name])
    child_id = await start_child(app, child_workflow, {"n": 2}, {}, parent_id, 0)
    started = [recorded(0, "@child:square", child_id)]
    assert await app.store.record_calls([(claimed.lease, c) for c in started]) == started
    assert await app.store.suspend_job(claimed.lease, wait_until=None, token_id=f"child:{child_id}")
    await run(app, child_workflow)
    assert await app.cleanup_old_jobs(days=0) == 1
    await run(app)
    parent = await job_of(app, parent_id)
    assert parent.status is JobStatus.FAILED
    [error] = parent.error_history
    assert error.type == "flowq.errors.ContextError"
    assert f"child job {child_id} of job {parent_id} is gone" in error.message


@pytest.mark.parametrize("child_kept", [True, False])
async def test_child_failures_recorded_by_id_only_still_replay(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock, child_kept: bool
) -> None:
    """A child failure recorded the old way, ``{"job_id": N}``, replays from the
    child's row while it exists, and fails the parent with a clear ContextError once
    the child was deleted."""
    child_workflow = broken(registry)

    @registry.workflow(name="old_parent", max_attempts=1)
    async def old_parent(payload: dict[str, Any], ctx: flowq.Context) -> str:
        try:
            await ctx.call(child_workflow, {})
        except flowq.JobFailedError as exc:
            return exc.job.error_history[-1].message
        return "no error"

    parent_id = await app.start(old_parent, {})
    [claimed] = await app.store.claim_jobs("test", 1, [old_parent.name])
    child_id = await start_child(app, child_workflow, {}, {}, parent_id, 0, 1)
    await run(app, child_workflow)
    old_record = codec.encode({"job_id": child_id}, what="old record")
    calls = [recorded(0, "@child:broken", child_id), recorded(1, "@child_result", error=old_record)]
    assert await app.store.record_calls([(claimed.lease, call) for call in calls]) == calls
    assert await app.store.suspend_job(claimed.lease, wait_until=clock.now(), token_id=None)
    if not child_kept:
        assert await app.cleanup_old_jobs(days=0) == 1  # the outcome is recorded
    await run(app)
    parent = await job_of(app, parent_id)
    if child_kept:
        assert parent.status is JobStatus.COMPLETED and parent.output == "child broke"
        return
    assert parent.status is JobStatus.FAILED
    [error] = parent.error_history
    assert error.type == "flowq.errors.ContextError"
    assert f"child job {child_id} of job {parent_id} failed and is gone" in error.message


def recorded(seq: int, name: str, output: Any = None, *, error: str | None = None) -> RecordedCall:
    """A durable call as the engine records it (``output`` is encoded here)."""
    moment = datetime(2030, 1, 31, 12, tzinfo=UTC)
    return RecordedCall(
        seq=seq,
        name=name,
        attempt=1,
        output=None if error is not None else codec.encode(output, what="output"),
        error=error,
        started_at=moment,
        completed_at=moment,
    )
