"""Peer measurements: procrastinate on the same PostgreSQL, measured like ``benchmarks/run.py``.

Same harness shape as ``benchmarks/peers.py`` (pgqueuer). procrastinate (``pip install
-e ".[bench]"``, pinned there) is used only through its public API:

- an ``App(connector=PsycopgConnector(conninfo=dsn, min_size=..., max_size=...))`` per
  figure, opened with ``app.open_async()``, on a fresh database whose schema is applied
  with ``app.schema_manager.apply_schema_async()`` (what ``procrastinate schema
  --apply`` runs);
- one task, ``@app.task(name="bench_noop")``, a no-op coroutine taking ``n``;
- ``task.defer_async(n=n)`` for one job, ``task.batch_defer_async(*[{"n": n}, ...])``
  for a batch (one query: its ``procrastinate_defer_jobs_v1`` function given every job);
- ``app.run_worker_async(concurrency=c, wait=False, install_signal_handlers=False)``
  to consume: ``wait=False`` makes the worker return once it has caught up with the
  queue, after the jobs' statuses are written (as flowq's ``run_until_idle`` does).
  procrastinate's knob is the worker's ``concurrency`` (number of jobs run at once);
  its worker fetches one job per round trip, one fetch at a time, whenever a slot is
  free, so its throughput is bounded by the fetch round trip whatever the concurrency.
  The connection pool is sized ``max_size = concurrency + 2`` (a connection for every
  slot's queries, the LISTEN connection and the heartbeat) so that no slot waits for a
  connection (psycopg_pool's default is 4); ``min_size`` is 2. Other worker options are
  procrastinate 3.10.0's defaults (``listen_notify=True``, ``delete_jobs="never"``,
  polling every 5 s as a fallback).

Figures (same counts, payload ``{"n": n}``, timing boundaries as flowq's):

- ``enqueue_single``: jobs/s added with one ``defer_async`` each.
- ``enqueue_batch``: jobs/s added by one ``batch_defer_async`` of every job.
- ``process_c10`` / ``process_c50``: jobs/s processed from a queue of the jobs by one
  worker at ``concurrency`` 10 / 50; the clock runs from just before
  ``run_worker_async`` to its return; afterwards every job must be ``succeeded``.
- ``latency_other_process``: ms from ``defer_async`` returning to the handler starting
  in an idle worker (defaults: ``concurrency=1``, LISTEN/NOTIFY) in another process;
  the job's status is polled with ``job_manager.get_job_status_async`` on the same
  schedule as flowq's ``App.result`` (5 ms doubling to 250 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import procrastinate

from benchmarks.run import summary
from benchmarks.scratch import on_scratch_databases, poll_until, ready_child, scratch_database

TASK = "bench_noop"


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new database ``flowq_bench_pcr_<hex>`` with procrastinate's schema; yields its DSN."""
    async with scratch_database(admin_dsn, "flowq_bench_pcr") as dsn:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
        yield dsn


def _app(dsn: str, pool_size: int = 4) -> tuple[procrastinate.App, Any]:
    """A procrastinate ``App`` on ``dsn`` with the no-op task; returns (app, task)."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=2, max_size=pool_size)
    )

    @app.task(name=TASK)
    async def noop(n: int = 0) -> None:
        """Does nothing."""

    return app, noop


async def enqueue_single(dsn: str, jobs: int) -> float:
    """Jobs/s added with one ``defer_async`` call each."""
    app, task = _app(dsn)
    async with app.open_async():
        began = time.perf_counter()
        for n in range(jobs):
            await task.defer_async(n=n)
        return jobs / (time.perf_counter() - began)


async def enqueue_batch(dsn: str, jobs: int) -> float:
    """Jobs/s added by one ``batch_defer_async`` of ``jobs`` jobs."""
    app, task = _app(dsn)
    async with app.open_async():
        began = time.perf_counter()
        await task.batch_defer_async(*[{"n": n} for n in range(jobs)])
        return jobs / (time.perf_counter() - began)


async def process(dsn: str, jobs: int, concurrency: int) -> float:
    """Jobs/s processed by one worker at ``concurrency`` from a queue of ``jobs``."""
    app, task = _app(dsn, pool_size=concurrency + 2)
    async with app.open_async():
        await task.batch_defer_async(*[{"n": n} for n in range(jobs)])
        began = time.perf_counter()
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
        elapsed = time.perf_counter() - began
        done = list(await app.job_manager.list_jobs_async(status="succeeded"))
        assert len(done) == jobs, f"only {len(done)} of {jobs} procrastinate jobs succeeded"
    return jobs / elapsed


OTHER_PROCESS_WORKER = """
import asyncio, logging, sys, time
import procrastinate

# Quiet its warning that the App lives in __main__ (true here, and harmless).
logging.getLogger("procrastinate").setLevel(logging.ERROR)
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=sys.argv[1]))

@app.task(name=sys.argv[2])
async def noop(n=0):
    print(repr(time.time()), flush=True)

async def main():
    async with app.open_async():
        print("ready", flush=True)
        await app.run_worker_async(install_signal_handlers=False)

asyncio.run(main())
"""
"""The worker process: procrastinate's defaults, a no-op task printing when it started."""


async def _wait_until_succeeded(app: procrastinate.App, job_id: int) -> None:
    """Return once the job's status is ``succeeded`` (polled like flowq's ``App.result``)."""

    async def succeeded() -> bool:
        status = await app.job_manager.get_job_status_async(job_id)
        return bool(status == procrastinate.jobs.Status.SUCCEEDED)

    await poll_until(succeeded)


async def latency_other_process(dsn: str, samples: int) -> dict[str, float]:
    """ms from ``defer_async`` returning to the task starting in another process."""
    results = []
    app, task = _app(dsn)
    async with ready_child(OTHER_PROCESS_WORKER, dsn, TASK) as worker, app.open_async():
        for _ in range(samples):
            job_id = await task.defer_async()
            returned = time.time()
            async with asyncio.timeout(10):
                await _wait_until_succeeded(app, job_id)
            line = await asyncio.to_thread(worker.readline)
            results.append((float(line) - returned) * 1000)
            await asyncio.sleep(0.02)
    return summary(results)


SETTINGS = {
    "driver": "PsycopgConnector (psycopg_pool, min_size=2; max_size 4, concurrency+2 "
    "when processing)",
    "enqueue_batch": "task.batch_defer_async(*kwargs)",
    "process_c10": "run_worker_async(concurrency=10, wait=False)",
    "process_c50": "run_worker_async(concurrency=50, wait=False)",
    "latency_other_process": "run_worker_async() defaults (concurrency=1, listen_notify) "
    "in a child process",
}


def figures(admin_dsn: str, jobs: int, samples: int) -> dict[str, Any]:
    """procrastinate's figures as ``{name: coroutine function}``, each on a fresh database."""

    return on_scratch_databases(
        lambda: fresh_database(admin_dsn),
        {
            "enqueue_single": lambda dsn: enqueue_single(dsn, jobs),
            "enqueue_batch": lambda dsn: enqueue_batch(dsn, jobs),
            "process_c10": lambda dsn: process(dsn, jobs, 10),
            "process_c50": lambda dsn: process(dsn, jobs, 50),
            "latency_other_process": lambda dsn: latency_other_process(dsn, samples),
        },
    )


def describe() -> dict[str, Any]:
    """Version and the knobs used, for the results file."""
    return {"version": procrastinate.__version__, **SETTINGS}
