"""Exported job histories (App.export_job) and flowq_testing.replay against new code."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import msgspec
import pytest

import flowq
from flowq.history import HISTORY_FORMAT, HISTORY_VERSION
from flowq_testing import FakeClock, WorkflowEnvironment, replay

pytestmark = pytest.mark.anyio

bodies: Counter[str] = Counter()


@flowq.step(name="reserve")
async def reserve(order: int) -> str:
    """Reserves stock (counted)."""
    bodies["reserve"] += 1
    return f"r{order}"


@flowq.step(name="charge")
async def charge(order: int) -> str:
    """Charges the card (counted)."""
    bodies["charge"] += 1
    return f"c{order}"


@flowq.step(name="ship")
async def ship(order: int) -> str:
    """Ships (counted)."""
    bodies["ship"] += 1
    return f"s{order}"


async def v1(payload: dict[str, int], ctx: flowq.Context) -> list[str]:
    """Reserve, charge, approval token, a day's wait, ship."""
    done = [await reserve(payload["order"]), await charge(payload["order"])]
    token = await ctx.create_token(timeout="7d")
    answer = await ctx.wait_for_token(token)
    await ctx.sleep("1d")
    return [*done, str(answer.ok), await ship(payload["order"])]


async def v2_swapped(payload: dict[str, int], ctx: flowq.Context) -> list[str]:
    """Charges before reserving: incompatible with histories of v1."""
    done = [await charge(payload["order"]), await reserve(payload["order"])]
    token = await ctx.create_token(timeout="7d")
    answer = await ctx.wait_for_token(token)
    await ctx.sleep("1d")
    return [*done, str(answer.ok), await ship(payload["order"])]


async def v3_patched(payload: dict[str, int], ctx: flowq.Context) -> list[str]:
    """The swap, guarded: jobs that already passed this point keep the old order."""
    if await ctx.patched("charge-first"):
        done = [await charge(payload["order"]), await reserve(payload["order"])]
    else:
        done = [await reserve(payload["order"]), await charge(payload["order"])]
    token = await ctx.create_token(timeout="7d")
    answer = await ctx.wait_for_token(token)
    await ctx.sleep("1d")
    return [*done, str(answer.ok), await ship(payload["order"])]


def as_workflow(handler: Any) -> flowq.Workflow[Any, Any]:
    """The handler registered as workflow "orders" (each version under the same name)."""
    return flowq.Registry().workflow(name="orders")(handler)


async def exported(database_url: str | None, clock: FakeClock, *, finish: bool) -> str:
    """A v1 job's history: parked on its approval (or, with ``finish``, completed)."""
    workflow = as_workflow(v1)
    async with WorkflowEnvironment([workflow], store=database_url, clock=clock) as env:
        job_id = await env.start(workflow, {"order": 7})
        await env.run_until_idle()
        if finish:
            [token] = await env.tokens(job_id)
            await env.complete_token(token, {"approved": True})
            assert await env.result(job_id) == ["r7", "c7", "True", "s7"]
        return await env.export_job(job_id)


async def test_an_export_holds_the_job_its_calls_tokens_and_events(
    database_url: str | None, clock: FakeClock
) -> None:
    """The document is versioned JSON with every recorded call, in order."""
    document = json.loads(await exported(database_url, clock, finish=True))
    assert (document["format"], document["version"]) == (HISTORY_FORMAT, HISTORY_VERSION)
    assert document["job"]["workflow"] == "orders" and document["job"]["status"] == "completed"
    assert document["job"]["payload"] == {"order": 7} and document["job"]["output"][0] == "r7"
    assert [s["name"] for s in document["steps"]] == [
        "reserve", "charge", "@token", "@wait_token", "@timer", "ship",
    ]  # fmt: skip
    assert document["steps"][0]["output"] == "r7"
    [token] = document["tokens"]
    assert token["status"] == "completed" and token["output"] == {"approved": True}
    assert document["events"][0]["event_type"] == "added"


async def test_unchanged_code_replays_without_running_anything(
    database_url: str | None, clock: FakeClock
) -> None:
    """A waiting job and a completed one replay to their end; no step body runs."""
    waiting = await exported(database_url, clock, finish=False)
    completed = await exported(database_url, clock, finish=True)
    bodies.clear()
    paused = await replay(waiting, as_workflow(v1))
    assert (paused.ended, paused.replayed) == ("history end", 3)
    finished = await replay(completed, as_workflow(v1))
    assert (finished.ended, finished.replayed) == ("returned", 6)
    assert bodies == {}


async def test_swapped_steps_are_reported_at_their_position(
    database_url: str | None, clock: FakeClock
) -> None:
    """Charging before reserving: NonDeterminismError naming job, position 0, the
    recorded and the called step; guarded by ctx.patched, the same change passes."""
    history = await exported(database_url, clock, finish=False)
    job_id = json.loads(history)["job"]["id"]
    bodies.clear()
    with pytest.raises(flowq.NonDeterminismError) as raised:
        await replay(history, as_workflow(v2_swapped))
    message = str(raised.value)
    assert f"job {job_id}" in message and "position 0" in message
    assert "'reserve'" in message and "'charge'" in message
    assert (await replay(history, as_workflow(v3_patched))).ended == "history end"
    assert bodies == {}


async def test_what_is_not_a_history_is_refused(clock: FakeClock) -> None:
    """Garbage, another format or version, or another workflow: ValidationError."""
    history = await exported(None, clock, finish=False)
    with pytest.raises(flowq.ValidationError, match="not a flowq job history"):
        await replay("{}", as_workflow(v1))
    wrong_version = {**json.loads(history), "version": 99}
    with pytest.raises(flowq.ValidationError, match="version 99"):
        await replay(msgspec.json.encode(wrong_version), as_workflow(v1))
    other = flowq.Registry().workflow(name="other")(v1)
    with pytest.raises(flowq.ValidationError, match="of workflow 'orders', not 'other'"):
        await replay(history, other)
    with pytest.raises(flowq.ValidationError, match="there is no job 999"):
        await WorkflowEnvironment(clock=clock).export_job(999)
