"""A worker survives outcome writes that fail (issue 7, item 2): the database refuses
one job's write (a trigger on SQL, a refusing store in memory), or the connection
pool stays exhausted while the database does not answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

import flowq
from flowq import JobStatus
from flowq.errors import DatabaseUnavailableError
from flowq.models import ErrorEntry, FailureReason
from flowq.store.base import Completion, Lease, Release
from flowq.store.sql import SqlStore
from flowq.store.sql.postgres import PostgresDialect
from flowq_testing import FakeClock, InMemoryStore

pytestmark = pytest.mark.anyio

DEADLINE = 20.0


class RefusingMemoryStore(InMemoryStore):
    """An in-memory store that refuses some writes of chosen jobs, as a database
    trigger does on SQL."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refused: dict[int, set[str]] = {}
        """Job id -> the writes refused: "complete", "fail", "release"."""

    def _check(self, job_ids: Sequence[int], write: str) -> None:
        for job_id in job_ids:
            if write in self.refused.get(job_id, set()):
                raise RuntimeError(f"injected: the write of job {job_id} is refused")

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[bool]:
        self._check([c.lease.job_id for c in completions], "complete")
        return await super().complete_jobs(completions)

    async def fail_job(
        self, lease: Lease, error: ErrorEntry, *, reason: FailureReason, retry_at: Any
    ) -> bool:
        self._check([lease.job_id], "fail")
        return await super().fail_job(lease, error, reason=reason, retry_at=retry_at)

    async def release_jobs(self, releases: Sequence[Release]) -> int:
        self._check([r.lease.job_id for r in releases], "release")
        return await super().release_jobs(releases)

    async def heartbeat(self, leases: Sequence[Lease]) -> list[Lease]:
        self._check([lease.job_id for lease in leases], "heartbeat")
        return await super().heartbeat(leases)


Refuse = Callable[[int, str], Awaitable[None]]


@pytest.fixture
async def faulty(
    database_url: str | None, registry: flowq.Registry, clock: FakeClock
) -> AsyncIterator[tuple[flowq.App, Refuse]]:
    """An App, and ``refuse(job_id, what)``: from then on the database refuses that
    job's completion (``what="completion"``), its completion and failure
    (``"completion and failure"``), every write that ends its run (``"every exit"``:
    those and the hand-back), or its heartbeats (``"heartbeat"``);
    ``refuse(job_id, "nothing")`` lifts it."""
    if database_url is None:
        store = RefusingMemoryStore()
        app = flowq.App(store=store, registry=registry, clock=clock)

        async def refuse(job_id: int, what: str) -> None:
            store.refused[job_id] = {
                "completion": {"complete"},
                "completion and failure": {"complete", "fail"},
                "every exit": {"complete", "fail", "release"},
                "heartbeat": {"heartbeat"},
            }.get(what, set())

    else:
        app = flowq.App(database_url, registry=registry, clock=clock, auto_migrate=True)
        postgres = database_url.startswith("postgresql")

        async def refuse(job_id: int, what: str) -> None:
            sql = app.store
            assert isinstance(sql, SqlStore)
            status = {
                "completion": "= 'completed'",
                "completion and failure": "IN ('completed', 'failed')",
                "every exit": "<> 'processing'",
                "heartbeat": "= 'processing' AND OLD.status = 'processing'",
            }.get(what)
            async with sql.engine.begin() as conn:
                await conn.execute(text("DROP TRIGGER IF EXISTS test_refuse" +
                                        (" ON flowq_jobs" if postgres else "")))  # fmt: skip
                if status is None:
                    return
                when = f"NEW.id = {job_id} AND NEW.status {status}"
                if postgres:
                    await conn.execute(text(
                        "CREATE OR REPLACE FUNCTION test_refuse() RETURNS trigger AS $$ BEGIN "
                        "RAISE EXCEPTION 'injected: the write of job % is refused', NEW.id; "
                        "END $$ LANGUAGE plpgsql"
                    ))  # fmt: skip
                    await conn.execute(text(
                        f"CREATE TRIGGER test_refuse BEFORE UPDATE ON flowq_jobs FOR EACH ROW "
                        f"WHEN ({when}) EXECUTE FUNCTION test_refuse()"
                    ))  # fmt: skip
                else:
                    await conn.execute(text(
                        f"CREATE TRIGGER test_refuse BEFORE UPDATE ON flowq_jobs WHEN {when} "
                        "BEGIN SELECT RAISE(ABORT, 'injected: the write is refused'); END"
                    ))  # fmt: skip

    async with app:
        yield app, refuse


async def test_a_refused_completion_fails_that_job_and_the_others_complete(
    faulty: tuple[flowq.App, Refuse],
    registry: flowq.Registry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database refuses one job's completion, which shares a batch with the
    completions of healthy jobs: that job is failed with a failure saying so (one
    ERROR record with its id and the traceback); the healthy jobs complete; the worker
    returns normally."""
    app, refuse = faulty

    @registry.workflow(name="quick", max_attempts=1)
    async def quick(payload: dict[str, Any]) -> int:
        return int(payload["n"])

    ids = [await app.start(quick, {"n": n}) for n in range(6)]
    bad = ids[2]
    await refuse(bad, "completion")
    with caplog.at_level(logging.ERROR, logger="flowq"):
        await app.create_worker(concurrency=6).run_until_idle()
    for n, job_id in enumerate(ids):
        job = await app.get_job(job_id)
        assert job is not None
        if job_id != bad:
            assert (job.status, job.output) == (JobStatus.COMPLETED, n)
    job = await app.get_job(bad)
    assert job is not None and job.status is JobStatus.FAILED
    [error] = job.error_history
    assert error.type == "OutcomeNotRecorded"
    assert error.message.startswith("flowq could not record the outcome of this attempt: ")
    assert "injected" in error.message
    [record] = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name == "flowq.worker"
    ]
    assert f"job {bad} " in record.getMessage() and record.exc_info is not None


@pytest.mark.parametrize(
    ("refused", "runs"), [("completion and failure", [1, 2, 3]), ("every exit", [1])]
)
async def test_a_job_whose_end_cannot_be_written_is_handed_back_or_left_for_reclaim(
    faulty: tuple[flowq.App, Refuse],
    registry: flowq.Registry,
    caplog: pytest.LogCaptureFixture,
    refused: str,
    runs: list[int],
) -> None:
    """When the failure that replaces a refused outcome is refused too, the worker hands
    the job back while attempts remain (each run counts one), then leaves it for lease
    reclaim (also at once when the hand-back is refused); the healthy job completes
    and the worker returns normally. Once the database accepts the job's writes again,
    reclaim takes it back."""
    app, refuse = faulty
    ran: list[int] = []

    @registry.workflow(name="stuck", max_attempts=3)
    async def stuck(payload: dict[str, Any], ctx: flowq.Context) -> str:
        ran.append(ctx.job.attempt)
        return "done"

    @registry.workflow(name="fine")
    async def fine(payload: dict[str, Any]) -> str:
        return "fine"

    bad = await app.start(stuck, {})
    good = await app.start(fine, {})
    await refuse(bad, refused)
    with caplog.at_level(logging.ERROR, logger="flowq"):
        await app.create_worker().run_until_idle()
    assert ran == runs
    job = await app.get_job(good)
    assert job is not None and job.status is JobStatus.COMPLETED
    job = await app.get_job(bad)
    assert job is not None and (job.status, job.attempts) == (JobStatus.PROCESSING, len(runs))
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"job {bad} stays processing until its lease expires" in m for m in messages)
    await refuse(bad, "nothing")
    assert await app.reclaim_stuck_jobs(0) == 1
    await app.create_worker().run_until_idle()
    job = await app.get_job(bad)
    assert job is not None
    if len(runs) == 3:  # no attempt left: reclaim fails it for good
        assert job.status is JobStatus.FAILED and job.error_history[-1].type == "WorkerLost"
    else:
        assert (job.status, job.output) == (JobStatus.COMPLETED, "done")


async def test_a_heartbeat_the_database_refuses_is_logged_and_the_worker_goes_on(
    faulty: tuple[flowq.App, Refuse], registry: flowq.Registry
) -> None:
    """Heartbeats failing with an unexpected error are logged at ERROR (with the job
    ids and the traceback) and tried again; the running worker goes on and its jobs
    finish."""
    app, refuse = faulty
    release = anyio.Event()

    @registry.workflow(name="beating")
    async def beating(payload: dict[str, Any]) -> str:
        await release.wait()
        return "finished"

    job_id = await app.start(beating, {})
    await refuse(job_id, "heartbeat")
    completed = anyio.Event()
    app.on("job:completed", lambda event: completed.set())
    refused = Seen("heartbeat of worker", f"failed for job(s) {job_id}")
    logger = logging.getLogger("flowq")
    logger.addHandler(refused)
    worker = app.create_worker(heartbeat_interval=0.02, lease_timeout=60)
    try:
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(worker.run)
                await refused.seen.wait()
                await refused.seen_twice.wait()  # tried again, the worker still serves
                release.set()
                await completed.wait()
                await worker.stop()
    finally:
        logger.removeHandler(refused)
    assert refused.record is not None and refused.record.levelno == logging.ERROR
    assert refused.record.exc_info is not None
    job = await app.get_job(job_id)
    assert job is not None and (job.status, job.output) == (JobStatus.COMPLETED, "finished")


# -- an exhausted connection pool ----------------------------------------------------


class SmallPool(PostgresDialect):
    """PostgreSQL with a pool of three connections and a 100 ms pool timeout."""

    def create_engine(self, url: URL) -> AsyncEngine:
        return create_async_engine(url, pool_size=3, max_overflow=0, pool_timeout=0.1)


class Seen(logging.Handler):
    """Sets ``seen`` once a log record holding every one of ``words`` is emitted."""

    def __init__(self, *words: str) -> None:
        super().__init__()
        self.words = words
        self.seen = anyio.Event()
        self.seen_twice = anyio.Event()
        self.record: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if all(word in record.getMessage() for word in self.words):
            if self.seen.is_set():
                self.seen_twice.set()
            self.seen.set()
            self.record = record


@pytest.mark.postgres
async def test_an_exhausted_pool_is_waited_out(
    postgres_url: str, registry: flowq.Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """While every pooled connection is held (as during a database freeze with many
    handlers waiting), the completion of a finished job gets "QueuePool limit ...
    timeout": the worker backs off and retries as for an unreachable database, and
    records the completion once connections are free again."""
    finish = anyio.Event()
    started = anyio.Event()

    @registry.workflow(name="waits")
    async def waits(payload: dict[str, Any]) -> str:
        started.set()
        await finish.wait()
        return "recorded"

    async with flowq.App(postgres_url, registry=registry, auto_migrate=True) as app:
        store = SqlStore(postgres_url)
        store.dialect = SmallPool()
        worker = flowq.Worker(store, registry, poll_interval=0.05, heartbeat_interval=0.05)
        job_id = await app.start(waits, {})
        completed = anyio.Event()
        worker.hooks.on("job:completed", lambda event: completed.set())
        retrying = Seen("the database is unreachable", "no free connection")
        logging.getLogger("flowq").addHandler(retrying)
        held: list[AsyncConnection] = []
        with anyio.fail_after(DEADLINE), caplog.at_level(logging.WARNING, logger="flowq"):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(worker.run)
                await started.wait()
                while True:  # take every connection the worker is not holding
                    try:
                        held.append(await store.engine.connect())
                    except Exception:
                        break
                finish.set()
                await retrying.seen.wait()
                job = await app.get_job(job_id)
                assert job is not None and job.status is JobStatus.PROCESSING
                for connection in held:
                    await connection.close()
                await completed.wait()
                await worker.stop()
        await store.close()
        logging.getLogger("flowq").removeHandler(retrying)
        job = await app.get_job(job_id)
        assert job is not None and (job.status, job.output) == (JobStatus.COMPLETED, "recorded")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.postgres
async def test_database_unavailable_is_what_pool_timeouts_raise(postgres_url: str) -> None:
    """The error itself: a flowq DatabaseUnavailableError naming the pool."""
    store = SqlStore(postgres_url)
    store.dialect = SmallPool()
    held = [await store.engine.connect() for _ in range(3)]
    try:
        with pytest.raises(DatabaseUnavailableError, match="no free connection"):
            await store.get_job(1)
    finally:
        for connection in held:
            await connection.close()
        await store.close()


async def test_a_worker_cancelled_from_outside_hands_its_jobs_back(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A worker whose task is cancelled (it exits without stop()) hands back the jobs
    it was running before it goes, instead of leaving them processing until reclaim."""
    started = anyio.Event()

    @registry.workflow(name="endless")
    async def endless(payload: dict[str, Any]) -> None:
        started.set()
        await anyio.sleep_forever()

    job_id = await app.start(endless, {})
    worker = app.create_worker(worker_id="cancelled-worker")
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await started.wait()
            tasks.cancel_scope.cancel()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING and job.locked_by is None
    last = (await app.get_job_events(job_id))[-1]
    assert last.event_type is flowq.EventType.RECLAIMED
    assert (last.metadata["worker_id"], last.metadata["reason"]) == ("cancelled-worker", "released")
