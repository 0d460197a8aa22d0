"""A job parking on a token (or a child job) while that token is completed or times out
(or the child finishes) concurrently, on PostgreSQL under READ COMMITTED.

The waker (``complete_token``, ``expire_timed_out_tokens``, a child's completion and the
``flowq_jobs_wake_parent`` trigger) makes runnable only jobs that are ``waiting`` when
its UPDATE runs; ``suspend_job`` makes the job runnable at once if the wait is already
over when it looks. Each test below holds one side's transaction open just before its
commit and runs the other side in that window, so both orders are forced
deterministically (no sleep-and-hope: the held side commits only once the other side
has finished, or waits for one of its locks, as ``pg_blocking_pids`` shows). Whatever
the order, the job must end up runnable.

Before ``suspend_job`` locked the token (or child) row, every one of these orders
stranded the job: the waker's UPDATE skipped the job (still ``processing`` in its
snapshot) and ``suspend_job``'s look missed the waker's uncommitted write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import asyncpg
import pytest
from anyio.abc import TaskGroup
from sqlalchemy.ext.asyncio import AsyncConnection

import flowq
from flowq import JobStatus
from flowq.store.base import ClaimedJob, Completion, Lease, NewToken
from flowq.store.sql import SqlStore
from flowq_testing import FakeClock
from flowq_testing.contract.base import start_child
from tests.pg_server import asyncpg_dsn

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

registry = flowq.Registry()


@registry.workflow(name="races.job")
async def job(payload: dict[str, Any]) -> None:
    """Never run here: the tests drive the store verbs themselves."""


@dataclass
class Gate:
    """Where a held transaction waits: ``reached`` once it is about to commit (with
    the PostgreSQL ``pid`` of its session), then it commits when ``release`` is set."""

    reached: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)
    pid: int = 0


_holding: ContextVar[Gate | None] = ContextVar("holding", default=None)


class HeldStore(SqlStore):
    """A SqlStore whose transactions, in a task that set ``_holding``, wait just
    before they commit."""

    @asynccontextmanager
    async def _transaction(
        self, connection: AsyncConnection | None = None
    ) -> AsyncIterator[AsyncConnection]:
        async with super()._transaction(connection) as conn:
            yield conn
            gate = _holding.get()
            if gate is not None and connection is None:
                _holding.set(None)
                gate.pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
                gate.reached.set()
                await gate.release.wait()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2030, 1, 1, 12, tzinfo=UTC))


@pytest.fixture
async def store(postgres_url: str, clock: FakeClock) -> AsyncIterator[HeldStore]:
    store = HeldStore(postgres_url, clock=clock)
    yield store
    await store.close()


@pytest.fixture
async def app(store: HeldStore, clock: FakeClock) -> AsyncIterator[flowq.App]:
    async with flowq.App(store=store, clock=clock, registry=registry) as app:
        yield app


Waits = Callable[[int], Awaitable[bool]]


@pytest.fixture
async def waits_for(postgres_url: str) -> AsyncIterator[Waits]:
    """Whether some session waits for a lock held by the session ``pid``."""
    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))

    async def blocked_by(pid: int) -> bool:
        return bool(
            await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                pid,
            )
        )

    yield blocked_by
    await admin.close()


Verb = Callable[[], Awaitable[Any]]
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


async def hold(tasks: TaskGroup, verb: Verb) -> Gate:
    """Start ``verb`` in ``tasks``; return once its transaction is about to commit (it
    commits when the returned gate is released)."""
    gate = Gate()

    async def held() -> None:
        _holding.set(gate)
        await verb()

    tasks.start_soon(held)
    await gate.reached.wait()
    return gate


async def then(gate: Gate, waits_for: Waits, other: Verb) -> tuple[Any, bool]:
    """Run ``other`` until it finishes or waits for the held transaction's locks; then
    let that transaction commit. Returns ``other``'s result, and whether it waited."""
    results: list[Any] = []
    blocked = False
    async with anyio.create_task_group() as tasks:

        async def run_other() -> None:
            results.append(await other())

        tasks.start_soon(run_other)
        while not results:
            if await waits_for(gate.pid):
                blocked = True
                break
            await anyio.sleep(0.005)
        gate.release.set()
    return results[0], blocked


async def interleave(waits_for: Waits, held: Verb, other: Verb) -> bool:
    """``held`` runs up to its commit and waits there while ``other`` runs (until it
    finishes or waits for ``held``'s locks); then both finish. Returns whether
    ``other`` had to wait for ``held``."""
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            gate = await hold(tasks, held)
            _, blocked = await then(gate, waits_for, other)
    return blocked


async def park_on(app: flowq.App, wait_id: str | None = None) -> tuple[ClaimedJob, str]:
    """A claimed job and a waiting token of its (or ``wait_id``)."""
    await app.start(job, {})
    [claimed] = await app.store.claim_jobs("w", 1, registry.names())
    if wait_id is not None:
        return claimed, wait_id
    token = await app.store.create_token(
        NewToken(id="race-" + "t" * 30, tags=(), timeout_at=app.clock.now() + timedelta(hours=1)),
        claimed.lease,
    )
    assert token is not None
    settled = await app.store.settle_token(token.id)
    assert settled is not None and settled.status is flowq.TokenStatus.WAITING
    return claimed, token.id


async def assert_runnable(app: flowq.App, job_id: int) -> None:
    """The parked job is waiting but runnable now: the next claim takes it."""
    parked = await app.get_job(job_id)
    assert parked is not None and parked.status is JobStatus.WAITING
    claimed = await app.store.claim_jobs("w", 10, registry.names())
    assert [c.job.id for c in claimed] == [job_id], f"job {job_id} parked with nothing to wake it"
    assert claimed[0].resumed


@pytest.mark.parametrize("held_side", ["complete_token", "suspend_job"])
async def test_a_token_completed_while_the_job_parks(
    app: flowq.App,
    store: HeldStore,
    waits_for: Waits,
    held_side: str,
) -> None:
    """complete_token and suspend_job in either commit order: the job is runnable."""
    claimed, token_id = await park_on(app)

    async def complete() -> None:
        await app.complete_token(token_id, "yes")

    async def suspend() -> None:
        assert await store.suspend_job(claimed.lease, wait_until=None, token_id=token_id)

    held, other = (complete, suspend) if held_side == "complete_token" else (suspend, complete)
    blocked = await interleave(waits_for, held, other)
    await assert_runnable(app, claimed.job.id)
    assert blocked, "the second side must wait for the first one's lock on the token"


@pytest.mark.parametrize("held_side", ["expire_timed_out_tokens", "suspend_job"])
async def test_a_token_timing_out_while_the_job_parks(
    app: flowq.App,
    store: HeldStore,
    clock: FakeClock,
    waits_for: Waits,
    held_side: str,
) -> None:
    """expire_timed_out_tokens and suspend_job in either commit order: the job is
    runnable (parked without a timer of its own, so only the token can wake it)."""
    claimed, token_id = await park_on(app)
    clock.advance(timedelta(hours=2))

    async def expire() -> None:
        assert await app.expire_timed_out_tokens() == 1

    async def suspend() -> None:
        assert await store.suspend_job(claimed.lease, wait_until=None, token_id=token_id)

    held, other = (expire, suspend) if held_side == "expire_timed_out_tokens" else (suspend, expire)
    blocked = await interleave(waits_for, held, other)
    await assert_runnable(app, claimed.job.id)
    assert blocked


@pytest.mark.parametrize(
    ("held_side", "finish"),
    [
        ("child", "cancel"),
        ("child", "fail"),
        ("suspend_job", "cancel"),
        ("suspend_job", "complete"),
        ("suspend_job", "fail"),
    ],
)
async def test_a_child_finishing_while_its_parent_parks(
    app: flowq.App,
    store: HeldStore,
    waits_for: Waits,
    held_side: str,
    finish: str,
) -> None:
    """A child finishing (completed, failed for good, cancelled; the trigger wakes the
    parent) and its parent parking on it, in either commit order: the parent is
    runnable."""
    parent_id = await app.start(job, {"role": "parent"})
    [parent] = await app.store.claim_jobs("w", 1, registry.names())
    child_id = await start_child(app, job, {"role": "child"}, {"max_attempts": 1}, parent_id, 0)
    child_job = await app.get_job(child_id)  # what the parent's ctx.call() reads
    assert child_job is not None and child_job.status is JobStatus.PENDING
    child: ClaimedJob | None = None
    if finish != "cancel":
        [child] = await app.store.claim_jobs("w", 1, registry.names())
        assert child.job.id == child_id

    async def finish_child() -> None:
        if finish == "cancel":
            assert await app.cancel_job(child_id)
            return
        assert child is not None
        if finish == "complete":
            assert await store.complete_jobs([Completion(child.lease, '"done"')]) == [True]
        else:
            error = flowq.ErrorEntry(message="no", type="E", at=app.clock.now(), attempt=1)
            reason = flowq.FailureReason.HANDLER_ERROR
            assert await store.fail_job(child.lease, error, reason=reason, retry_at=None)

    async def suspend() -> None:
        wait_id = f"child:{child_id}"
        assert await store.suspend_job(parent.lease, wait_until=None, token_id=wait_id)

    held, other = (finish_child, suspend) if held_side == "child" else (suspend, finish_child)
    blocked = await interleave(waits_for, held, other)
    finished = await app.get_job(child_id)
    assert finished is not None and finished.status in FINISHED
    await assert_runnable(app, parent_id)
    assert blocked


@registry.workflow(name="races.approval", max_attempts=1)
async def approval(payload: dict[str, Any], ctx: flowq.Context) -> Any:
    """Waits for a token (which times out only in two days)."""
    token = await ctx.create_token(timeout="48h")
    return (await ctx.wait_for_token(token)).output


async def test_a_worker_parks_its_job_while_the_token_is_being_completed(
    app: flowq.App, store: HeldStore, waits_for: Waits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real worker. As its job's settle_token returns "waiting", complete_token runs
    up to its commit (its wake-up finds no waiting job: the job still runs) and waits
    there while the job parks; it commits once suspend_job has finished or waits for
    its lock. The job must resume and complete with the token's output."""
    settle, suspend = store.settle_token, store.suspend_job
    gates: list[Gate] = []
    parks_waited: list[bool] = []
    done = anyio.Event()

    def on_completed(event: flowq.HookEvent) -> None:
        done.set()

    app.on("job:completed", on_completed)
    async with anyio.create_task_group() as tasks:

        async def settle_while_completing(token_id: str) -> flowq.Token | None:
            found = await settle(token_id)
            if found is not None and found.status is flowq.TokenStatus.WAITING and not gates:
                gates.append(await hold(tasks, lambda: app.complete_token(token_id, "yes")))
            return found

        async def park(lease: Lease, *, wait_until: datetime | None, token_id: str | None) -> bool:
            if not gates or gates[0].release.is_set():
                return await suspend(lease, wait_until=wait_until, token_id=token_id)
            parked, waited = await then(
                gates[0],
                waits_for,
                lambda: suspend(lease, wait_until=wait_until, token_id=token_id),
            )
            parks_waited.append(waited)
            return bool(parked)

        monkeypatch.setattr(store, "settle_token", settle_while_completing)
        monkeypatch.setattr(store, "suspend_job", park)
        job_id = await app.start(approval, {})
        worker = app.create_worker(concurrency=1, poll_interval=60)
        tasks.start_soon(worker.run)
        with anyio.move_on_after(15) as waited_too_long:
            await done.wait()
        await worker.stop()
    assert not waited_too_long.cancelled_caught, f"job {job_id} stayed parked: wake-up lost"
    assert parks_waited == [True]
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.output == "yes"
    assert job.attempts == 1
