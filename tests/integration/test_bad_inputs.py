"""Every bad input is refused with a flowq error naming the bad thing, and nothing is
written: the same table on memory, SQLite and PostgreSQL (issue 7, item 6)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import flowq
from flowq import DependsOn, JobSpec, RetryPolicy, TagQuery

pytestmark = pytest.mark.anyio

BIG = 2**70
LATE = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))
EARLY = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=14)))


def nested(depth: int) -> Any:
    """A value ``depth`` lists deep."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@dataclass(frozen=True)
class Case:
    """One bad input: what to call, the error expected and a pattern its message holds."""

    name: str
    call: Callable[[flowq.App, int], Awaitable[Any] | Any]
    error: type[flowq.FlowqError]
    names: str


def add(**options: Any) -> Callable[[flowq.App, int], Awaitable[Any]]:
    """Add a job of the test workflow with ``options``."""
    return lambda app, _job: app.add_job("wf", {"n": 1}, **options)


def payload(value: Any) -> Callable[[flowq.App, int], Awaitable[Any]]:
    """Add a job of the test workflow with ``value`` as its payload."""
    return lambda app, _job: app.add_job("wf", value)


def edit(**changes: Any) -> Callable[[flowq.App, int], Awaitable[Any]]:
    """Edit the pending job with ``changes``."""
    return lambda app, job: app.edit_job(job, **changes)


V = flowq.ValidationError
S = flowq.SerializationError

CASES = [
    # durations and instants that overflow
    Case("delay=1e20", add(delay=1e20), V, "delay"),
    Case("delay=99999999999d", add(delay="99999999999d"), V, "delay"),
    Case("delay=timedelta.max", add(delay=timedelta.max), V, "delay"),
    Case("timeout=1e15", add(timeout=1e15), V, "timeout"),
    Case("timeout=timedelta.max", add(timeout=timedelta.max), V, "timeout"),
    Case("retry_delay=timedelta.max", add(retry_delay=timedelta.max), V, "retry delay"),
    Case("retry_delay_max=timedelta.max", add(retry_delay_max=timedelta.max), V, "max delay"),
    Case("run_at=9999 at -14h", add(run_at=LATE), V, "run_at"),
    Case("run_at=year 1 at +14h", add(run_at=EARLY), V, "run_at"),
    Case("edit timeout=timedelta.max", edit(timeout=timedelta.max), V, "timeout"),
    Case("edit delay=1e20", edit(delay=1e20), V, "delay"),
    Case("edit run_at=9999 at -14h", edit(run_at=LATE), V, "run_at"),
    Case("get_jobs run_at 9999", lambda a, _: a.get_jobs(run_at={"lt": LATE}), V, "run_at"),
    Case("reclaim_stuck_jobs(inf)", lambda a, _: a.reclaim_stuck_jobs(math.inf), V, "minutes"),
    Case("reclaim_stuck_jobs(nan)", lambda a, _: a.reclaim_stuck_jobs(math.nan), V, "minutes"),
    Case("cleanup_old_jobs(1e12)", lambda a, _: a.cleanup_old_jobs(1e12), V, "days"),
    Case("cleanup_old_job_events(1e12)", lambda a, _: a.cleanup_old_job_events(1e12), V, "days"),
    Case("create_token(timeout=1e20)", lambda a, _: a.create_token(timeout=1e20), V, "timeout"),
    Case("result(timeout=1e20)", lambda a, job: a.result(job, timeout=1e20), V, "timeout"),
    # payloads that encode but would not decode, or would change
    Case("payload nested 1000", payload(nested(1000)), S, "nest"),
    Case("payload nested 950", payload(nested(950)), S, "nest"),
    Case("payload nested 300", payload(nested(300)), S, "nest"),
    Case("payload NaN", payload({"x": math.nan}), S, "NaN"),
    Case("payload inf", payload([1.0, -math.inf]), S, "NaN"),
    Case("edit payload NaN", edit(payload={"x": math.inf}), S, "NaN"),
    # integers too large for the columns
    Case("get_job(2**70)", lambda a, _: a.get_job(BIG), V, "job id"),
    Case("cancel_job(2**70)", lambda a, _: a.cancel_job(BIG), V, "job id"),
    Case("get_jobs(limit=2**70)", lambda a, _: a.get_jobs(limit=BIG), V, "limit"),
    Case("get_jobs(cursor=2**70)", lambda a, _: a.get_jobs(cursor=BIG), V, "job id"),
    Case("get_jobs(priority=2**70)", lambda a, _: a.get_jobs(priority=BIG), V, "priority"),
    Case("priority=2**70", add(priority=BIG), V, "priority"),
    Case("max_attempts=2**70", add(max_attempts=BIG), V, "max_attempts"),
    Case("depends_on=[2**70]", add(depends_on=[BIG]), flowq.DependencyError, "depends_on"),
    Case("edit priority=2**70", edit(priority=BIG), V, "priority"),
    # wrong types
    Case("get_token(123)", lambda a, _: a.get_token(123), V, "token id"),
    Case("complete_token(123)", lambda a, _: a.complete_token(123), V, "token id"),
    Case("add_jobs(5)", lambda a, _: a.add_jobs(5), V, "add_jobs"),
    Case("add_jobs('ab')", lambda a, _: a.add_jobs("ab"), V, "add_jobs"),
    Case("add_jobs([5])", lambda a, _: a.add_jobs([5]), V, "add_jobs"),
    Case("create_worker(bogus=1)", lambda a, _: a.create_worker(bogus=1), V, "bogus"),
    Case("create_supervisor(bogus=1)", lambda a, _: a.create_supervisor(bogus=1), V, "bogus"),
    Case(
        "create_worker(workflows='ok')",
        lambda a, _: a.create_worker(workflows="ok"),
        V,
        "workflows",
    ),
    Case("retry_backoff='no'", add(retry_backoff="no"), V, "retry_backoff"),
    Case(
        "force_kill_on_timeout='false'",
        add(force_kill_on_timeout="false"),
        V,
        "force_kill_on_timeout",
    ),
    Case("edit force_kill_on_timeout=1", edit(force_kill_on_timeout=1), V, "force_kill_on_timeout"),
    Case("RetryPolicy(backoff='no')", lambda a, _: RetryPolicy(backoff="no"), V, "backoff"),  # type: ignore[arg-type]
    Case("RetryPolicy(jitter=0)", lambda a, _: RetryPolicy(jitter=0), V, "jitter"),  # type: ignore[arg-type]
    # NUL characters and lone surrogates, everywhere
    Case("payload NUL", payload({"x": "a\x00b"}), S, "NUL"),
    Case("payload NUL key", payload({"a\x00": 1}), S, "NUL"),
    Case("payload surrogate", payload({"x": "\udc80"}), S, "surrogate"),
    Case("tags NUL", add(tags=["a\x00"]), V, "NUL"),
    Case("tags surrogate", add(tags=["\ud800"]), V, "surrogate"),
    Case("idempotency_key NUL", add(idempotency_key="k\x00"), V, "idempotency_key.*NUL"),
    Case("idempotency_key surrogate", add(idempotency_key="\udfff"), V, "idempotency_key"),
    Case("group NUL", add(group="g\x00"), V, "group.*NUL"),
    Case("depends_on tags NUL", add(depends_on=DependsOn(tags=["t\x00"])), V, "NUL"),
    Case("edit tags surrogate", edit(tags=["\udc80"]), V, "surrogate"),
    Case("edit group NUL", edit(group="\x00"), V, "group"),
    Case("get_jobs tags NUL", lambda a, _: a.get_jobs(tags=["\x00"]), V, "NUL"),
    Case(
        "TagQuery surrogate",
        lambda a, _: a.get_jobs(tags=TagQuery("\udc80", "any")),
        V,
        "surrogate",
    ),
    Case("get_jobs workflow NUL", lambda a, _: a.get_jobs(workflow="w\x00"), V, "workflow"),
    Case("add_job workflow NUL", lambda a, _: a.add_job("w\x00"), V, "w"),
    Case("create_token tags NUL", lambda a, _: a.create_token(tags=["\x00"]), V, "NUL"),
    Case(
        "create_token tags surrogate", lambda a, _: a.create_token(tags=["\udc80"]), V, "surrogate"
    ),
    Case("get_token NUL", lambda a, _: a.get_token("t\x00"), V, "token id"),
    Case("get_token surrogate", lambda a, _: a.get_token("\udc80"), V, "token id"),
    Case("complete_token NUL id", lambda a, _: a.complete_token("t\x00"), V, "token id"),
    Case("complete_token surrogate id", lambda a, _: a.complete_token("\udc80", 1), V, "token id"),
    Case(
        "create_worker(worker_id NUL)",
        lambda a, _: a.create_worker(worker_id="w\x00"),
        V,
        "worker_id",
    ),
    Case(
        "add_jobs spec NUL key",
        lambda a, _: a.add_jobs([JobSpec("wf", {}, idempotency_key="\x00")]),
        V,
        "NUL",
    ),
]


async def _snapshot(app: flowq.App) -> list[Any]:
    """Every job with its events: what a refused call must leave untouched."""
    jobs = await app.get_jobs(limit=None)
    return [(job, await app.get_job_events(job.id)) for job in jobs]


async def _invoke(case: Case, app: flowq.App, job_id: int) -> None:
    result = case.call(app, job_id)
    if isinstance(result, Awaitable):
        await result


@pytest.fixture
def workflow(registry: flowq.Registry) -> None:
    """The test workflow, ``wf``."""

    @registry.workflow(name="wf")
    async def wf(payload: Any) -> None:
        return None


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_bad_input_is_refused_and_nothing_is_written(
    app: flowq.App, workflow: None, case: Case
) -> None:
    """The call raises the case's FlowqError subclass naming the bad value; every job
    and event is as before."""
    job_id = await app.add_job("wf", {"n": 0}, tags=["t"])
    before = await _snapshot(app)
    with pytest.raises(case.error, match=case.names) as raised:
        await _invoke(case, app, job_id)
    assert isinstance(raised.value, flowq.FlowqError)
    assert await _snapshot(app) == before


async def test_a_refused_token_output_leaves_the_token_waiting(app: flowq.App) -> None:
    """complete_token with NaN, NUL or a surrogate in the output raises
    SerializationError and the token is still waiting, its output unset."""
    token = await app.create_token()
    for output in ({"x": math.nan}, {"x": "\x00"}, ["\udc80"], nested(400)):
        with pytest.raises(flowq.SerializationError, match=f"token {token.id!r}"):
            await app.complete_token(token.id, output)
    assert await app.get_token(token.id) == token


async def test_the_largest_accepted_values_round_trip(app: flowq.App, workflow: None) -> None:
    """At the limits (nesting 256, a duration of 100 years, run_at in year 9999 UTC,
    64-bit ids, 32-bit priorities) values are stored and read back unchanged."""
    text = 'tab\t, quote ", backslash \\u0000, emoji \U0001f600'
    job_id = await app.add_job(
        "wf",
        {"deep": nested(254), "text": text},
        timeout=timedelta(days=36_500),
        priority=2**31 - 1,
        run_at=datetime(9999, 12, 31, tzinfo=UTC),
        retry_delay_max=timedelta(days=36_500),
        tags=[text],
    )
    job = await app.get_job(job_id)
    assert job is not None
    assert job.payload == {"deep": nested(254), "text": text}
    assert job.timeout == timedelta(days=36_500) and job.priority == 2**31 - 1
    assert job.run_at == datetime(9999, 12, 31, tzinfo=UTC) and job.tags == (text,)
    assert await app.get_job(2**63 - 1) is None


@pytest.mark.parametrize("name", ["a\x00b", "\udc80"])
def test_a_workflow_name_with_nul_or_a_surrogate_is_refused(name: str) -> None:
    """Registering a workflow under such a name raises ValidationError naming it."""
    registry = flowq.Registry()
    with pytest.raises(flowq.ValidationError, match="workflow name"):
        registry.workflow(name=name)(lambda payload: None)
    assert registry.names() == []
