"""Peer measurements: pgqueuer on the same PostgreSQL, measured like ``benchmarks/run.py``.

``benchmarks/run.py`` measures each of :func:`figures` interleaved with flowq's figure
of the same name (``benchmarks/compare.py``) so flowq's numbers can be reported as
ratios against a peer measured in the same run, on the same server. pgqueuer (``pip
install -e ".[bench]"``) is used only as a library, through its public API:
``Queries(AsyncpgDriver(connection)).install()`` (what ``pgq install`` runs) on a fresh
database per figure, ``Queries.enqueue`` for one job or for lists, and a ``QueueManager``
with ``@qm.entrypoint(...)`` for consuming.

Every figure mirrors the flowq one of the same name (same job counts, same payload
``{"n": n}``, same timing boundaries):

- ``enqueue_single``: jobs/s added with one ``Queries.enqueue`` call each (5,000).
- ``enqueue_batch``: jobs/s added by one ``Queries.enqueue`` call with lists of 5,000.
- ``process_c10`` / ``process_c50``: jobs/s processed from a queue of 5,000 no-op jobs
  by one ``QueueManager``, at most 10 / 50 jobs running at once. pgqueuer's knob is
  ``concurrency_limit`` on the entrypoint (enforced by its dequeue query). The
  ``batch_size`` of ``QueueManager.run`` (jobs claimed per dequeue) is set to the limit,
  as flowq's worker claims ``concurrency`` jobs per round trip by default: 10 for c10
  (pgqueuer's default anyway), 50 for c50 (pgqueuer's default of 10 is markedly slower
  there).
- Not measured by the runner any more (``process`` still takes the knobs): pgqueuer's
  other cap, ``max_concurrent_tasks=10`` on ``QueueManager.run`` (which requires
  ``batch_size <= max_concurrent_tasks / 2``), and its defaults without any limit.
- ``latency_other_process``: ms from ``enqueue`` returning to the handler starting in an
  idle ``QueueManager`` running in another process (p50 / p95 / max of 50).

Processing clocks start just before ``QueueManager.run`` is called and stop when it has
returned after the last handler finished: the handler counts the jobs and sets an event
at the last one, the benchmark then sets ``qm.shutdown`` and awaits ``run``, which
writes the buffered completions before it returns. This matches flowq's
``run_until_idle``, which also returns only after its completions are committed. The
time at which the last handler finished is kept too (``details``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

from benchmarks.run import summary
from benchmarks.scratch import on_scratch_databases, poll_until, ready_child, scratch_database

ENTRYPOINT = "bench_noop"
DEFAULT_BATCH_SIZE = 10
"""``QueueManager.run``'s default ``batch_size`` in pgqueuer 1.6.0."""


def _payload(n: int) -> bytes:
    """The job payload: ``{"n": n}`` as JSON, the same data flowq's benchmark enqueues."""
    return json.dumps({"n": n}).encode()


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new database ``flowq_bench_pgq_<hex>`` with pgqueuer's schema; yields its DSN.

    The schema is installed with ``Queries.install()`` (what ``pgq install`` runs, with
    its default durability: every table logged). The database is dropped afterwards.
    """
    async with scratch_database(admin_dsn, "flowq_bench_pgq") as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await Queries(AsyncpgDriver(connection)).install()
        finally:
            await connection.close()
        yield dsn


@contextlib.asynccontextmanager
async def _queries(dsn: str) -> AsyncIterator[Queries]:
    """pgqueuer ``Queries`` over one asyncpg connection (``AsyncpgDriver``), closed after."""
    connection = await asyncpg.connect(dsn)
    try:
        yield Queries(AsyncpgDriver(connection))
    finally:
        await connection.close()


async def enqueue_single(dsn: str, jobs: int) -> float:
    """Jobs/s added with one ``Queries.enqueue(entrypoint, payload)`` call each."""
    async with _queries(dsn) as queries:
        began = time.perf_counter()
        for n in range(jobs):
            await queries.enqueue(ENTRYPOINT, _payload(n))
        return jobs / (time.perf_counter() - began)


async def enqueue_batch(dsn: str, jobs: int) -> float:
    """Jobs/s added by one ``Queries.enqueue`` call given lists of ``jobs`` entries."""
    async with _queries(dsn) as queries:
        began = time.perf_counter()
        await queries.enqueue([ENTRYPOINT] * jobs, [_payload(n) for n in range(jobs)], [0] * jobs)
        return jobs / (time.perf_counter() - began)


async def process(
    dsn: str,
    jobs: int,
    *,
    concurrency_limit: int = 0,
    max_concurrent_tasks: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, float]:
    """Process ``jobs`` queued no-op jobs with one ``QueueManager``; returns jobs/s.

    ``concurrency_limit`` goes to ``@qm.entrypoint`` (0 = unlimited), the other two to
    ``qm.run``. The clock runs from just before ``qm.run`` is called until it returns
    after the last handler (see the module docstring); the result's
    ``handlers_done_jobs_per_s`` stops the clock at the last handler instead.
    Afterwards the queue must be empty and the log must hold ``jobs`` successes.
    """
    async with _queries(dsn) as queries:
        await queries.enqueue([ENTRYPOINT] * jobs, [_payload(n) for n in range(jobs)], [0] * jobs)
        async with _queries(dsn) as worker_queries:
            qm = QueueManager(worker_queries)
            done = asyncio.Event()
            handled = 0

            @qm.entrypoint(ENTRYPOINT, concurrency_limit=concurrency_limit, accepts_context=False)
            async def noop(job: Job) -> None:
                """Does nothing but count; the last job sets ``done``."""
                nonlocal handled
                handled += 1
                if handled == jobs:
                    done.set()

            began = time.perf_counter()
            runner = asyncio.create_task(
                qm.run(batch_size=batch_size, max_concurrent_tasks=max_concurrent_tasks)
            )
            waiter = asyncio.create_task(done.wait())
            await asyncio.wait({runner, waiter}, timeout=300, return_when=asyncio.FIRST_COMPLETED)
            handlers_done = time.perf_counter()
            qm.shutdown.set()
            waiter.cancel()
            await runner
            elapsed = time.perf_counter() - began
        assert handled == jobs, f"only {handled} of {jobs} pgqueuer jobs ran"
        settings = queries.qbe.settings
        # Table names come from pgqueuer's own (validated) settings, not from input.
        left = await queries.driver.fetch(
            f"SELECT count(*) AS n FROM {settings.queue_table}"  # noqa: S608
        )
        logged = await queries.driver.fetch(
            f"SELECT count(*) AS n FROM {settings.queue_table_log}"  # noqa: S608
            " WHERE status = 'successful'"
        )
        assert left[0]["n"] == 0, f"{left[0]['n']} pgqueuer jobs still in the queue table"
        assert logged[0]["n"] == jobs, f"only {logged[0]['n']} pgqueuer jobs logged successful"
    return {
        "jobs_per_s": jobs / elapsed,
        "handlers_done_jobs_per_s": jobs / (handlers_done - began),
    }


OTHER_PROCESS_CONSUMER = """
import asyncio, sys, time
import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager

async def main():
    connection = await asyncpg.connect(sys.argv[1])
    qm = QueueManager(Queries(AsyncpgDriver(connection)))

    @qm.entrypoint(sys.argv[2], accepts_context=False)
    async def noop(job):
        started = time.time()
        print(job.id, repr(started), flush=True)

    print("ready", flush=True)
    await qm.run()

asyncio.run(main())
"""
"""The consumer process: pgqueuer defaults, a no-op handler that prints when it started."""


async def _wait_until_successful(queries: Queries, job_id: Any) -> None:
    """Return once pgqueuer has logged the job successful.

    Polled on the schedule of flowq's ``App.result`` (``benchmarks.scratch.poll_until``),
    so both benchmarks put the same polling load on the database.
    """

    async def successful() -> bool:
        return dict(await queries.job_status([job_id])).get(job_id) == "successful"

    await poll_until(successful)


async def latency_other_process(dsn: str, samples: int) -> dict[str, float]:
    """ms from ``enqueue`` returning to the handler starting in another process.

    One job at a time: enqueue, wait until pgqueuer has logged it successful, read the
    handler's start time (``time.time()``, printed by the consumer), pause 20 ms, as
    flowq's ``latency_other_process`` does with ``App.result``.
    """
    results = []
    async with (
        ready_child(OTHER_PROCESS_CONSUMER, dsn, ENTRYPOINT) as consumer,
        _queries(dsn) as queries,
    ):
        for _ in range(samples):
            (job_id,) = await queries.enqueue(ENTRYPOINT, b"{}")
            returned = time.time()
            async with asyncio.timeout(10):
                await _wait_until_successful(queries, job_id)
            line = await asyncio.to_thread(consumer.readline)
            reported_id, started = line.split()
            assert int(reported_id) == job_id, f"expected job {job_id}, got {line!r}"
            results.append((float(started) - returned) * 1000)
            await asyncio.sleep(0.02)
    return summary(results)


SETTINGS = {
    "driver": "AsyncpgDriver (one asyncpg connection per Queries / QueueManager)",
    "process_c10": "@qm.entrypoint(concurrency_limit=10), run(batch_size=10)",
    "process_c50": "@qm.entrypoint(concurrency_limit=50), run(batch_size=50)",
    "latency_other_process": "QueueManager defaults in a child process",
}


def figures(admin_dsn: str, jobs: int, samples: int) -> dict[str, Any]:
    """pgqueuer's figures as ``{name: coroutine function}``, each on a fresh database.

    The processing figures return jobs/s with the clock stopped when ``qm.run`` has
    returned (see the module docstring).
    """

    async def processed(dsn: str, limit: int) -> float:
        measured = await process(dsn, jobs, concurrency_limit=limit, batch_size=limit)
        return measured["jobs_per_s"]

    return on_scratch_databases(
        lambda: fresh_database(admin_dsn),
        {
            "enqueue_single": lambda dsn: enqueue_single(dsn, jobs),
            "enqueue_batch": lambda dsn: enqueue_batch(dsn, jobs),
            "process_c10": lambda dsn: processed(dsn, 10),
            "process_c50": lambda dsn: processed(dsn, 50),
            "latency_other_process": lambda dsn: latency_other_process(dsn, samples),
        },
    )


def describe() -> dict[str, Any]:
    """Version and the knobs used, for the results file."""
    from importlib.metadata import version

    return {"version": version("pgqueuer"), **SETTINGS}
