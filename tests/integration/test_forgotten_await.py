"""A forgotten ``await`` fails the attempt, naming the call, on every store: never a
job completed with a coroutine as its output, never a wait skipped in silence."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import pytest

import flowq
from flowq import JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio


@flowq.step(name="charge_card")
async def charge_card(amount: int) -> str:
    """A step."""
    return f"charged {amount}"


async def run_one(app: flowq.App, workflow: flowq.Workflow[Any, Any]) -> flowq.Job:
    job_id = await app.start(workflow, {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a bug
        await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def test_a_step_returned_without_await_fails_the_attempt(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """``return charge_card(5)`` fails, naming the step, instead of completing with
    '<coroutine object ...>'."""

    @registry.workflow(name="returns_a_coroutine", max_attempts=1)
    async def returns_a_coroutine(payload: dict[str, Any]) -> Any:
        return charge_card(5)

    job = await run_one(app, returns_a_coroutine)
    assert job.status is JobStatus.FAILED and job.output is None
    error = job.error_history[-1]
    assert error.type == "flowq.errors.UnawaitedCallError"
    assert "'charge_card' (position 0)" in error.message and "await" in error.message


async def test_a_sleep_without_await_is_not_skipped_in_silence(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """``ctx.sleep("1h")`` without await fails the attempt, naming the durable wait."""

    @registry.workflow(name="forgets_to_sleep", max_attempts=1)
    async def forgets_to_sleep(payload: dict[str, Any], ctx: flowq.Context) -> str:
        await charge_card(1)
        ctx.sleep("1h")  # type: ignore[unused-coroutine]
        return "done too early"

    job = await run_one(app, forgets_to_sleep)
    assert job.status is JobStatus.FAILED
    assert "'@timer' (position 1)" in job.error_history[-1].message


async def test_awaited_calls_and_gathered_ones_are_fine(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """Calls awaited directly, gathered or run through ctx.call's both positions pass."""
    import asyncio

    @registry.workflow(name="child_of_fine")
    async def child_of_fine(payload: dict[str, Any]) -> int:
        return 7

    @registry.workflow(name="fine")
    async def fine(payload: dict[str, Any], ctx: flowq.Context) -> list[Any]:
        first = await charge_card(1)
        gathered = await asyncio.gather(charge_card(2), charge_card(3))
        child = await ctx.call(child_of_fine, {})
        return [first, *gathered, child]

    job_id = await app.start(fine, {})
    await app.create_worker().run_until_idle()
    await app.create_worker().run_until_idle()
    assert await app.result(job_id, timeout=5) == ["charged 1", "charged 2", "charged 3", 7]


async def test_a_call_never_awaited_by_ctx_call_is_named(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """An un-awaited ctx.call is named by its outcome position, and leaves no child."""

    @registry.workflow(name="some_child")
    async def some_child(payload: dict[str, Any]) -> int:
        return 1

    @registry.workflow(name="forgets_child", max_attempts=1)
    async def forgets_child(payload: dict[str, Any], ctx: flowq.Context) -> None:
        ctx.call(some_child, {})  # type: ignore[unused-coroutine]

    job = await run_one(app, forgets_child)
    assert job.status is JobStatus.FAILED
    assert "'@child_result' (position 1)" in job.error_history[-1].message
    assert [j.workflow for j in await app.get_jobs()] == ["forgets_child"]


async def test_a_recorded_step_never_awaited_on_replay_is_named(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A replayed step (its result recorded, the history loaded) made but never awaited
    is found as on a first run: the replay fast path still tracks every call."""
    code = {"awaits": True}

    @registry.workflow(name="forgets_on_replay", max_attempts=1)
    async def forgets_on_replay(payload: dict[str, Any], ctx: flowq.Context) -> Any:
        await ctx.sleep("1h")  # position 0: loads the history on the resume
        first = charge_card(1)  # position 1, recorded by the first run
        if code["awaits"]:
            await first
            await ctx.wait_for_token(await ctx.create_token())
        return "done"

    job_id = await app.start(forgets_on_replay, {})
    await app.create_worker().run_until_idle()  # parks on the sleep
    clock.advance(timedelta(hours=1))
    await app.create_worker().run_until_idle()  # records charge_card, parks on the token
    job = await app.get_job(job_id)
    assert job is not None and job.wait_token_id is not None
    assert [s.name for s in await app.get_job_steps(job_id)][:2] == ["@timer", "charge_card"]
    code["awaits"] = False  # a deploy drops the await while the job waits
    await app.complete_token(job.wait_token_id, "go")
    job = await run_resumed(app, job_id)
    assert job.status is JobStatus.FAILED
    error = job.error_history[-1]
    assert error.type == "flowq.errors.UnawaitedCallError"
    assert "'charge_card' (position 1)" in error.message


async def run_resumed(app: flowq.App, job_id: int) -> flowq.Job:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None
    return job
