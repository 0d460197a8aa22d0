"""Type-checked by mypy (strict), never run: the public API keeps its static types."""

from __future__ import annotations

from typing import Any, assert_type

import msgspec

import flowq


class Signup(msgspec.Struct):
    """A typed payload."""

    user_id: int
    email: str


@flowq.step
async def fetch_profile(user_id: int) -> dict[str, str]:
    """An async step."""
    return {"email": f"{user_id}@example.com"}


@flowq.step(name="count", retries=2, timeout="5s", overlap_retries=True)
def count(text: str) -> int:
    """A sync step with options."""
    return len(text)


@flowq.workflow(max_attempts=5)
async def onboard(payload: Signup, ctx: flowq.Context) -> str:
    """A workflow with a typed payload and a context."""
    profile = await fetch_profile(payload.user_id)
    assert_type(profile, dict[str, str])
    assert_type(await count("abc"), int)
    await ctx.sleep("1h")
    token = await ctx.create_token(timeout="48h")
    result = await ctx.wait_for_token(token)
    assert_type(result, flowq.TokenResult)
    return profile["email"]


@flowq.workflow
def plain(payload: dict[str, int]) -> int:
    """A sync workflow without a context."""
    return payload["n"]


async def client(app: flowq.App) -> None:
    """Typed calls on the App."""
    assert_type(onboard, flowq.Workflow[Signup, str])
    job_id = await app.start(onboard, Signup(1, "a@example.com"), priority=5, delay="10s")
    assert_type(job_id, int)
    job = await app.get_job(job_id)
    assert_type(job, flowq.Job | None)
    ids = await app.add_jobs([flowq.JobSpec(plain, {"n": 1}, tags=["t"])])
    assert_type(ids, list[int])
    worker = app.create_worker(concurrency=4, group_concurrency={"tenant": 1})
    assert_type(worker, flowq.Worker)
    await worker.run_until_idle()
    steps = await app.get_job_steps(job_id)
    assert_type(steps, list[flowq.StepRecord])
    token = await app.complete_token("id", {"approved": True})
    assert_type(token, flowq.Token)


async def producer(app: flowq.App) -> None:
    """A service that enqueues workflows implemented elsewhere, typed by a reference."""
    remote = flowq.workflow_ref("signup.onboard", Signup, str)
    assert_type(remote, flowq.WorkflowRef[Signup, str])
    assert_type(await app.start(remote, Signup(1, "a@example.com")), int)
    untyped = flowq.workflow_ref("reports.build")
    assert_type(untyped, flowq.WorkflowRef[Any, Any])
    await app.add_job("reports.build", {"month": "2026-11"}, timeout="1h")
