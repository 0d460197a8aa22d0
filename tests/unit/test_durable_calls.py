"""The durable-call routine (flowq.durable.Calls.call) against a store stand-in: replay,
execute and record, the record kept when one was there first, waits (no database)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
import pytest

import flowq
from flowq import codec
from flowq.context import Context, JobInfo
from flowq.durable import Calls, Done, Failed, LeaseLost, Suspend, Wait
from flowq.errors import NonDeterminismError
from flowq.replay import History, RecordedCall
from flowq.store.base import Lease, Store
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)
JOB = 5
ATTEMPT = 2


@pytest.fixture
def anyio_backend() -> str:
    """flowq runs on asyncio."""
    return "asyncio"


class Table:
    """``store.record_calls`` as the stores answer it: a successful record is never
    replaced (the one kept comes back); a failure is; a lost lease answers None."""

    def __init__(self, *calls: RecordedCall) -> None:
        self.rows = {call.seq: call for call in calls}
        self.lease_lost = False

    async def record_calls(
        self, calls: Sequence[tuple[Lease, RecordedCall]]
    ) -> list[RecordedCall | None]:
        await anyio.lowlevel.checkpoint()
        kept: list[RecordedCall | None] = []
        for _, call in calls:
            if self.lease_lost:
                kept.append(None)
                continue
            row = self.rows.get(call.seq)
            if row is None or row.error is not None:
                self.rows[call.seq] = row = call
            kept.append(row)
        return kept


def row(
    seq: int, name: str, *, output: Any = None, error: str | None = None, attempt: int = ATTEMPT
) -> RecordedCall:
    """A recorded call (``output`` encoded unless an error is given)."""
    return RecordedCall(
        seq=seq,
        name=name,
        attempt=attempt,
        output=None if error is not None else codec.encode(output, what="output"),
        error=error,
        started_at=T0,
        completed_at=T0,
    )


def calls(table: Table, *history: RecordedCall) -> Calls:
    """One run's Calls whose history (already loaded) is ``history``."""
    return Calls(
        job_id=JOB,
        attempt=ATTEMPT,
        lease=Lease(JOB, 1, "w"),
        store=cast(Store, table),  # the history is loaded: only record_calls is asked
        clock=FakeClock(T0),
        history_loaded=True,
        history=History(JOB, list(history)),
    )


def output(recorded: RecordedCall) -> Any:
    """A replay that decodes the recorded output."""
    return codec.decode(recorded.output)


class Probe:
    """An execute/replay pair that counts its uses."""

    def __init__(self, outcome: Done | Failed | Wait) -> None:
        self.outcome = outcome
        self.executed = 0
        self.replayed: list[RecordedCall] = []

    def execute(self, started: datetime) -> Done | Failed | Wait:
        self.executed += 1
        assert started == T0
        return self.outcome

    async def replay(self, recorded: RecordedCall) -> Any:
        self.replayed.append(recorded)
        if recorded.error is not None:
            raise ValueError(codec.decode(recorded.error))
        return codec.decode(recorded.output)


# -- executed, recorded, replayed ------------------------------------------------------


async def test_a_new_call_executes_records_and_returns_its_record_replayed() -> None:
    """The value comes from the record (as a replay would give it); the next run replays
    it without executing."""
    table = Table()
    probe = Probe(Done(codec.encode({"n": 1}, what="x")))
    run = calls(table)
    assert await run.call(run.reserve("a"), probe.execute, probe.replay) == {"n": 1}
    assert (probe.executed, [r.seq for r in probe.replayed]) == (1, [0])
    assert table.rows[0] == row(0, "a", output={"n": 1})

    again = calls(table, *table.rows.values())
    assert await again.call(again.reserve("a"), probe.execute, probe.replay) == {"n": 1}
    assert probe.executed == 1


async def test_execute_and_replay_may_be_async() -> None:
    """Both callbacks may be coroutines functions or plain functions."""

    async def execute(_started: datetime) -> Done:
        await anyio.lowlevel.checkpoint()
        return Done("3")

    run = calls(Table())
    assert await run.call(run.reserve("a"), execute, lambda r: int(codec.decode(r.output))) == 3


async def test_a_recorded_call_of_another_name_is_nondeterminism() -> None:
    """Nothing executes when the history has another call at the position."""
    probe = Probe(Done("1"))
    run = calls(Table(), row(0, "a", output=1))
    with pytest.raises(NonDeterminismError, match="at position 0 the workflow called 'b'"):
        await run.call(run.reserve("b"), probe.execute, probe.replay)
    assert probe.executed == 0


async def test_a_result_recorded_there_first_wins_over_this_one() -> None:
    """When the position already holds a successful record (an earlier try of this
    write, another worker), the call goes on with that record, not its own."""
    table = Table(row(0, "a", output="first"))
    probe = Probe(Done(codec.encode("second", what="x"), value="own value"))
    run = calls(table)
    assert await run.call(run.reserve("a"), probe.execute, probe.replay) == "first"
    assert table.rows[0].output == '"first"'


async def test_an_earlier_record_of_another_call_is_nondeterminism() -> None:
    """The record kept at the position is checked like a replayed one."""
    table = Table(row(0, "other", output=1))
    run = calls(table)
    with pytest.raises(NonDeterminismError):
        await run.call(run.reserve("a"), lambda _s: Done("1"), output)


async def test_an_own_value_is_returned_when_this_record_is_kept() -> None:
    """Done(value=...) returns that value (the token a store made) instead of a replay."""
    probe = Probe(Done('"tok"', value={"token": "object"}))
    run = calls(Table())
    assert await run.call(run.reserve("@token"), probe.execute, probe.replay) == {"token": "object"}
    assert probe.replayed == []


async def test_a_lost_lease_stops_the_call() -> None:
    """When the store refuses the record the job is no longer this worker's."""
    table = Table()
    table.lease_lost = True
    run = calls(table)
    with pytest.raises(LeaseLost):
        await run.call(run.reserve("a"), lambda _s: Done("1"), output)


# -- failures ------------------------------------------------------------------------


async def test_an_own_failure_raises_its_own_exception_once_recorded() -> None:
    """Failed(error, exc): the error is recorded, then exc itself is raised."""
    table = Table()
    exc = KeyError("own")
    run = calls(table)
    with pytest.raises(KeyError) as raised:
        await run.call(run.reserve("a"), lambda _s: Failed('"recorded"', exc), output)
    assert raised.value is exc
    assert table.rows[0].error == '"recorded"'


async def test_a_failure_without_an_exception_raises_what_its_replay_raises() -> None:
    """Failed(error) is raised the same way on the first run and on a replay."""
    probe = Probe(Failed('"child failed"'))
    run = calls(Table())
    with pytest.raises(ValueError, match="child failed"):
        await run.call(run.reserve("@child_result"), probe.execute, probe.replay)
    assert len(probe.replayed) == 1


async def test_an_own_failure_gives_way_to_a_result_recorded_first() -> None:
    """A failure does not replace a successful record: the call returns that result."""
    table = Table(row(0, "a", output=7))
    run = calls(table)
    got = await run.call(run.reserve("a"), lambda _s: Failed('"x"', KeyError()), output)
    assert got == 7


@pytest.mark.parametrize(
    ("recorded_attempt", "rerun_failures", "executes"),
    [
        (ATTEMPT, True, False),  # failed in this attempt: replayed (raised again)
        (ATTEMPT - 1, True, True),  # failed in an earlier attempt: a step runs again
        (ATTEMPT - 1, False, False),  # other calls replay any recorded failure
    ],
)
async def test_recorded_failures_replay_or_run_again(
    recorded_attempt: int, rerun_failures: bool, executes: bool
) -> None:
    """rerun_failures: a failure recorded by an earlier attempt executes again."""
    table = Table()
    failed = row(0, "a", error='"boom"', attempt=recorded_attempt)
    probe = Probe(Done("1"))
    run = calls(table, failed)
    reservation = run.reserve("a")
    if executes:
        assert await run.call(reservation, probe.execute, probe.replay, rerun_failures=True) == 1
        assert table.rows[0].attempt == ATTEMPT
    else:
        with pytest.raises(ValueError, match="boom"):
            await run.call(reservation, probe.execute, probe.replay, rerun_failures=rerun_failures)
    assert probe.executed == int(executes)


# -- waits ---------------------------------------------------------------------------


@pytest.mark.parametrize("waits", [True, False])
async def test_a_wait_parks_the_job_and_records_nothing(waits: bool) -> None:
    """Wait(until, id) raises Suspend with them; the position stays unrecorded."""
    table = Table()
    run = calls(table)
    until = T0 + timedelta(hours=1)
    reservation = run.reserve("@wait_token")
    with pytest.raises(Suspend) as raised:
        await run.call(reservation, lambda _s: Wait(until, "t"), output, waits=waits)
    assert (raised.value.wait_until, raised.value.wait_id) == (until, "t")
    assert table.rows == {}


async def test_a_wait_lets_the_calls_beside_it_record_first() -> None:
    """In a task group, a wait parks only once a tracked execution beside it has
    recorded its result, so that finished work is not lost."""
    table = Table()
    run = calls(table)
    step, wait = run.reserve("step"), run.reserve("@timer")
    release = anyio.Event()
    seen_when_parked: list[list[int]] = []

    async def slow(_started: datetime) -> Done:
        await release.wait()
        return Done("1")

    async def park() -> None:
        try:
            await run.call(wait, lambda _s: Wait(T0, None), output, waits=True)
        except Suspend:
            seen_when_parked.append(sorted(table.rows))

    async with anyio.create_task_group() as group:
        group.start_soon(run.call, step, slow, output)
        group.start_soon(park)
        await anyio.wait_all_tasks_blocked()
        assert seen_when_parked == []
        release.set()
    assert seen_when_parked == [[0]]


async def test_a_wait_reading_its_state_holds_no_other_wait_back() -> None:
    """With waits=True the execution (reading a token or a child) is not tracked: a
    wait beside it parks without waiting for that read."""
    run = calls(Table())
    first, second = run.reserve("@wait_token"), run.reserve("@wait_token")
    release = anyio.Event()
    parked: list[str] = []

    async def slow_read(_started: datetime) -> Wait:
        await release.wait()
        return Wait(None, "slow")

    async def park(reservation: Any, read: Any) -> None:
        try:
            await run.call(reservation, read, output, waits=True)
        except Suspend as suspend:
            parked.append(cast(str, suspend.wait_id))

    async with anyio.create_task_group() as group:
        group.start_soon(park, first, slow_read)
        group.start_soon(park, second, lambda _s: Wait(None, "fast"))
        await anyio.wait_all_tasks_blocked()
        assert parked == ["fast"]
        release.set()
    assert parked == ["fast", "slow"]


async def test_the_end_of_a_run_settles_an_execution_left_running() -> None:
    """settle() waits until an execution nobody awaits any more has recorded."""
    table = Table()
    run = calls(table)
    reservation = run.reserve("a")
    release = anyio.Event()

    async def slow(_started: datetime) -> Done:
        await release.wait()
        return Done("1")

    async with anyio.create_task_group() as group:
        group.start_soon(run.call, reservation, slow, output)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(run.settle)
        await anyio.wait_all_tasks_blocked()
        assert table.rows == {}
        release.set()
    assert list(table.rows) == [0]


# -- a step over the routine ---------------------------------------------------------


async def test_a_step_whose_annotation_cannot_be_resolved_fails_when_awaited() -> None:
    """The step takes its position when called; awaiting it raises ValidationError
    before the body runs or anything is recorded."""
    ran: list[int] = []

    async def body() -> Undefined:  # type: ignore[name-defined]  # noqa: F821
        ran.append(1)

    table = Table()
    run = calls(table)
    info = JobInfo(id=JOB, workflow="w", attempt=ATTEMPT, max_attempts=3, tags=(), group=None)
    ctx = Context(info, run.lease, cast(Store, None), run)
    pending = ctx.run("unresolved", body)
    assert run.history is not None and run.history.position == 1
    with pytest.raises(flowq.ValidationError, match="cannot resolve the return annotation"):
        await pending
    assert (ran, table.rows) == ([], {})
