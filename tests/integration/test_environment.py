"""flowq_testing.WorkflowEnvironment: the real engine under a fake clock, on every store."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

import flowq
from flowq import JobStatus
from flowq_testing import (
    FakeClock,
    JobNotFinishedError,
    TimeSkipLimitError,
    WorkflowEnvironment,
)

pytestmark = pytest.mark.anyio

sent: Counter[str] = Counter()


@flowq.step
async def create_account(user: str) -> str:
    """Creates the account (counted)."""
    sent[f"account {user}"] += 1
    return f"acct-{user}"


@flowq.step
async def send_reminder(user: str, week: int) -> int:
    """Sends one weekly reminder (counted)."""
    sent[f"reminder {user}"] += 1
    return week


async def onboarding(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, Any]:
    """30 days: an account, a day's wait, an approval with a 24 h timeout, four weekly
    reminders."""
    account = await create_account(payload["user"])
    await ctx.sleep("24h")
    token = await ctx.create_token(timeout="24h", tags=["approval"])
    decision = await ctx.wait_for_token(token)
    for week in range(4):
        await ctx.sleep("7d")
        await send_reminder(payload["user"], week)
    return {"account": account, "approved": decision.ok, "error": decision.error}


@pytest.fixture
async def env(database_url: str | None, clock: FakeClock) -> AsyncIterator[WorkflowEnvironment]:
    """An environment on each kind of store, running ``onboarding``."""
    registry = flowq.Registry()
    registry.workflow(name="onboarding")(onboarding)
    sent.clear()
    async with WorkflowEnvironment(registry=registry, store=database_url, clock=clock) as env:
        yield env


async def test_a_30_day_onboarding_runs_in_one_idle_run_and_one_advance(
    env: WorkflowEnvironment, clock: FakeClock
) -> None:
    """run_until_idle skips the day's sleep but stops at the token (its timeout comes
    only with advance); advancing past the timeout resumes it with ok=False and the
    weekly sleeps are skipped: done 30 days later, each step run once."""
    start = clock.now()
    job_id = await env.start(env.registry.require("onboarding"), {"user": "ada"})
    await env.run_until_idle()
    job = await env.job(job_id)
    assert (job.status, clock.now()) == (JobStatus.WAITING, start + timedelta(days=1))
    [token] = await env.tokens(job_id, status="waiting")
    assert token.tags == ("approval",)

    await env.advance("25h")
    await env.run_until_idle()
    result = await env.result(job_id)
    assert result["account"] == "acct-ada" and result["approved"] is False
    assert "timed out" in result["error"]
    assert clock.now() == start + timedelta(days=30)
    assert sent == {"account ada": 1, "reminder ada": 4}
    names = [step.name for step in await env.steps(job_id)]
    assert names == [
        create_account.name, "@timer", "@token", "@wait_token",
        "@timer", send_reminder.name, "@timer", send_reminder.name,
        "@timer", send_reminder.name, "@timer", send_reminder.name,
    ]  # fmt: skip
    events = [e.event_type.value for e in await env.events(job_id)]
    assert events[0] == "added" and events[-1] == "completed"
    assert events.count("waiting") == 6 and events.count("processing") == 7


async def test_a_token_holds_until_the_test_completes_it(
    env: WorkflowEnvironment, clock: FakeClock
) -> None:
    """run_until_idle never times a token out; completing it resumes the job with
    ok=True, before the timeout."""
    job_id = await env.start(env.registry.require("onboarding"), {"user": "bo"})
    for _ in range(3):
        await env.run_until_idle()
    with pytest.raises(JobNotFinishedError, match="waiting"):
        await env.result(job_id)
    [token] = await env.tokens(job_id)
    await env.complete_token(token, {"approved": True})
    assert (await env.result(job_id))["approved"] is True


async def test_mocked_steps_are_recorded_and_replayed(clock: FakeClock) -> None:
    """A replacement runs once per call, never on replay; a return_value mock and an
    unmocked step run as declared."""
    calls: list[str] = []

    @flowq.step
    async def charge(amount: int) -> str:
        raise AssertionError("the real charge must not run")

    @flowq.step
    async def notify(who: str) -> str:
        raise AssertionError("mocked by return_value")

    @flowq.step
    async def audit(entry: str) -> str:
        calls.append(f"audit {entry}")
        return entry

    registry = flowq.Registry()

    @registry.workflow(name="pay")
    async def pay(payload: dict[str, int], ctx: flowq.Context) -> list[str]:
        charged = await charge(payload["amount"])
        await ctx.sleep("1h")
        return [charged, await notify("ada"), await audit(charged)]

    def fake_charge(amount: int) -> str:
        calls.append(f"charge {amount}")
        return f"ch_{amount}"

    async with WorkflowEnvironment([pay], clock=clock) as env:
        env.mock_step(charge, fake_charge)
        env.mock_step(notify.name, return_value="sent")
        job_id = await env.start(pay, {"amount": 5})
        assert await env.result(job_id) == ["ch_5", "sent", "ch_5"]
    assert calls == ["charge 5", "audit ch_5"]


async def test_an_endless_loop_of_waits_is_stopped(clock: FakeClock) -> None:
    """A workflow that sleeps forever in a loop ends run_until_idle with a clear error
    after the bound the test set."""
    registry = flowq.Registry()

    @registry.workflow(name="forever")
    async def forever(payload: dict[str, Any], ctx: flowq.Context) -> None:
        while True:
            await ctx.sleep("1h")

    async with WorkflowEnvironment(registry=registry, clock=clock, max_time_skips=5) as env:
        job_id = await env.start(forever, {})
        with pytest.raises(TimeSkipLimitError, match=rf"5 times and jobs \[{job_id}\]"):
            await env.run_until_idle()


async def test_advance_runs_what_comes_due_in_time_order(clock: FakeClock) -> None:
    """A 3-day advance runs a daily loop on each day, not all at the end."""
    start = clock.now()
    seen: list[int] = []

    @flowq.step
    async def note_day() -> int:
        seen.append((clock.now() - start).days)
        return seen[-1]

    registry = flowq.Registry()

    @registry.workflow(name="daily")
    async def daily(payload: dict[str, Any], ctx: flowq.Context) -> None:
        for _ in range(3):
            await ctx.sleep("1d")
            await note_day()

    async with WorkflowEnvironment(registry=registry, clock=clock) as env:
        await env.start(daily, {})
        await env.advance(timedelta(days=3))
    assert seen == [1, 2, 3]


async def test_advancing_across_a_schedule_runs_each_tick_once_at_its_time(
    database_url: str | None, clock: FakeClock
) -> None:
    """A workflow declared with @schedule and passed by object: advancing 3 hours and
    10 minutes runs its hourly tick three times, each at its tick, never twice."""
    start = clock.now()
    ran_at: list[timedelta] = []
    declaring = flowq.Registry()

    @declaring.schedule("0 * * * *", name="hourly-report")
    @declaring.workflow(name="report")
    async def report(payload: None) -> None:
        ran_at.append(clock.now() - start)

    async with WorkflowEnvironment([report], store=database_url, clock=clock) as env:
        await env.run_until_idle()
        assert ran_at == []  # ticks come due only through advance
        await env.advance(timedelta(hours=3, minutes=10))
        jobs = await env.jobs()
    assert ran_at == [timedelta(hours=1), timedelta(hours=2), timedelta(hours=3)]
    assert sorted(job.run_at - start for job in jobs) == ran_at
    assert {job.status for job in jobs} == {JobStatus.COMPLETED}
