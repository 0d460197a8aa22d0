"""The test harness's cost: 1,000 three-step workflows, each with a 1-day durable
sleep, run to completion in ``flowq_testing.WorkflowEnvironment`` (in memory, fake
clock). Target (the harness issue): under 2 s of wall time on a 2-core machine.

Run: ``python -m benchmarks.harness`` (prints wall time and time per workflow; the
median of 3 runs).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio

import flowq
from flowq_testing import WorkflowEnvironment

WORKFLOWS = 1000
RUNS = 3


@flowq.step(name="bench.fetch")
async def fetch(n: int) -> int:
    """First step."""
    return n


@flowq.step(name="bench.transform")
async def transform(n: int) -> int:
    """Second step."""
    return n * 2


@flowq.step(name="bench.store")
async def store(n: int) -> str:
    """Third step."""
    return f"stored {n}"


async def three_steps(payload: dict[str, int], ctx: flowq.Context) -> str:
    """Three steps around a day's sleep."""
    value = await fetch(payload["n"])
    await ctx.sleep("1d")
    return await store(await transform(value))


async def one_run() -> float:
    """Seconds to run every workflow to completion in a fresh environment."""
    registry = flowq.Registry()
    workflow = registry.workflow(name="bench.three_steps")(three_steps)
    async with WorkflowEnvironment(registry=registry, concurrency=100) as env:
        specs: list[Any] = [flowq.JobSpec(workflow, {"n": n}) for n in range(WORKFLOWS)]
        started = time.perf_counter()
        await env.app.add_jobs(specs)
        await env.run_until_idle()
        took = time.perf_counter() - started
        done = await env.app.get_jobs(status="completed", limit=None)
        assert len(done) == WORKFLOWS, f"only {len(done)} of {WORKFLOWS} completed"
    return took


async def main() -> None:
    """Print the median wall time of :data:`RUNS` runs."""
    times = [await one_run() for _ in range(RUNS)]
    median = statistics.median(times)
    print(
        f"harness: {WORKFLOWS} three-step workflows with a 1-day sleep: "
        f"{median:.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)}), "
        f"{median / WORKFLOWS * 1000:.2f} ms per workflow"
    )


if __name__ == "__main__":
    anyio.run(main)
