"""flowq's throughput and latency benchmarks (issue: the worker).

Run: ``python -m benchmarks.run`` (both databases) or ``--db postgres`` / ``--db sqlite``.
Prints a table and writes ``benchmarks/results/latest.json``.

Measured, with no-op handlers and one worker process:

- ``enqueue_single``: jobs/s added with one ``start()`` call each (5,000).
- ``enqueue_batch``: jobs/s added by one ``add_jobs()`` of 5,000.
- ``process_c10`` / ``process_c50``: jobs/s processed from a queue of 5,000 at
  concurrency 10 (the default) and 50.
- ``latency_same_process`` / ``latency_other_process``: ms from ``start()`` returning
  to the handler starting on an idle worker (median and p95 of 50), with the worker
  in this process and in another one (PostgreSQL NOTIFY / SQLite polling).
- ``raw_commit``: sequential single-row UPDATE commits per second on one bare
  connection (asyncpg / sqlite3), the floor every figure is compared with.
- The replay engine (``--suite steps``, see ``benchmarks/steps.py``): ms per step,
  the replay of 1,000 recorded steps, 3-step workflows per second at concurrency 10.
- Cron (``--suite schedules``, see ``benchmarks/schedules.py``): a look at 10,000
  schedules none of which is due, and enqueuing 1,000 due ticks.
- ``force_kill_on_timeout`` (``--suite isolated``, see ``benchmarks/isolated.py``):
  the per-job cost of running handlers in a process of their own.
- Claims behind jobs that cannot run (``--suite blocked``, see
  ``benchmarks/blocked.py``): claim latency and throughput of unrelated jobs next to
  100,000 blocked dependants or 100,000 jobs of a workflow no worker runs.
- The dashboard (``--suite dashboard``, see ``benchmarks/dashboard.py``): its pages
  over 1,000,000 jobs in PostgreSQL.

Peers: when PostgreSQL is benchmarked and pgqueuer is installed (``pip install -e
".[bench]"``), the same figures are measured for pgqueuer right after flowq's, on the
same server (``benchmarks/peers.py``), stored under ``results["postgres_peers"]`` and
printed with flowq/pgqueuer ratios. ``--peers none`` skips them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg

import flowq
from benchmarks import blocked as blocked_bench
from benchmarks import dashboard as dashboard_bench
from benchmarks import isolated as isolated_bench
from benchmarks import schedules as schedule_bench
from benchmarks import steps as step_bench

JOBS = 5000
LATENCY_SAMPLES = 50
PG_ADMIN = os.environ.get("FLOWQ_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).parent / "results"

registry = flowq.Registry()
started_at: dict[int, float] = {}


@registry.workflow(name="bench.noop")
async def noop(payload: dict[str, Any], ctx: flowq.Context) -> None:
    """Does nothing (records when it started, for the latency run)."""
    started_at[ctx.job.id] = time.perf_counter()


async def raw_commit_rate(kind: str, url: str, seconds: float = 2.0) -> float:
    """Sequential single-row UPDATE commits per second on one bare connection."""
    if kind == "postgres":
        connection = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS bench_raw (id int primary key, n bigint)"
            )
            await connection.execute("INSERT INTO bench_raw VALUES (1, 0) ON CONFLICT DO NOTHING")
            count, deadline = 0, time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await connection.execute("UPDATE bench_raw SET n = n + 1 WHERE id = 1")
                count += 1
            return count / seconds
        finally:
            await connection.close()
    import sqlite3

    path = url.split("///", 1)[1]
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE IF NOT EXISTS bench_raw (id int primary key, n int)")
    connection.execute("INSERT OR IGNORE INTO bench_raw VALUES (1, 0)")
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE bench_raw SET n = n + 1 WHERE id = 1")
        connection.execute("COMMIT")
        count += 1
    connection.close()
    return count / seconds


async def enqueue_single(app: flowq.App) -> float:
    began = time.perf_counter()
    for n in range(JOBS):
        await app.start(noop, {"n": n})
    return JOBS / (time.perf_counter() - began)


async def enqueue_batch(app: flowq.App) -> float:
    began = time.perf_counter()
    await app.add_jobs([flowq.JobSpec(noop, {"n": n}) for n in range(JOBS)])
    return JOBS / (time.perf_counter() - began)


async def process(app: flowq.App, concurrency: int) -> float:
    await app.add_jobs([flowq.JobSpec(noop, {"n": n}) for n in range(JOBS)])
    worker = app.create_worker(concurrency=concurrency)
    began = time.perf_counter()
    await worker.run_until_idle()
    elapsed = time.perf_counter() - began
    done = len(await app.get_jobs(status="completed", limit=None))
    assert done >= JOBS, f"only {done} jobs completed"
    return JOBS / elapsed


async def latency_same_process(app: flowq.App) -> dict[str, float]:
    started_at.clear()
    worker = app.create_worker()
    samples = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        await anyio.sleep(0.5)
        for _ in range(LATENCY_SAMPLES):
            job_id = await app.start(noop, {})
            returned = time.perf_counter()
            with anyio.fail_after(10):
                while job_id not in started_at:  # noqa: ASYNC110 (tight poll, on purpose)
                    await anyio.sleep(0.0002)
            samples.append((started_at[job_id] - returned) * 1000)
            await anyio.sleep(0.02)
        await worker.stop()
    return summary(samples)


OTHER_PROCESS_WORKER = """
import sys, time, anyio, flowq
registry = flowq.Registry()

@registry.workflow(name="bench.noop")
async def noop(payload, ctx):
    return time.time()

async def main():
    async with flowq.App(sys.argv[1], registry=registry) as app:
        print("ready", flush=True)
        await app.create_worker().run()

anyio.run(main)
"""


async def latency_other_process(app: flowq.App, url: str) -> dict[str, float]:
    process = subprocess.Popen(  # noqa: ASYNC220, S603 (started once, before any sample)
        [sys.executable, "-c", OTHER_PROCESS_WORKER, url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        await anyio.to_thread.run_sync(process.stdout.readline)
        await anyio.sleep(1.0)
        samples = []
        for _ in range(LATENCY_SAMPLES):
            job_id = await app.start(noop, {})
            returned = time.time()
            output = await app.result(job_id, timeout=10)
            samples.append((float(output) - returned) * 1000)
            await anyio.sleep(0.02)
        return summary(samples)
    finally:
        process.terminate()
        process.wait(timeout=30)


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p95 and max of latency samples (ms)."""
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[int(len(ordered) * 0.95) - 1],
        "max_ms": ordered[-1],
    }


async def fresh_database(kind: str) -> tuple[str, Any]:
    """A new empty flowq database; returns its URL and a cleanup coroutine function."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="flowq-bench-")
        url = f"sqlite+aiosqlite:///{folder}/bench.db"

        async def cleanup() -> None:
            for path in Path(folder).glob("*"):  # noqa: ASYNC240 (cleanup, not measured)
                path.unlink()
            Path(folder).rmdir()  # noqa: ASYNC240
    else:
        name = f"flowq_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = (
            PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
            + f"/{name}"
        )

        async def cleanup() -> None:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    await flowq.App(url).migrate()
    return url, cleanup


async def bench(kind: str, suites: set[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    steps = [
        ("enqueue_single", enqueue_single),
        ("enqueue_batch", enqueue_batch),
        ("process_c10", lambda app: process(app, 10)),
        ("process_c50", lambda app: process(app, 50)),
        ("latency_same_process", latency_same_process),
    ]
    url, cleanup = await fresh_database(kind)
    try:
        results["raw_commit"] = await raw_commit_rate(kind, url)
    finally:
        await cleanup()
    runs = [(name, step, registry) for name, step in steps if "jobs" in suites]
    runs += [
        (name, step, step_bench.registry) for name, step in step_bench.FIGURES if "steps" in suites
    ]
    runs += [
        (name, step, schedule_bench.registry)
        for name, step in schedule_bench.FIGURES
        if "schedules" in suites
    ]
    runs += [
        (name, step, isolated_bench.registry)
        for name, step in isolated_bench.FIGURES
        if "isolated" in suites
    ]
    runs += [
        (n, s, dashboard_bench.registry)
        for n, s in dashboard_bench.FIGURES
        if "dashboard" in suites
    ]
    for name, step, figure_registry in runs:
        url, cleanup = await fresh_database(kind)
        try:
            async with flowq.App(url, registry=figure_registry) as app:
                results[name] = await step(app)
        finally:
            await cleanup()
        print(f"  {kind} {name}: {results[name]}", flush=True)
    if "blocked" in suites:
        databases = [await fresh_database(kind) for _ in blocked_bench.SHAPES]
        try:
            shapes = await blocked_bench.shape_figures([url for url, _ in databases])
        finally:
            for _, cleanup in databases:
                await cleanup()
        for shape, figures in shapes.items():
            print(f"  {kind} blocked/{shape}: {figures}", flush=True)
        results["blocked"] = blocked_bench.with_ratios(shapes)
    if "jobs" not in suites:
        return results
    url, cleanup = await fresh_database(kind)
    try:
        async with flowq.App(url, registry=registry) as app:
            results["latency_other_process"] = await latency_other_process(app, url)
    finally:
        await cleanup()
    print(f"  {kind} latency_other_process: {results['latency_other_process']}", flush=True)
    return results


def table(all_results: dict[str, dict[str, Any]]) -> str:
    """Every figure, with its ratio to the raw commit rate (or time)."""
    lines = [f"{'figure':<32}{'database':<10}{'value':>14}{'x raw commit':>14}"]
    for kind, results in all_results.items():
        if kind == "postgres_peers":
            continue
        raw = results["raw_commit"]
        commit_ms = 1000 / raw
        lines.append(f"{'raw_commit (commits/s)':<32}{kind:<10}{raw:>14,.0f}{1.0:>14.2f}")
        for name in ("enqueue_single", "enqueue_batch", "process_c10", "process_c50"):
            if name in results:
                value = results[name]
                lines.append(
                    f"{name + ' (jobs/s)':<32}{kind:<10}{value:>14,.0f}{value / raw:>14.2f}"
                )
        for name in ("latency_same_process", "latency_other_process"):
            if name in results:
                summary = results[name]
                lines.append(
                    f"{name + ' p50 (ms)':<32}{kind:<10}{summary['p50_ms']:>14.2f}"
                    f"{summary['p50_ms'] / commit_ms:>14.2f}"
                )
                lines.append(f"{name + ' p95 (ms)':<32}{kind:<10}{summary['p95_ms']:>14.2f}")
        if "step_ms" in results:
            value = results["step_ms"]
            lines.append(
                f"{'step (ms per step)':<32}{kind:<10}{value:>14.3f}{value / commit_ms:>14.2f}"
            )
            value = results["replay_1000_ms"]
            lines.append(f"{'replay of 1,000 steps (ms)':<32}{kind:<10}{value:>14.1f}")
            value = results["workflows_3step_c10"]
            lines.append(
                f"{'3-step workflows/s (c10)':<32}{kind:<10}{value:>14,.0f}{value / raw:>14.2f}"
            )
    return "\n".join(lines)


PEER_FIGURES = [
    # (peer figure, flowq figure it is compared with, or None)
    ("enqueue_single", "enqueue_single"),
    ("enqueue_batch", "enqueue_batch"),
    ("process_c10", "process_c10"),
    ("process_c50", "process_c50"),
    ("process_c10_worker_cap", "process_c10"),
    ("process_unlimited", None),
]


def peer_table(flowq_results: dict[str, Any], peers: dict[str, dict[str, Any]]) -> str:
    """Each peer's figures next to flowq's PostgreSQL ones, as ratios (>1: flowq better).

    Throughput: flowq / peer. Latency: peer / flowq (a peer p50 twice flowq's reads 2.00).
    """
    lines = []
    for peer, results in peers.items():
        lines.append("")
        lines.append(f"peer: {peer}, same run, same PostgreSQL (ratio > 1 means flowq is better)")
        lines.append(f"{'figure':<34}{peer:>12}{'flowq':>12}{'ratio':>10}  compared with")
        for name, ours in PEER_FIGURES:
            value = results[name]
            if ours is None:
                lines.append(f"{name + ' (jobs/s)':<34}{value:>12,.0f}{'':>12}{'':>10}")
                continue
            flowq_value = flowq_results[ours]
            lines.append(
                f"{name + ' (jobs/s)':<34}{value:>12,.0f}{flowq_value:>12,.0f}"
                f"{flowq_value / value:>10.2f}  flowq {ours}"
            )
        for stat in ("p50_ms", "p95_ms"):
            value = results["latency_other_process"][stat]
            flowq_value = flowq_results["latency_other_process"][stat]
            label = f"latency_other_process {stat[:3]} (ms)"
            lines.append(
                f"{label:<34}{value:>12.2f}{flowq_value:>12.2f}{value / flowq_value:>10.2f}"
                f"  flowq latency_other_process"
            )
    return "\n".join(lines)


def _wanted_peers(option: str, kinds: list[str]) -> list[str]:
    """Peers to measure: ``auto`` means pgqueuer when PostgreSQL is benchmarked and
    pgqueuer is importable; ``none`` means none; ``pgqueuer`` insists on it."""
    if option == "none" or "postgres" not in kinds:
        return []
    if option == "auto":
        return ["pgqueuer"] if importlib.util.find_spec("pgqueuer") else []
    if option != "pgqueuer":
        raise SystemExit(f"unknown peer {option!r}: use pgqueuer, auto or none")
    return ["pgqueuer"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgres,sqlite", help="postgres, sqlite or both")
    parser.add_argument(
        "--peers",
        default="auto",
        help="pgqueuer, none, or auto (default: pgqueuer if importable and --db has postgres)",
    )
    parser.add_argument(
        "--suite",
        default="jobs,steps",
        help="comma-separated: jobs, steps (replay), schedules (cron), isolated (force "
        "kill), blocked (claims behind jobs that cannot run), dashboard (pages over 1,000,000 "
        "jobs)",
    )
    args = parser.parse_args()
    suites = {suite.strip() for suite in args.suite.split(",")}
    kinds = [kind.strip() for kind in args.db.split(",")]
    peers = _wanted_peers(args.peers, kinds)
    all_results: dict[str, Any] = {}
    for kind in kinds:
        print(f"benchmarking {kind} ...", flush=True)
        all_results[kind] = await bench(kind, suites)
        if kind == "postgres" and peers and "jobs" in suites:
            from benchmarks.peers import pgqueuer_bench

            print("benchmarking peer pgqueuer on postgres ...", flush=True)
            all_results["postgres_peers"] = {
                "pgqueuer": await pgqueuer_bench(PG_ADMIN, jobs=JOBS, samples=LATENCY_SAMPLES)
            }
    print()
    print(table(all_results))
    for kind, results in all_results.items():
        if "blocked" in results:
            print()
            print(blocked_bench.table(kind, results["blocked"]))
    if "postgres_peers" in all_results:
        print(peer_table(all_results["postgres"], all_results["postgres_peers"]))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "latest.json"
    out.write_text(
        json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": all_results}, indent=2)
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
