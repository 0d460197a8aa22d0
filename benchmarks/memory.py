"""What a worker keeps in memory (issue 13, target 6): ``--suite memory``.

The worker runs in a process of its own (``python -m benchmarks.memory worker URL``,
started by the runner), so that its resident memory is its alone: the runner enqueues
from its own process and reads the worker's ``VmRSS`` and ``VmHWM`` (peak) from
``/proc/<pid>/status``. Each part runs on a fresh database, dropped afterwards.

- ``memory_waiting``: :data:`WAITING` workflows park (``--memory-waiting``; the
  target's size is 100,000), half on a one-hour ``ctx.sleep`` and half on
  ``ctx.wait_for_token`` (each creates its token first), then the worker idles
  :data:`IDLE_SECONDS` with all of them waiting. Reported: RSS of the idle worker
  before any job (``start_mb``), after a warm-up of :data:`WARMUP_WAITING` parked
  workflows of the same kinds (``before_mb``), every tenth of the parked ones
  (``series``: ``[parked, MB]``), once all are ``waiting`` (``parked_mb``), after the
  idle time (``after_mb``), the peak (``peak_mb``, VmHWM) and ``kb_per_1000_waiting``
  = (after - before) per 1,000 parked; the target is flat (no cost per waiting
  workflow). Then the worker returns the memory glibc keeps after it was freed
  (``malloc_trim(0)``) and ``trimmed_mb`` is its RSS after that: what it really holds
  (parking leaves freed but unreturned heap behind, which a trim gives back).
  Enqueued with ``add_jobs`` in batches of :data:`BATCH_WAITING`; the worker runs at
  concurrency 50.
- ``memory_jobs``: one worker at concurrency 50 processes :data:`JOBS` no-op jobs
  (``--memory-jobs``; the target's size is 1,000,000), enqueued :data:`BATCH_JOBS` at
  a time whenever fewer than half a batch is left (so the queue is never one giant
  backlog); finished jobs are deleted with ``cleanup_old_jobs(0)`` every
  :data:`CLEANUP_EVERY` jobs to keep the table small. RSS is sampled every 100,000
  jobs (``series``: ``[jobs, MB]``); ``growth_mb`` is the growth from the
  200,000-job sample to the end (the first samples include the warm-up),
  ``kb_per_100k`` the same per 100,000 jobs, ``trimmed_mb`` the RSS at the end
  after ``malloc_trim(0)``. Target: no growth beyond noise.

The defaults keep the suite to about 6 minutes on a quiet 2-core machine (a parked
workflow costs the worker several transactions: about 100-200 parked per second
there, against 1,000-2,000 no-op jobs); ``--memory-waiting 100000 --memory-jobs
1000000`` measures the target's sizes (about half an hour). With
``FLOWQ_BENCH_TRACEMALLOC=1`` the worker traces its allocations and the figures
include how much traced memory grew, and the :data:`TOP_SITES` sites that grew most
(``tracemalloc`` line statistics), between the first sample after the warm-up and the
end of each part. Tracing halves the speed and its first snapshot stays in memory,
so RSS figures of such a run are not comparable.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy

import flowq

__all__ = ["jobs_figures", "registry", "table", "waiting_figures"]

registry = flowq.Registry()

WAITING = 20_000
JOBS = 400_000
WARMUP_WAITING = 5_000
BATCH_WAITING = 10_000
BATCH_JOBS = 50_000
SAMPLE_EVERY = 100_000
CLEANUP_EVERY = 100_000
CONCURRENCY = 50
IDLE_SECONDS = 10.0
POLL_SECONDS = 0.25
PART_TIMEOUT = 900.0
"""Longest a part may take before it is given up (seconds)."""
TRACE_ENV = "FLOWQ_BENCH_TRACEMALLOC"
TOP_SITES = 15
ROOT = Path(__file__).resolve().parent.parent

FreshDatabase = Callable[[str], Awaitable[tuple[str, Any]]]
"""``run.fresh_database``: a new migrated database of a kind; its URL and cleanup."""


@registry.workflow(name="bench.memory.noop")
async def noop(payload: dict[str, Any]) -> None:
    """Does nothing."""


@registry.workflow(name="bench.memory.sleeper")
async def sleeper(payload: dict[str, Any], ctx: flowq.Context) -> None:
    """Parks on a one-hour timer."""
    await ctx.sleep("1h")


@registry.workflow(name="bench.memory.token_waiter")
async def token_waiter(payload: dict[str, Any], ctx: flowq.Context) -> None:
    """Creates a token and parks until it is completed."""
    token = await ctx.create_token()
    await ctx.wait_for_token(token)


def status_mb(pid: int | str = "self") -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process in MB, from ``/proc/<pid>/status``."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


class WorkerProcess:
    """A flowq worker in a child process, driven through its stdin and stdout."""

    def __init__(self, url: str) -> None:
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path)
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "benchmarks.memory", "worker", url, str(CONCURRENCY)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.tracing = bool(os.environ.get(TRACE_ENV))

    async def started(self) -> None:
        """Wait until the worker runs."""
        with anyio.fail_after(60):
            assert await self._reply() == {"ready": True}

    def rss(self) -> tuple[float, float]:
        """The worker's ``(VmRSS, VmHWM)`` in MB."""
        return status_mb(self.process.pid)

    async def snapshot(self) -> None:
        """Have the worker take its first tracemalloc snapshot (when tracing)."""
        if self.tracing:
            await self._ask("snapshot")

    async def growth(self) -> list[str]:
        """The sites that grew most since the snapshot (when tracing)."""
        if not self.tracing:
            return []
        reply = await self._ask("report")
        return list(reply["top"])

    async def trimmed(self) -> float:
        """The worker's RSS (MB) once glibc has returned the memory it keeps after it
        was freed (``malloc_trim(0)``): what the worker really holds."""
        await self._ask("trim")
        return self.rss()[0]

    async def stop(self) -> None:
        """Stop the worker and wait for its process to end."""
        try:
            await self._ask("stop")
        finally:
            await anyio.to_thread.run_sync(lambda: self.process.wait(timeout=60))

    def kill(self) -> None:
        """End the process if it still runs (after a failure)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    async def _ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        with anyio.fail_after(120):
            return await self._reply()

    async def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await anyio.to_thread.run_sync(self.process.stdout.readline)
        if not line:
            raise RuntimeError("the benchmark worker process ended early")
        reply: dict[str, Any] = json.loads(line)
        return reply


async def _counts(app: flowq.App) -> dict[str, int]:
    """Jobs per status."""
    store: Any = app.store
    async with store.engine.connect() as connection:
        rows = await connection.execute(
            sqlalchemy.text("SELECT status, count(*) FROM flowq_jobs GROUP BY status")
        )
        return {str(status): int(count) for status, count in rows}


async def _run_part(
    kind: str, fresh: FreshDatabase, part: Callable[[flowq.App, WorkerProcess], Awaitable[Any]]
) -> Any:
    """``part(app, worker)`` on a fresh database with a worker process on it."""
    url, cleanup = await fresh(kind)
    worker: WorkerProcess | None = None
    try:
        async with flowq.App(url, registry=registry) as app:
            worker = WorkerProcess(url)
            await worker.started()
            with anyio.fail_after(PART_TIMEOUT):
                result = await part(app, worker)
            await worker.stop()
            return result
    finally:
        if worker is not None:
            worker.kill()
        await cleanup()


async def _park(app: flowq.App, worker: WorkerProcess, count: int) -> list[list[float]]:
    """Enqueue ``count`` parking workflows (half timers, half tokens) in batches and
    wait until all are waiting; returns the worker's RSS every tenth of them
    (``[waiting, MB]``, counted from the first of them)."""
    already = (await _counts(app)).get("waiting", 0)
    for first in range(0, count, BATCH_WAITING):
        size = min(BATCH_WAITING, count - first)
        await app.add_jobs(
            [flowq.JobSpec(sleeper if n % 2 else token_waiter, {"n": n}) for n in range(size)]
        )
    series: list[list[float]] = []
    marks = [count * tenth // 10 for tenth in range(1, 11)]
    while marks:
        parked = (await _counts(app)).get("waiting", 0) - already
        while marks and parked >= marks[0]:
            series.append([marks.pop(0), round(worker.rss()[0], 1)])
        if marks:
            await anyio.sleep(POLL_SECONDS)
    return series


async def _waiting(count: int, app: flowq.App, worker: WorkerProcess) -> dict[str, Any]:
    await anyio.sleep(2)
    start = worker.rss()[0]
    await _park(app, worker, WARMUP_WAITING)
    await anyio.sleep(2)
    before = worker.rss()[0]
    await worker.snapshot()
    began = time.perf_counter()
    series = await _park(app, worker, count)
    took = time.perf_counter() - began
    parked = worker.rss()[0]
    idle = []
    for _ in range(int(IDLE_SECONDS)):
        await anyio.sleep(1)
        idle.append(round(worker.rss()[0], 1))
    after, hwm = worker.rss()
    trimmed = await worker.trimmed()
    counts = await _counts(app)
    assert counts == {"waiting": WARMUP_WAITING + count}, counts
    return {
        "waiting": count,
        "start_mb": round(start, 1),
        "before_mb": round(before, 1),
        "parked_mb": round(parked, 1),
        "after_mb": round(after, 1),
        "peak_mb": round(hwm, 1),
        "series": series,
        "idle_series_mb": idle,
        "kb_per_1000_waiting": round((after - before) * 1024 / (count / 1000), 2),
        "trimmed_mb": round(trimmed, 1),
        "parked_per_s": round(count / took),
        "top_growth": await worker.growth(),
    }


async def _jobs(total: int, app: flowq.App, worker: WorkerProcess) -> dict[str, Any]:
    enqueued = cleaned_at = 0
    series: list[list[float]] = [[0, round(worker.rss()[0], 1)]]
    marks = [*range(SAMPLE_EVERY, total, SAMPLE_EVERY), total]
    traced_from = marks[1] if len(marks) > 1 else marks[0]
    began = time.perf_counter()
    while True:
        counts = await _counts(app)
        unfinished = counts.get("pending", 0) + counts.get("processing", 0)
        done = enqueued - unfinished
        while marks and done >= marks[0]:
            series.append([done, round(worker.rss()[0], 1)])
            if marks.pop(0) == traced_from:
                await worker.snapshot()
        if done >= total:
            break
        if enqueued < total and unfinished < BATCH_JOBS // 2:
            size = min(BATCH_JOBS, total - enqueued)
            await app.add_jobs([flowq.JobSpec(noop, {"n": n}) for n in range(size)])
            enqueued += size
        elif done - cleaned_at >= CLEANUP_EVERY:
            await app.cleanup_old_jobs(0, batch_size=10_000)
            cleaned_at = done
        else:
            await anyio.sleep(POLL_SECONDS)
    took = time.perf_counter() - began
    hwm = worker.rss()[1]
    trimmed = await worker.trimmed()
    base_jobs, base = series[2] if len(series) > 2 else series[1]  # 200k: after warm-up
    end_jobs, end = series[-1]
    span = max(end_jobs - base_jobs, 1)
    return {
        "jobs": total,
        "series": series,
        "growth_mb": round(end - base, 1),
        "kb_per_100k": round((end - base) * 1024 / span * 100_000, 1),
        "peak_mb": round(hwm, 1),
        "trimmed_mb": round(trimmed, 1),
        "jobs_per_s": round(total / took),
        "top_growth": await worker.growth(),
    }


async def waiting_figures(kind: str, fresh: FreshDatabase, count: int = WAITING) -> dict[str, Any]:
    """The ``memory_waiting`` figures on a fresh database of ``kind``."""
    return dict(await _run_part(kind, fresh, lambda app, worker: _waiting(count, app, worker)))


async def jobs_figures(kind: str, fresh: FreshDatabase, total: int = JOBS) -> dict[str, Any]:
    """The ``memory_jobs`` figures on a fresh database of ``kind``."""
    return dict(await _run_part(kind, fresh, lambda app, worker: _jobs(total, app, worker)))


def table(kind: str, results: dict[str, Any]) -> str:
    """Both parts of one database as text."""
    lines = []
    waiting = results.get("memory_waiting")
    if waiting:
        lines.append(
            f"memory {kind}: {waiting['waiting']:,} waiting workflows (parked at "
            f"{waiting['parked_per_s']:,}/s): RSS idle {waiting['start_mb']} MB, "
            f"{WARMUP_WAITING:,} waiting {waiting['before_mb']} MB, all parked "
            f"{waiting['parked_mb']} MB, after {IDLE_SECONDS:g} s idle {waiting['after_mb']} MB, "
            f"peak {waiting['peak_mb']} MB: {waiting['kb_per_1000_waiting']} KB per 1,000 "
            f"waiting; {waiting['trimmed_mb']} MB once malloc_trim(0) returned freed memory"
        )
        series = ", ".join(f"{int(n):,}: {mb}" for n, mb in waiting["series"])
        lines.append(f"memory {kind}: RSS MB while they park: {series}")
    jobs = results.get("memory_jobs")
    if jobs:
        series = ", ".join(f"{int(n) // 1000}k: {mb}" for n, mb in jobs["series"])
        lines.append(
            f"memory {kind}: {jobs['jobs']:,} jobs at c{CONCURRENCY} ({jobs['jobs_per_s']:,} "
            f"jobs/s): RSS MB {series}; from 200k to the end {jobs['growth_mb']:+} MB "
            f"({jobs['kb_per_100k']:+} KB per 100k jobs), peak {jobs['peak_mb']} MB, "
            f"{jobs['trimmed_mb']} MB after malloc_trim(0)"
        )
    for part in (waiting, jobs):
        for site in (part or {}).get("top_growth", []):
            lines.append(f"  grew: {site}")
    return "\n".join(lines)


# -- the worker process -------------------------------------------------------------


def _malloc_trim() -> bool:
    """Hand the memory glibc keeps after it was freed back to the system (False where
    there is no glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.malloc_trim(0))


def _commands(out: Callable[[dict[str, Any]], None], stop: Callable[[], None]) -> None:
    """Answer the runner's commands (a thread of the worker process)."""
    first: tracemalloc.Snapshot | None = None
    for line in sys.stdin:
        command = line.strip()
        if command == "snapshot":
            first = tracemalloc.take_snapshot()
            out({"ok": True})
        elif command == "report":
            top: list[str] = []
            if first is not None:
                stats = tracemalloc.take_snapshot().compare_to(first, "lineno")
                total = sum(stat.size_diff for stat in stats) / 1024
                grown = sorted(stats, key=lambda stat: stat.size_diff, reverse=True)
                top = [f"traced memory {total:+.1f} KiB in all"]
                top += [str(stat) for stat in grown[:TOP_SITES] if stat.size_diff > 0]
            out({"top": top})
        elif command == "trim":
            out({"trimmed": _malloc_trim()})
        elif command == "stop":
            break
    stop()


async def _serve(url: str, concurrency: int) -> None:
    if os.environ.get(TRACE_ENV):
        tracemalloc.start()
    async with flowq.App(url, registry=registry) as app:
        worker = app.create_worker(concurrency=concurrency)
        stopped = anyio.Event()

        def out(reply: dict[str, Any]) -> None:
            print(json.dumps(reply), flush=True)

        def stop() -> None:
            anyio.from_thread.run_sync(stopped.set, token=token)

        token = anyio.lowlevel.current_token()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            out({"ready": True})
            threading.Thread(target=_commands, args=(out, stop), daemon=True).start()
            await stopped.wait()
            await worker.stop()
        out({"stopped": True})


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    anyio.run(_serve, sys.argv[2], int(sys.argv[3]))
