"""Peer measurements: DBOS Transact for the workflow figures of ``benchmarks/steps.py``.

DBOS (``pip install -e ".[bench]"``, pinned there) is a process-wide singleton with
background threads, so every figure runs in a child process of its own
(``python -m benchmarks.dbos_peer FIGURE SYSTEM_DB_URL COUNT``, which prints one JSON
line), on a fresh system database ``flowq_bench_dbos_<hex>`` on the same PostgreSQL
(created by ``DBOS.launch()`` itself, with DBOS's migrations; dropped afterwards).
Only the public API is used: ``DBOS(config={"name", "system_database_url"})``,
``@DBOS.workflow()``, ``@DBOS.step()``, ``DBOS.launch()``, ``DBOS.listen_queues``,
``DBOS.register_queue_async``, ``Queue.enqueue_async``, ``DBOS.list_workflows_async``. No
network besides PostgreSQL: no Conductor key, OTLP off (the defaults).

Figures, mirroring ``benchmarks/steps.py``:

- ``step_ms``: ms per step of a workflow running 100 sequential no-op ``@DBOS.step``
  calls, called directly (``await many_steps(100)``: DBOS runs it in this process,
  recording its status, each step's output and its result), measured on a second such
  workflow so that connection set-up is not counted.
- ``workflows_3step_c10``: 3-step no-op workflows completed per second at concurrency
  10 (2,000 by default). A first child process, which listens to no queue of the
  benchmark (``DBOS.listen_queues(["idle"])``), enqueues them on the queue ``bench``
  with ``Queue.enqueue_async``; a second child process registers the queue with
  ``worker_concurrency=10`` and ``polling_interval_sec=0.01`` (DBOS's default of 1 s
  would cap the queue at 10 dequeues a second: DBOS's knob for how soon a free slot is
  refilled) and the clock runs from just before ``register_queue_async`` until every
  workflow has run its body and none is ``ENQUEUED`` or ``PENDING`` any more.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.scratch import scratch_database

STEP_COUNT = 100
QUEUE = "bench"
CONCURRENCY = 10
POLLING_INTERVAL_SEC = 0.01


def _child(figure: str, url: str, count: int) -> dict[str, Any]:
    """Runs in the child process: launch DBOS on ``url`` and measure ``figure``."""
    from dbos import DBOS

    DBOS(config={"name": "flowq_bench", "system_database_url": url, "log_level": "WARNING"})
    finished = threading.Event()
    ran = 0
    lock = threading.Lock()

    @DBOS.step()
    async def noop_step(n: int) -> int:
        return n

    @DBOS.workflow()
    async def many_steps(steps: int) -> int:
        total = 0
        for n in range(steps):
            total += await noop_step(n)
        return total

    @DBOS.workflow()
    async def three_steps() -> int:
        nonlocal ran
        value = await noop_step(1) + await noop_step(2) + await noop_step(3)
        with lock:
            ran += 1
            if ran == count:
                finished.set()
        return value

    async def step_ms() -> float:
        assert await many_steps(STEP_COUNT) == sum(range(STEP_COUNT))
        began = time.perf_counter()
        assert await many_steps(STEP_COUNT) == sum(range(STEP_COUNT))
        return (time.perf_counter() - began) * 1000 / STEP_COUNT

    async def enqueue() -> float:
        queue = await DBOS.register_queue_async(
            QUEUE, worker_concurrency=CONCURRENCY, polling_interval_sec=POLLING_INTERVAL_SEC
        )
        for _ in range(count):
            await queue.enqueue_async(three_steps)
        return float(count)

    async def drain() -> float:
        began = time.perf_counter()
        await DBOS.register_queue_async(
            QUEUE, worker_concurrency=CONCURRENCY, polling_interval_sec=POLLING_INTERVAL_SEC
        )
        await asyncio.to_thread(finished.wait, 300)
        while await DBOS.list_workflows_async(  # noqa: ASYNC110 (DBOS has no completion event)
            status=["ENQUEUED", "PENDING"], load_input=False, load_output=False, limit=1
        ):
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - began
        done = await DBOS.list_workflows_async(
            status="SUCCESS", queue_name=QUEUE, load_input=False, load_output=False
        )
        assert ran == count, f"only {ran} of {count} DBOS workflows ran"
        assert len(done) >= count, f"only {len(done)} of {count} DBOS workflows succeeded"
        return count / elapsed

    measures = {"step_ms": step_ms, "enqueue": enqueue, "drain": drain}
    if figure == "enqueue":
        DBOS.listen_queues(["idle"])
    DBOS.launch()
    try:
        return {"value": asyncio.run(measures[figure]())}
    finally:
        DBOS.destroy()


async def _in_child(figure: str, url: str, count: int) -> float:
    """Run one ``figure`` in a child process and return its value."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.dbos_peer",
        figure,
        url,
        str(count),
        stdout=subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"DBOS child {figure} failed with exit status {child.returncode}")
    value: float = json.loads(out.decode().strip().splitlines()[-1])["value"]
    return value


async def _on_fresh_database(admin_dsn: str, figures: list[tuple[str, int]]) -> float:
    """Run the child figures in order on a new system database; the last one's value."""
    async with scratch_database(admin_dsn, "flowq_bench_dbos", create=False) as url:
        value = 0.0
        for figure, count in figures:
            value = await _in_child(figure, url, count)
        return value


def figures(admin_dsn: str, workflows: int) -> dict[str, Any]:
    """DBOS's figures as ``{name: coroutine function}``, each on a fresh database."""
    return {
        "step_ms": lambda: _on_fresh_database(admin_dsn, [("step_ms", 0)]),
        "workflows_3step_c10": lambda: _on_fresh_database(
            admin_dsn, [("enqueue", workflows), ("drain", workflows)]
        ),
    }


def describe() -> dict[str, Any]:
    """Version and the knobs used, for the results file."""
    from importlib.metadata import version

    return {
        "version": version("dbos"),
        "step_ms": f"a @DBOS.workflow of {STEP_COUNT} @DBOS.step calls, called directly",
        "workflows_3step_c10": f"register_queue_async(worker_concurrency={CONCURRENCY}, "
        f"polling_interval_sec={POLLING_INTERVAL_SEC}), enqueued by another process",
    }


if __name__ == "__main__":
    result = _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    print(json.dumps(result), flush=True)
