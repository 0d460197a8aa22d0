"""Micro-benchmarks of flowq's pure hot parts (pytest-benchmark):

    pytest benchmarks/ --benchmark-only

They time code that runs for every job or every step, with no I/O: the codec, the
replay history's lookups, building a job from options, planning a batch of 1,000
jobs, a state-machine transition and the next tick of a cron expression. Each also
asserts its result, so a broken fast path fails instead of looking fast.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import pytest

import flowq
from flowq import codec, cron, current
from flowq.context import Context, JobInfo
from flowq.durable import Calls
from flowq.options import build_new_job
from flowq.replay import History, RecordedCall
from flowq.store import batch, rows, transitions
from flowq.store.base import Lease, Store
from flowq_testing import FakeClock

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
registry = flowq.Registry()


class Signup(msgspec.Struct):
    """A typed payload, as users declare them."""

    user_id: int
    email: str
    plan: str = "free"


@registry.workflow(name="micro.signup")
async def signup(payload: Signup) -> None:
    """The workflow jobs are built for."""


PAYLOAD = {"user_id": 42, "email": "ada@example.com", "plan": "pro", "tags": ["a", "b"] * 5}


def test_encode_a_payload(benchmark: Any) -> None:
    """Encoding a typed payload (every enqueue)."""
    payload = Signup(42, "ada@example.com", "pro")
    text = benchmark(codec.encode_payload, payload, Signup, workflow="micro.signup")
    assert msgspec.json.decode(text)["user_id"] == 42


def test_decode_a_payload_to_its_type(benchmark: Any) -> None:
    """Decoding a claimed job's payload to its annotation (every run)."""
    text = codec.encode(PAYLOAD, what="payload")
    decoded = benchmark(msgspec.json.decode, text, type=Signup)
    assert decoded.email == "ada@example.com"


def test_replay_lookups_of_1000_recorded_steps(benchmark: Any) -> None:
    """Reserving and reading back 1,000 recorded positions (a long replay)."""
    calls = [
        RecordedCall(
            seq=n, name=f"step{n % 7}", attempt=1, output="1", error=None,
            started_at=NOW, completed_at=NOW,
        )
        for n in range(1000)
    ]  # fmt: skip

    def replay() -> int:
        history = History(1, calls)
        found = 0
        for n in range(1000):
            found += history.recorded_at(history.reserve(f"step{n % 7}")) is not None
        return found

    assert benchmark(replay) == 1000


@flowq.step(name="micro.noop")
async def noop_step(n: int) -> int:
    """A recorded no-op step."""
    return n


class _HistoryOnly:
    """A store stand-in that only loads a history (a replay asks nothing else)."""

    def __init__(self, calls: list[RecordedCall]) -> None:
        self.calls = calls

    async def load_history(self, job_id: int) -> list[RecordedCall]:
        return list(self.calls)


def test_replay_of_1000_recorded_steps_through_ctx(benchmark: Any) -> None:
    """A resumed job re-running 1,000 recorded steps: each step call takes its position,
    gets its recorded result through ctx and decodes it (the history loaded on the
    first call, as after a claim); the database's part is not in it."""
    calls = [
        RecordedCall(
            seq=n, name="micro.noop", attempt=1, output=str(n), error=None,
            started_at=NOW, completed_at=NOW,
        )
        for n in range(1000)
    ]  # fmt: skip
    store = cast(Store, _HistoryOnly(calls))
    lease = Lease(1, 1, "w")
    info = JobInfo(id=1, workflow="w", attempt=1, max_attempts=1, tags=(), group=None)

    async def replay() -> int:
        durable = Calls(1, 1, lease, store, FakeClock(NOW), history_loaded=False)
        token = current.bind(Context(info, lease, store, durable))
        try:
            return sum([await noop_step(n) for n in range(1000)])
        finally:
            current.reset(token)

    loop = asyncio.new_event_loop()
    try:
        assert benchmark(lambda: loop.run_until_complete(replay())) == sum(range(1000))
    finally:
        loop.close()


def test_build_a_job_from_options(benchmark: Any) -> None:
    """Checking options and merging defaults (every enqueue)."""
    payload = Signup(1, "x@example.com")
    options: flowq.JobOptions = {"priority": 5, "tags": ["t"], "timeout": "5m", "retry_delay": 2}
    job = benchmark(build_new_job, signup, payload, options, NOW)
    assert (job.priority, job.tags) == (5, ("t",))


def test_plan_a_batch_of_1000_jobs(benchmark: Any) -> None:
    """Deciding ids and edges of an add_jobs batch of 1,000."""
    job = build_new_job(signup, Signup(1, "x@example.com"), {}, NOW)
    jobs = [job] * 1000
    plan = benchmark(lambda: batch.plan_batch(jobs, {}, {}, {}, itertools.count(1)))
    assert len(plan.ids) == 1000


def test_values_of_a_completion(benchmark: Any) -> None:
    """The column values of the COMPLETE transition (every finished job, memory store)."""
    row = rows.new_job_row(build_new_job(signup, Signup(1, "x@example.com"), {}, NOW), 1, NOW)
    row["status"] = "processing"
    values = benchmark(transitions.COMPLETE.values, row, NOW, output='"ok"')
    assert values["status"] == "completed"


@pytest.mark.parametrize("expression", ["*/5 * * * *", "30 2 * * 1-5"])
def test_next_cron_tick(benchmark: Any, expression: str) -> None:
    """The next tick of an expression in a DST zone (every schedule's enqueue)."""
    zone = cron.check_timezone("America/New_York")
    tick = benchmark(cron.next_tick, expression, zone, NOW)
    assert tick > NOW
