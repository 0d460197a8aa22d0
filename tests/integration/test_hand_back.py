"""A job handed back by a stopping worker keeps its history: no recorded step runs again.

The reproduction of the reliability issue's critical defect: a step with a fresh
value per run, then a long (non-durable) pause, a stop whose drain timeout expires,
and a second worker. The step must not run again and the job must finish with the
value the database holds.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

import flowq
from flowq import JobStatus
from flowq.store.base import ClaimedJob
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio

DEADLINE = 10.0


@pytest.fixture
def clock() -> FakeClock:
    """Time moves only when a test moves it."""
    return FakeClock(datetime(2030, 1, 31, 12, tzinfo=UTC))


async def job_of(app: flowq.App, job_id: int) -> flowq.Job:
    """The job, which must exist."""
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def hand_back(app: flowq.App, reached: anyio.Event) -> None:
    """Run a worker until the job reaches its pause, then stop it with a short drain
    timeout so that the job is cancelled and handed back."""
    worker = app.create_worker(concurrency=2)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await reached.wait()
            await worker.stop(drain_timeout=0.01)


async def test_a_handed_back_job_does_not_run_its_recorded_steps_again(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """The charge step ran once; the job's output is the charge the database recorded."""
    charges: list[str] = []
    reached = anyio.Event()
    pause = {"first run": True}

    @flowq.step
    async def charge(amount: int) -> str:
        charges.append(f"ch_{uuid.uuid4().hex[:8]}")
        return charges[-1]

    @registry.workflow(name="checkout")
    async def checkout(payload: dict[str, int], ctx: flowq.Context) -> str:
        charged = await charge(payload["amount"])
        if pause["first run"]:
            reached.set()
            await anyio.sleep_forever()
        return charged

    job_id = await app.start(checkout, {"amount": 42})
    await hand_back(app, reached)
    handed_back = await job_of(app, job_id)
    assert (handed_back.status, handed_back.attempts) == (JobStatus.PENDING, 0)
    assert [(s.seq, s.name, s.output) for s in await app.get_job_steps(job_id)] == [
        (0, charge.name, charges[0])
    ]

    pause["first run"] = False
    await app.create_worker().run_until_idle()
    job = await job_of(app, job_id)
    assert (job.status, job.output, job.attempts) == (JobStatus.COMPLETED, charges[0], 1)
    assert len(charges) == 1, f"the charge step ran {len(charges)} times: {charges}"


async def test_a_handed_back_job_keeps_its_token(app: flowq.App, registry: flowq.Registry) -> None:
    """The token created before the hand-back is the one the job waits on: completing
    the first approval link wakes the job."""
    created: list[str] = []
    reached = anyio.Event()
    pause = {"first run": True}

    @registry.workflow(name="approve")
    async def approve(payload: dict[str, Any], ctx: flowq.Context) -> Any:
        token = await ctx.create_token(timeout="48h")
        created.append(token.id)
        if pause["first run"]:
            reached.set()
            await anyio.sleep_forever()
        return (await ctx.wait_for_token(token)).output

    job_id = await app.start(approve, {})
    await hand_back(app, reached)
    pause["first run"] = False
    await app.create_worker().run_until_idle()
    assert (await job_of(app, job_id)).status is JobStatus.WAITING
    assert len(set(created)) == 1, f"the token was created again: {created}"

    await app.complete_token(created[0], {"approved": True})
    await app.create_worker().run_until_idle()
    job = await job_of(app, job_id)
    assert (job.status, job.output) == (JobStatus.COMPLETED, {"approved": True})


class ForgetfulClaims:
    """A store whose claims say that nothing is recorded for any job: the engine then
    runs recorded steps again, as it did when it guessed history from the attempt
    count. Everything else passes through to the real store."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    async def claim_jobs(self, *args: Any, **kwargs: Any) -> list[ClaimedJob]:
        claimed = await self._inner.claim_jobs(*args, **kwargs)
        return [dataclasses.replace(c, has_history=False) for c in claimed]


async def test_a_step_that_runs_again_goes_on_with_the_recorded_result(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """If a step body ever runs again at a recorded position, the store answers with
    the recorded result and the workflow continues with it, never with its own."""
    charges: list[str] = []
    reached = anyio.Event()
    pause = {"first run": True}

    @flowq.step
    async def charge() -> str:
        charges.append(f"ch_{uuid.uuid4().hex[:8]}")
        return charges[-1]

    @registry.workflow(name="checkout")
    async def checkout(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, str]:
        charged = await charge()
        token = await ctx.create_token()
        if pause["first run"]:
            reached.set()
            await anyio.sleep_forever()
        return {"charge": charged, "token": token.id}

    job_id = await app.start(checkout, {})
    await hand_back(app, reached)
    pause["first run"] = False
    forgetful = flowq.App(store=ForgetfulClaims(app.store), registry=registry, clock=clock)  # type: ignore[arg-type]
    await forgetful.create_worker().run_until_idle()

    job = await job_of(app, job_id)
    recorded = {s.name: s.output for s in await app.get_job_steps(job_id)}
    assert len(charges) == 2, "the forgetful claim must make the step body run again"
    assert job.status is JobStatus.COMPLETED
    assert job.output == {"charge": charges[0], "token": recorded["@token"]}
    assert recorded[charge.name] == charges[0]
