"""The replay engine with real workers: steps, waits, tokens, children, determinism."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import msgspec
import pytest

import flowq
from flowq import JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio


class Profile(msgspec.Struct):
    """A typed step result."""

    user_id: int
    email: str


@pytest.fixture
def clock() -> FakeClock:
    """Time moves only when a test moves it."""
    return FakeClock(datetime(2030, 1, 31, 12, tzinfo=UTC))


async def run(app: flowq.App) -> None:
    """Run everything runnable now."""
    await app.create_worker().run_until_idle()


async def job_of(app: flowq.App, job_id: int) -> flowq.Job:
    """The job, which must exist."""
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def test_a_step_runs_once_across_a_wait(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """s1, wait 1h, s2: s1's body ran once, the handler twice, one attempt, completed."""
    ran: Counter[str] = Counter()

    @flowq.step
    async def s1(x: int) -> int:
        ran["s1"] += 1
        return x + 1

    @flowq.step
    async def s2(x: int) -> int:
        ran["s2"] += 1
        return x * 10

    @registry.workflow(name="two_steps", max_attempts=1)
    async def two_steps(payload: dict[str, int], ctx: flowq.Context) -> int:
        ran["handler"] += 1
        a = await s1(payload["x"])
        await ctx.sleep(timedelta(hours=1))
        return await s2(a)

    job_id = await app.start(two_steps, {"x": 1})
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.WAITING and job.wait_until == clock.now() + timedelta(hours=1)
    await run(app)
    assert (await job_of(app, job_id)).status is JobStatus.WAITING  # not due yet
    clock.advance(timedelta(hours=1))
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.COMPLETED and job.output == 20 and job.attempts == 1
    assert ran == {"s1": 1, "s2": 1, "handler": 2}
    names = [step.name for step in await app.get_job_steps(job_id)]
    assert names == [s1.name, "@timer", s2.name]


async def test_three_waits_four_runs_one_attempt(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A max_attempts=1 job with three waits completes across four runs of its handler."""
    runs = 0

    @registry.workflow(name="waits", max_attempts=1)
    async def waits(payload: dict[str, Any], ctx: flowq.Context) -> str:
        nonlocal runs
        runs += 1
        await ctx.sleep("10m")
        await ctx.wait_for(hours=1, minutes=30)
        await ctx.wait_until(datetime(2030, 3, 1, tzinfo=UTC))
        return "done"

    job_id = await app.start(waits, {})
    for advance in (timedelta(minutes=10), timedelta(hours=1, minutes=30), timedelta(days=40)):
        await run(app)
        assert (await job_of(app, job_id)).status is JobStatus.WAITING
        clock.advance(advance)
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 1 and runs == 4
    events = [event.event_type.value for event in await app.get_job_events(job_id)]
    assert events.count("waiting") == 3 and events.count("processing") == 4


async def test_gathered_steps_replay_in_call_order(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """gather of three steps, a wait, a replay: each body ran once; results in call order."""
    ran: Counter[str] = Counter()
    c_finished = anyio.Event()

    @flowq.step
    async def fetch(name: str) -> str:
        ran[name] += 1
        if name == "a":
            await c_finished.wait()  # "a" finishes after "c": out of call order
        if name == "c":
            c_finished.set()
        return name.upper()

    @registry.workflow(name="fan_out")
    async def fan_out(payload: dict[str, Any], ctx: flowq.Context) -> list[str]:
        results = await asyncio.gather(fetch("a"), fetch("b"), fetch("c"))
        await ctx.sleep("1h")
        return list(results)

    job_id = await app.start(fan_out, {})
    await run(app)
    clock.advance(timedelta(hours=1))
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.COMPLETED and job.output == ["A", "B", "C"]
    assert ran == {"a": 1, "b": 1, "c": 1}
    assert [step.output for step in await app.get_job_steps(job_id)][:3] == ["A", "B", "C"]


async def test_reordered_steps_fail_with_nondeterminism(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Swapping two steps while a job waits fails it on resume, naming job and steps."""

    @flowq.step(name="charge")
    async def charge(payload: dict[str, Any]) -> str:
        return "charged"

    @flowq.step(name="ship")
    async def ship(payload: dict[str, Any]) -> str:
        return "shipped"

    order = ["charge", "ship"]
    steps = {"charge": charge, "ship": ship}

    @registry.workflow(name="order_flow", max_attempts=3)
    async def order_flow(payload: dict[str, Any], ctx: flowq.Context) -> None:
        await ctx.sleep("1h")
        for name in order:
            await steps[name](payload)
        await ctx.sleep("1h")

    job_id = await app.start(order_flow, {})
    await run(app)
    clock.advance(timedelta(hours=1))
    await run(app)
    order.reverse()  # a deploy changed the code while the job waits
    clock.advance(timedelta(hours=1))
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.FAILED and job.next_attempt_at is None
    assert job.failure_reason is flowq.FailureReason.NONDETERMINISM
    message = job.error_history[-1].message
    assert f"job {job_id}" in message and "position 1" in message
    assert "'ship'" in message and "'charge'" in message


async def test_patched_keeps_old_jobs_on_the_old_path(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """ctx.patched is False for a job that passed the point before the change, True after."""
    deployed = {"change": False}
    paths: dict[int, str] = {}

    @flowq.step(name="old_email")
    async def old_email() -> str:
        return "old"

    @flowq.step(name="new_email")
    async def new_email() -> str:
        return "new"

    @registry.workflow(name="mailer")
    async def mailer(payload: dict[str, Any], ctx: flowq.Context) -> str:
        if deployed["change"] and await ctx.patched("html-email"):
            sent = await new_email()
        else:
            sent = await old_email()
        await ctx.sleep("1h")
        paths[ctx.job.id] = sent
        return sent

    old_job = await app.start(mailer, {})
    await run(app)
    deployed["change"] = True
    new_job = await app.start(mailer, {})
    await run(app)
    clock.advance(timedelta(hours=1))
    await run(app)
    assert paths == {old_job: "old", new_job: "new"}
    assert (await job_of(app, old_job)).status is JobStatus.COMPLETED


async def test_tokens_complete_or_time_out(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A completed token gives ok=True with its output; an expired one ok=False; late
    completion raises TokenError and changes nothing."""
    tokens: dict[str, str] = {}

    @registry.workflow(name="approval", max_attempts=1)
    async def approval(payload: dict[str, str], ctx: flowq.Context) -> dict[str, Any]:
        token = await ctx.create_token(timeout="48h", tags=["approval"])
        tokens[payload["who"]] = token.id
        result = await ctx.wait_for_token(token)
        return {"ok": result.ok, "output": result.output, "error": result.error}

    answered = await app.start(approval, {"who": "alice"})
    ignored = await app.start(approval, {"who": "bob"})
    await run(app)
    assert (await job_of(app, answered)).status is JobStatus.WAITING
    await app.complete_token(tokens["alice"], {"approved": True})
    await run(app)
    assert (await job_of(app, answered)).output == {
        "ok": True, "output": {"approved": True}, "error": None,
    }  # fmt: skip
    clock.advance(timedelta(hours=49))
    assert await app.expire_timed_out_tokens() == 1
    await run(app)
    job = await job_of(app, ignored)
    assert job.status is JobStatus.COMPLETED and job.output["ok"] is False
    assert "timed out" in job.output["error"]
    events_before = await app.get_job_events(ignored)
    with pytest.raises(flowq.TokenError, match="timed out"):
        await app.complete_token(tokens["bob"], {"approved": True})
    assert await app.get_job_events(ignored) == events_before


async def test_a_token_times_out_by_the_workers_own_timer(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Without expire_timed_out_tokens, the job wakes at the token's deadline by itself."""

    @registry.workflow(name="await_reply")
    async def await_reply(payload: dict[str, Any], ctx: flowq.Context) -> bool:
        token = await ctx.create_token(timeout="1h")
        return (await ctx.wait_for_token(token)).ok

    job_id = await app.start(await_reply, {})
    await run(app)
    job = await job_of(app, job_id)
    assert job.wait_until == clock.now() + timedelta(hours=1) and job.wait_token_id
    clock.advance(timedelta(hours=1))
    await run(app)
    assert (await job_of(app, job_id)).output is False
    token = await app.get_token(job.wait_token_id)
    assert token is not None and token.status is flowq.TokenStatus.TIMED_OUT


async def test_failed_step_reruns_in_the_next_attempt_only(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A step failing after its retries fails the attempt; the next attempt replays the
    completed steps and re-runs only the failed one."""
    ran: Counter[str] = Counter()

    @flowq.step
    async def reserve_seat() -> str:
        ran["reserve"] += 1
        return "seat-12"

    @flowq.step(retries=2, retry=flowq.RetryPolicy("1ms", jitter=False))
    async def pay(seat: str) -> str:
        ran["pay"] += 1
        if ran["pay"] <= 3:
            raise ConnectionError("gateway down")
        return f"paid {seat}"

    @registry.workflow(name="booking", max_attempts=2)
    async def booking(payload: dict[str, Any]) -> str:
        seat = await reserve_seat()
        return await pay(seat)

    job_id = await app.start(booking, {})
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.FAILED and ran == {"reserve": 1, "pay": 3}
    assert job.error_history[0].type == "ConnectionError"
    steps = await app.get_job_steps(job_id)
    assert steps[1].error == {"message": "gateway down", "type": "ConnectionError"}
    clock.advance(timedelta(hours=2))
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.COMPLETED and job.output == "paid seat-12"
    assert ran == {"reserve": 1, "pay": 4} and job.attempts == 2


async def test_a_caught_step_failure_replays_as_its_own_type(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """except ValueError around a failing step, then a wait: on resume the replayed
    failure is a ValueError again, so the same except catches it; the step ran once."""
    ran: Counter[str] = Counter()
    caught: list[str] = []
    notes: list[list[str]] = []

    @flowq.step(name="parse_amount")
    async def parse_amount(text: str) -> int:
        ran["parse_amount"] += 1
        return int(text)

    @registry.workflow(name="lenient", max_attempts=1)
    async def lenient(payload: dict[str, Any], ctx: flowq.Context) -> int:
        try:
            amount = await parse_amount(payload["amount"])
        except ValueError as exc:
            caught.append(f"{type(exc).__name__}: {exc}")
            notes.append(getattr(exc, "__notes__", []))
            amount = 0
        await ctx.sleep("5m")
        return amount

    job_id = await app.start(lenient, {"amount": "ten"})
    await run(app)
    assert (await job_of(app, job_id)).status is JobStatus.WAITING
    clock.advance(timedelta(minutes=5))
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.COMPLETED and job.output == 0 and job.attempts == 1
    assert ran["parse_amount"] == 1
    assert caught == ["ValueError: invalid literal for int() with base 10: 'ten'"] * 2
    assert notes[0] == [] and len(notes[1]) == 1
    assert notes[1][0].startswith("flowq: replayed: step 'parse_amount' failed")


class QuotaExceeded(Exception):
    """A user's error with two arguments, importable from this module."""

    def __init__(self, account: str, limit: int) -> None:
        super().__init__(account, limit)
        self.account = account
        self.limit = limit

    def __str__(self) -> str:
        return f"{self.account} is over its quota of {self.limit}"


async def test_a_user_exception_replays_with_its_arguments(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A user-defined exception class from an importable module is rebuilt from its
    recorded args: same class, same attributes, same message."""
    seen: list[tuple[str, str, int, str]] = []

    @flowq.step(name="reserve_quota")
    async def reserve_quota(account: str) -> None:
        raise QuotaExceeded(account, 3)

    @registry.workflow(name="quota_flow", max_attempts=1)
    async def quota_flow(payload: dict[str, Any], ctx: flowq.Context) -> str:
        try:
            await reserve_quota(payload["account"])
        except QuotaExceeded as exc:
            seen.append((type(exc).__qualname__, exc.account, exc.limit, str(exc)))
        await ctx.sleep("1h")
        return "queued"

    job_id = await app.start(quota_flow, {"account": "acme"})
    await run(app)
    clock.advance(timedelta(hours=1))
    await run(app)
    assert (await job_of(app, job_id)).status is JobStatus.COMPLETED
    assert seen == [("QuotaExceeded", "acme", 3, "acme is over its quota of 3")] * 2
    recorded = (await app.get_job_steps(job_id))[0].error
    assert recorded == {
        "message": "acme is over its quota of 3",
        "type": f"{__name__}.QuotaExceeded",
        "args": ["acme", 3],
    }


async def test_a_failure_that_cannot_be_rebuilt_replays_as_step_error(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """An exception class defined inside a function cannot be imported: the replay
    raises StepError carrying the type name and message; the step ran once."""
    ran: Counter[str] = Counter()
    seen: list[str] = []

    class LocalError(Exception):
        """Not importable: it lives in this function."""

    @flowq.step(name="probe")
    async def probe() -> None:
        ran["probe"] += 1
        raise LocalError("not found")

    @registry.workflow(name="tolerant")
    async def tolerant(payload: dict[str, Any], ctx: flowq.Context) -> str:
        try:
            await probe()
        except LocalError:
            seen.append("raised")
        except flowq.StepError as exc:
            seen.append(f"replayed {exc.step} {exc.error_type} {exc.message}")
        await ctx.sleep("5m")
        return "ok"

    job_id = await app.start(tolerant, {})
    await run(app)
    clock.advance(timedelta(minutes=5))
    await run(app)
    assert (await job_of(app, job_id)).status is JobStatus.COMPLETED
    type_name = f"{LocalError.__module__}.{LocalError.__qualname__}"
    assert ran["probe"] == 1 and seen == ["raised", f"replayed probe {type_name} not found"]


async def test_step_results_decode_to_their_annotation(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A replayed step returns its annotated type (a Struct here), as the first run did."""

    @flowq.step
    async def load_profile(user_id: int) -> Profile:
        return Profile(user_id, f"u{user_id}@example.com")

    kinds: list[str] = []

    @registry.workflow(name="typed_steps")
    async def typed_steps(payload: dict[str, int], ctx: flowq.Context) -> str:
        profile = await load_profile(payload["user_id"])
        kinds.append(type(profile).__name__)
        await ctx.sleep("1m")
        return profile.email

    job_id = await app.start(typed_steps, {"user_id": 7})
    await run(app)
    clock.advance(timedelta(minutes=1))
    await run(app)
    assert await app.result(job_id, timeout=10) == "u7@example.com"
    assert kinds == ["Profile", "Profile"]


async def test_unencodable_step_result_names_the_step(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A step returning something JSON cannot hold fails with SerializationError naming it."""

    @flowq.step(name="opens_a_socket")
    async def opens_a_socket() -> object:
        return object()

    @registry.workflow(name="bad_result", max_attempts=1)
    async def bad_result(payload: dict[str, Any]) -> None:
        await opens_a_socket()

    job_id = await app.start(bad_result, {})
    await run(app)
    job = await job_of(app, job_id)
    assert job.error_history[0].type == "flowq.errors.SerializationError"
    assert "opens_a_socket" in job.error_history[0].message


async def test_deterministic_values_are_recorded(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """ctx.now(), ctx.uuid(), ctx.random() and ctx.run() give the same values on replay."""
    seen: list[tuple[Any, ...]] = []
    calls = 0

    def side_effect(label: str) -> str:
        nonlocal calls
        calls += 1
        return f"{label}-{calls}"

    @registry.workflow(name="values")
    async def values(payload: dict[str, Any], ctx: flowq.Context) -> None:
        stamp = await ctx.now()
        ident = await ctx.uuid()
        number = await ctx.random()
        effect = await ctx.run("side_effect", side_effect, "x")
        seen.append((stamp, ident, number, effect))
        await ctx.sleep("1h")

    await app.start(values, {})
    await run(app)
    clock.advance(timedelta(hours=3))
    await run(app)
    assert len(seen) == 2 and seen[0] == seen[1] and calls == 1
    assert seen[0][0] == datetime(2030, 1, 31, 12, tzinfo=UTC)


async def test_children_start_once_and_their_result_comes_back(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """ctx.call starts a child once and waits (holding no slot) for its output."""

    @registry.workflow(name="square")
    async def square(payload: dict[str, int]) -> int:
        return payload["n"] ** 2

    @registry.workflow(name="fails", max_attempts=1)
    async def fails(payload: dict[str, int]) -> int:
        raise ValueError("child broke")

    @registry.workflow(name="parent")
    async def parent(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, Any]:
        total = await ctx.call(square, {"n": 3}) + await ctx.call(square, {"n": 4})
        try:
            await ctx.call(fails, {"n": 0})
        except flowq.JobFailedError as exc:
            return {"total": total, "child_error": exc.job.error_history[-1].message}
        return {"total": total}

    job_id = await app.start(parent, {})
    await run(app)
    job = await job_of(app, job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.output == {"total": 25, "child_error": "child broke"}
    children = [j for j in await app.get_jobs(limit=None) if j.parent_job_id == job_id]
    assert sorted(j.workflow for j in children) == ["fails", "square", "square"]


async def test_sync_workflows_cannot_use_durable_calls(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A sync workflow that calls a step or a wait fails with a clear ContextError."""

    @flowq.step
    async def anything() -> int:
        return 1

    @registry.workflow(name="sync_flow", max_attempts=1)
    def sync_flow(payload: dict[str, Any], ctx: flowq.Context) -> None:
        anything()

    job_id = await app.start(sync_flow, {})
    await run(app)
    job = await job_of(app, job_id)
    assert job.error_history[0].type == "flowq.errors.ContextError"
    assert "async def workflow" in job.error_history[0].message


async def test_steps_outside_a_job_are_plain_calls() -> None:
    """Outside a job a step simply runs (sync bodies in a thread): easy to unit-test."""

    @flowq.step
    async def add(a: int, b: int) -> int:
        return a + b

    @flowq.step
    def double(x: int) -> int:
        return 2 * x

    assert await add(2, 3) == 5
    assert await double(21) == 42
    with pytest.raises(flowq.ValidationError):
        flowq.step(retries=-1)(add.fn)
    with pytest.raises(flowq.ContextError):
        flowq.current_context()


async def test_steps_in_a_task_group_keep_their_positions(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Steps started in an anyio task group replay by call order, whatever finishes first."""
    ran: Counter[int] = Counter()
    results: dict[int, int] = {}
    finished = [anyio.Event() for _ in range(5)]

    @flowq.step(name="square")
    async def square(n: int) -> int:
        ran[n] += 1
        if n < 4:
            await finished[n + 1].wait()  # finish in reverse call order: 4, 3, 2, 1, 0
        finished[n].set()
        return n * n

    @registry.workflow(name="grouped_steps")
    async def grouped_steps(payload: dict[str, Any], ctx: flowq.Context) -> list[int]:
        async def one(n: int) -> None:
            results[n] = await square(n)

        async with anyio.create_task_group() as tasks:
            for n in range(5):
                tasks.start_soon(one, n)
        await ctx.sleep("1h")
        return [results[n] for n in range(5)]

    job_id = await app.start(grouped_steps, {})
    await run(app)
    clock.advance(timedelta(hours=1))
    await run(app)
    assert await app.result(job_id, timeout=10) == [0, 1, 4, 9, 16]
    assert ran == dict.fromkeys(range(5), 1)
    assert [step.output for step in await app.get_job_steps(job_id)][:5] == [0, 1, 4, 9, 16]


async def test_gathered_children_keep_their_results_apart(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """ctx.call takes its positions when called, so gathered children replay correctly."""

    @registry.workflow(name="label")
    async def label(payload: dict[str, str]) -> str:
        return payload["name"].upper()

    @registry.workflow(name="gather_children")
    async def gather_children(payload: dict[str, Any], ctx: flowq.Context) -> list[str]:
        names = ["ann", "bob", "cy"]
        return list(await asyncio.gather(*(ctx.call(label, {"name": n}) for n in names)))

    job_id = await app.start(gather_children, {})
    await run(app)
    assert await app.result(job_id, timeout=10) == ["ANN", "BOB", "CY"]


async def test_a_result_that_does_not_fit_its_annotation_is_not_run_again(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """A step returning a value its annotation rejects: the result is recorded and every
    attempt fails with SerializationError naming the step, without running the body
    again; once the annotation is fixed, a retry replays the recorded result."""
    calls = 0

    @flowq.step(name="answer")
    async def answer() -> int:
        nonlocal calls
        calls += 1
        return "forty-two"  # type: ignore[return-value]

    @flowq.step(name="answer")
    async def fixed_answer() -> str:
        raise AssertionError("a recorded result is replayed, the body never runs")

    deployed = {"step": answer}

    @registry.workflow(name="typed_answer", max_attempts=3, retry=flowq.RetryPolicy(1))
    async def typed_answer(payload: dict[str, Any]) -> Any:
        return await deployed["step"]()

    job_id = await app.start(typed_answer, {})
    for _ in range(3):
        await run(app)
        clock.advance(timedelta(hours=1))
    job = await job_of(app, job_id)
    assert (job.status, job.attempts, job.next_attempt_at) == (JobStatus.FAILED, 3, None)
    assert calls == 1, f"the body ran {calls} times"
    for error in job.error_history:
        assert error.type == "flowq.errors.SerializationError"
        assert "'answer'" in error.message and "annotation" in error.message
    [recorded] = await app.get_job_steps(job_id)
    assert (recorded.output, recorded.error) == ("forty-two", None)

    deployed["step"] = fixed_answer  # type: ignore[assignment]
    assert await app.retry_job(job_id)
    await run(app)
    assert await app.result(job_id, timeout=10) == "forty-two" and calls == 1
