"""flowq's throughput and latency benchmarks, interleaved with its peers' (issue 13).

Run: ``python -m benchmarks.run`` (both databases) or ``--db postgres`` / ``--db sqlite``.
Prints the machine facts, a comparison table per database and the figures against the
raw commit rate, and writes ``benchmarks/results/latest.json``.

Options: ``--pairs N`` (default 3): how many interleaved runs of flowq and each peer per
figure; ``--jobs N`` (default 5,000) and ``--samples N`` (default 50) shrink the figures
for a quick check; ``--peers`` picks peers (``auto``: every installed one); ``--suite``
picks figures.

How it compares (``benchmarks/compare.py``): for each figure, flowq and every peer that
measures it run once per pair, each on a fresh database, the order reversed every other
pair (flowq, pgqueuer, procrastinate; procrastinate, pgqueuer, flowq; ...) so a drift
of the machine falls on both sides. Reported: each one's median, and per peer the median
of the per-pair ratios with min-max (above 1: flowq better; flowq / peer for rates,
peer / flowq for times). Figures without a peer are measured the same way (median of
the pairs). The machine facts (``benchmarks/machine.py``): CPU count, load average at
start and end, CPU steal over the run (``/proc/stat``), PostgreSQL's version and
``synchronous_commit``, ``fsync``, ``wal_sync_method``, ``full_page_writes``,
``shared_buffers``, ``max_connections``; SQLite's version and journal / synchronous
mode.

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
- Measured once, without peers: cron (``--suite schedules``, see
  ``benchmarks/schedules.py``): a look at 10,000 schedules none of which is due, and
  enqueuing 1,000 due ticks; ``force_kill_on_timeout`` (``--suite isolated``, see
  ``benchmarks/isolated.py``): the per-job cost of running handlers in a process of
  their own; claims behind jobs that cannot run (``--suite blocked``, see
  ``benchmarks/blocked.py``): claim latency and throughput of unrelated jobs next to
  100,000 blocked dependants or 100,000 jobs of a workflow no worker runs; the dashboard
  (``--suite dashboard``, see ``benchmarks/dashboard.py``): its pages over 1,000,000
  jobs in PostgreSQL; a worker's memory (``--suite memory``, see
  ``benchmarks/memory.py``; about 6 minutes; ``--memory-waiting N`` and
  ``--memory-jobs N`` size it): its RSS while 20,000 workflows park and wait, and
  every 100,000 jobs over 400,000; a long history (``--suite history``, see
  ``benchmarks/history.py``): claim latency and throughput next to 1,000,000 finished
  jobs and 100,000 waiting ones, with the plans of the hot statements; table sizes
  under a steady load with ``cleanup_old_jobs`` (``--suite cleanup``, see
  ``benchmarks/cleanup.py``).

Peers (PostgreSQL only, ``pip install -e ".[bench]"``, versions pinned there): pgqueuer
(``benchmarks/peers.py``) and procrastinate (``benchmarks/procrastinate_peer.py``) for
the ``jobs`` figures but ``latency_same_process``; DBOS (``benchmarks/dbos_peer.py``)
for ``step_ms`` and ``workflows_3step_c10``. ``--peers none`` skips them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg

import flowq
from benchmarks import blocked as blocked_bench
from benchmarks import cleanup as cleanup_bench
from benchmarks import compare, machine
from benchmarks import dashboard as dashboard_bench
from benchmarks import history as history_bench
from benchmarks import isolated as isolated_bench
from benchmarks import memory as memory_bench
from benchmarks import schedules as schedule_bench
from benchmarks import steps as step_bench
from benchmarks.scratch import ready_child, scratch_database

JOBS = 5000
LATENCY_SAMPLES = 50
MEMORY_WAITING = memory_bench.WAITING
MEMORY_JOBS = memory_bench.JOBS
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
    samples = []
    async with ready_child(OTHER_PROCESS_WORKER, url):
        for _ in range(LATENCY_SAMPLES):
            job_id = await app.start(noop, {})
            returned = time.time()
            output = await app.result(job_id, timeout=10)
            samples.append((float(output) - returned) * 1000)
            await anyio.sleep(0.02)
    return summary(samples)


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
        database = contextlib.AsyncExitStack()
        dsn = await database.enter_async_context(scratch_database(PG_ADMIN, "flowq_bench"))
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        cleanup = database.aclose

    await flowq.App(url).migrate()
    return url, cleanup


def flowq_measure(kind: str, step: Any, figure_registry: flowq.Registry) -> compare.Measure:
    """One run of a flowq figure ``step(app, url)`` on a fresh database."""

    async def measure() -> Any:
        url, cleanup = await fresh_database(kind)
        try:
            async with flowq.App(url, registry=figure_registry) as app:
                return await step(app, url)
        finally:
            await cleanup()

    return measure


def raw_commit_measure(kind: str) -> compare.Measure:
    """One run of ``raw_commit`` on a fresh database."""

    async def measure() -> float:
        url, cleanup = await fresh_database(kind)
        try:
            return await raw_commit_rate(kind, url)
        finally:
            await cleanup()

    return measure


JOB_FIGURES: list[tuple[str, Any]] = [
    ("enqueue_single", lambda app, url: enqueue_single(app)),
    ("enqueue_batch", lambda app, url: enqueue_batch(app)),
    ("process_c10", lambda app, url: process(app, 10)),
    ("process_c50", lambda app, url: process(app, 50)),
    ("latency_same_process", lambda app, url: latency_same_process(app)),
    ("latency_other_process", latency_other_process),
]
"""The ``jobs`` suite: flowq figures measured in interleaved pairs."""

PEERS = ("pgqueuer", "procrastinate", "dbos")
"""Peers known to the runner (PostgreSQL only), in the order they are measured."""


def peer_figures(peers: list[str]) -> dict[str, dict[str, compare.Measure]]:
    """``{peer: {figure: measure}}`` for the wanted peers, sized like flowq's figures."""
    out: dict[str, dict[str, compare.Measure]] = {}
    if "pgqueuer" in peers:
        from benchmarks import peers as pgqueuer_peer

        out["pgqueuer"] = pgqueuer_peer.figures(PG_ADMIN, JOBS, LATENCY_SAMPLES)
    if "procrastinate" in peers:
        from benchmarks import procrastinate_peer

        out["procrastinate"] = procrastinate_peer.figures(PG_ADMIN, JOBS, LATENCY_SAMPLES)
    if "dbos" in peers:
        from benchmarks import dbos_peer

        out["dbos"] = dbos_peer.figures(PG_ADMIN, step_bench.WORKFLOWS)
    return out


def peer_settings(peers: list[str]) -> dict[str, Any]:
    """Each peer's version and the knobs its figures use (for the results file)."""
    modules = {
        "pgqueuer": "benchmarks.peers",
        "procrastinate": "benchmarks.procrastinate_peer",
        "dbos": "benchmarks.dbos_peer",
    }
    return {peer: importlib.import_module(modules[peer]).describe() for peer in peers}


async def bench(
    kind: str, suites: set[str], peers: list[str], pairs: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """flowq's figures on ``kind`` (and the peers' on PostgreSQL).

    Returns the flowq medians (``{figure: value}``) and the interleaved comparison
    (``{figure: compare.interleave(...)}``).
    """
    interleaved: list[tuple[str, compare.Measure]] = [("raw_commit", raw_commit_measure(kind))]
    if "jobs" in suites:
        interleaved += [(name, flowq_measure(kind, step, registry)) for name, step in JOB_FIGURES]
    if "steps" in suites:
        interleaved += [
            (name, flowq_measure(kind, lambda app, url, step=step: step(app), step_bench.registry))
            for name, step in step_bench.FIGURES
        ]
    others = peer_figures(peers) if kind == "postgres" else {}
    results: dict[str, Any] = {}
    comparison: dict[str, Any] = {}
    for name, measure in interleaved:
        contestants = {"flowq": measure}
        contestants.update(
            {peer: figures[name] for peer, figures in others.items() if name in figures}
        )
        comparison[name] = await compare.interleave(name, contestants, pairs, f"{kind} ")
        results[name] = comparison[name]["flowq"]["median"]
    once = [
        (name, step, suite.registry)
        for suite, key in (
            (schedule_bench, "schedules"),
            (isolated_bench, "isolated"),
            (dashboard_bench, "dashboard"),
        )
        if key in suites
        for name, step in suite.FIGURES
    ]
    for name, step, figure_registry in once:
        measure = flowq_measure(kind, lambda app, url, step=step: step(app), figure_registry)
        results[name] = await measure()
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
    if "memory" in suites:
        results["memory_waiting"] = await memory_bench.waiting_figures(
            kind, fresh_database, MEMORY_WAITING
        )
        print(f"  {kind} memory_waiting: {results['memory_waiting']}", flush=True)
        results["memory_jobs"] = await memory_bench.jobs_figures(kind, fresh_database, MEMORY_JOBS)
        print(f"  {kind} memory_jobs: {results['memory_jobs']}", flush=True)
    if "history" in suites:
        await _history(kind, results)
    if "cleanup" in suites:
        await _cleanup(kind, results)
    return results, comparison


async def _cleanup(kind: str, results: dict[str, Any]) -> None:
    """The ``cleanup`` suite (PostgreSQL only): table sizes under a steady load with
    ``cleanup_old_jobs``, with and without a VACUUM after each round."""
    reason = history_bench.skipped(kind, "cleanup")
    if reason is not None:
        print(f"  {kind} cleanup: skipped ({reason})", flush=True)
        results["cleanup"] = {"skipped": reason}
        return
    databases = [await fresh_database(kind) for _ in range(2)]
    try:
        results["cleanup"] = await cleanup_bench.figures([url for url, _ in databases])
    finally:
        for _, cleanup in databases:
            await cleanup()


async def _history(kind: str, results: dict[str, Any]) -> None:
    """The ``history`` suite (PostgreSQL only): figures with and without a long
    history, and the plans of the hot statements next to it."""
    reason = history_bench.skipped(kind)
    if reason is not None:
        print(f"  {kind} history: skipped ({reason})", flush=True)
        results["history"] = {"skipped": reason}
        return
    databases = [await fresh_database(kind) for _ in history_bench.SHAPES]
    try:
        shapes, plans = await history_bench.figures([url for url, _ in databases])
    finally:
        for _, cleanup in databases:
            await cleanup()
    for shape, figures in shapes.items():
        print(f"  {kind} history/{shape}: {figures}", flush=True)
    results["history"] = shapes
    results["history_plans"] = plans


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
            value = results["replay_1000_handler_ms"]
            lines.append(f"{'  of which in the handler (ms)':<32}{kind:<10}{value:>14.1f}")
            value = results["workflows_3step_c10"]
            lines.append(
                f"{'3-step workflows/s (c10)':<32}{kind:<10}{value:>14,.0f}{value / raw:>14.2f}"
            )
    return "\n".join(lines)


def wanted_peers(option: str, kinds: list[str]) -> list[str]:
    """Peers to measure from ``--peers``: ``auto`` means every known peer that is
    importable, ``none`` none, otherwise a comma-separated list (each must be
    importable). Peers are measured on PostgreSQL only."""
    if option == "none" or "postgres" not in kinds:
        return []
    if option == "auto":
        return [peer for peer in PEERS if importlib.util.find_spec(peer)]
    asked = [peer.strip() for peer in option.split(",") if peer.strip()]
    for peer in asked:
        if peer not in PEERS:
            raise SystemExit(f"unknown peer {peer!r}: use {', '.join(PEERS)}, auto or none")
        if not importlib.util.find_spec(peer):
            raise SystemExit(f"peer {peer!r} is not installed: pip install -e '.[bench]'")
    return [peer for peer in PEERS if peer in asked]


async def database_facts(kind: str) -> dict[str, Any]:
    """The version and durability settings of the database ``kind`` (see machine.py)."""
    if kind == "postgres":
        return await machine.postgres(PG_ADMIN)
    url, cleanup = await fresh_database("sqlite")
    try:
        return machine.sqlite(url.split("///", 1)[1])
    finally:
        await cleanup()


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgres,sqlite", help="postgres, sqlite or both")
    parser.add_argument(
        "--peers",
        default="auto",
        help=f"comma-separated among {', '.join(PEERS)}; none; or auto (default: every "
        "installed peer, when --db has postgres)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="interleaved runs of flowq and each peer per figure (default 3)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=JOBS,
        help=f"jobs per throughput figure (default {JOBS:,}); the 3-step workflow figure "
        "uses 2/5 of it. Shrink it for a quick check",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=LATENCY_SAMPLES,
        help=f"latency samples per run (default {LATENCY_SAMPLES})",
    )
    parser.add_argument(
        "--suite",
        default="jobs,steps",
        help="comma-separated: jobs, steps (replay), schedules (cron), isolated (force "
        "kill), blocked (claims behind jobs that cannot run), dashboard (pages over 1,000,000 "
        "jobs), memory (a worker's RSS with waiting workflows and over many jobs; about 6 "
        "minutes on PostgreSQL), history (claims and throughput next to 1,000,000 finished "
        "jobs), cleanup (table sizes under a steady load with cleanup_old_jobs)",
    )
    parser.add_argument(
        "--memory-waiting",
        type=int,
        default=MEMORY_WAITING,
        help=f"waiting workflows of --suite memory (default {MEMORY_WAITING:,})",
    )
    parser.add_argument(
        "--memory-jobs",
        type=int,
        default=MEMORY_JOBS,
        help=f"jobs processed by --suite memory (default {MEMORY_JOBS:,})",
    )
    args = parser.parse_args()
    if args.pairs < 1 or args.jobs < 1 or args.samples < 2:
        parser.error("--pairs and --jobs must be at least 1, --samples at least 2")
    if args.memory_waiting < 2 or args.memory_jobs < 1:
        parser.error("--memory-waiting must be at least 2, --memory-jobs at least 1")
    return args


async def main() -> None:
    global JOBS, LATENCY_SAMPLES, MEMORY_JOBS, MEMORY_WAITING
    args = parse_arguments()
    JOBS, LATENCY_SAMPLES = args.jobs, args.samples
    MEMORY_JOBS, MEMORY_WAITING = args.memory_jobs, args.memory_waiting
    step_bench.WORKFLOWS = max(1, args.jobs * 2 // 5)
    suites = {suite.strip() for suite in args.suite.split(",")}
    kinds = [kind.strip() for kind in args.db.split(",")]
    peers = wanted_peers(args.peers, kinds)
    facts = machine.start()
    for kind in kinds:
        facts[kind] = await database_facts(kind)
    all_results: dict[str, Any] = {}
    comparison: dict[str, Any] = {}
    for kind in kinds:
        print(f"benchmarking {kind} ({args.pairs} pair(s), peers: {peers or 'none'}) ...")
        all_results[kind], comparison[kind] = await bench(kind, suites, peers, args.pairs)
    machine.finish(facts)
    print()
    print("\n".join(machine.lines(facts)))
    for kind, figures in comparison.items():
        print()
        print(compare.table(kind, figures, args.pairs))
    print()
    print(table(all_results))
    for kind, results in all_results.items():
        if "blocked" in results:
            print()
            print(blocked_bench.table(kind, results["blocked"]))
        if "memory_jobs" in results or "memory_waiting" in results:
            print()
            print(memory_bench.table(kind, results))
        if "claim_ms" in results.get("history", {}).get("empty", {}):
            print()
            print("\n\n".join(results["history_plans"]))
            print()
            print(history_bench.table(results["history"]))
        if "sizes" in results.get("cleanup", {}):
            print()
            print(cleanup_bench.table(results["cleanup"]))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "latest.json"
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": facts,
        "options": {
            "db": kinds,
            "suites": sorted(suites),
            "pairs": args.pairs,
            "jobs": JOBS,
            "workflows": step_bench.WORKFLOWS,
            "latency_samples": LATENCY_SAMPLES,
            "memory_waiting": MEMORY_WAITING,
            "memory_jobs": MEMORY_JOBS,
        },
        "peers": peer_settings(peers),
        "results": all_results,
        "comparison": comparison,
    }
    out.write_text(json.dumps(document, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
