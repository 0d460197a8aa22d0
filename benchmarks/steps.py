"""Replay-engine benchmarks: per-step overhead, replay cost, multi-step workflows/s.

- ``step_ms``: ms per step of one workflow running 100 sequential no-op steps (each
  step's result is durable before the next begins: one step = one commit at best),
  measured on a second such workflow so that connection set-up is not counted.
- ``replay_1000_ms``: ms to re-run a job whose 1,000 steps are all recorded (after a
  wait), i.e. to load and replay the history and complete the job: a worker's whole
  ``run_until_idle`` (its start and stop, the claims, the token read, the completion).
- ``replay_1000_handler_ms``: of that, the handler's own time in the resumed run, from
  its first line to the end of its 1,000 replayed steps (the history's load from the
  database is in it: it happens at the first step).
- ``workflows_3step_c10``: 3-step no-op workflows completed per second at
  concurrency 10 (2,000 jobs).
"""

from __future__ import annotations

import time
from typing import Any

import flowq

registry = flowq.Registry()
replayed_in: dict[int, float] = {}
"""Job id -> seconds its handler took to reach the end of its steps (last run)."""
STEP_COUNT = 100
REPLAY_STEPS = 1000
WORKFLOWS = 2000


@flowq.step(name="bench.noop_step")
async def noop_step(n: int) -> int:
    """Does nothing but return its argument."""
    return n


@registry.workflow(name="bench.many_steps")
async def many_steps(payload: dict[str, int], ctx: flowq.Context) -> int:
    """``payload["steps"]`` sequential steps, then optionally a wait for a token."""
    began = time.perf_counter()
    total = 0
    for n in range(payload["steps"]):
        total += await noop_step(n)
    replayed_in[ctx.job.id] = time.perf_counter() - began
    if payload.get("wait"):
        await ctx.wait_for_token(await ctx.create_token())
    return total


@registry.workflow(name="bench.three_steps")
async def three_steps(payload: dict[str, int]) -> int:
    """Three sequential no-op steps."""
    return await noop_step(1) + await noop_step(2) + await noop_step(3)


async def step_ms(app: flowq.App) -> float:
    """Milliseconds per step of a 100-step workflow (claim and completion included),
    after a first such workflow warmed up the connections and prepared statements."""
    worker = app.create_worker()
    await app.start(many_steps, {"steps": STEP_COUNT})
    await worker.run_until_idle()
    job_id = await app.start(many_steps, {"steps": STEP_COUNT})
    began = time.perf_counter()
    await worker.run_until_idle()
    elapsed = time.perf_counter() - began
    assert await app.result(job_id, timeout=60) == sum(range(STEP_COUNT))
    return elapsed * 1000 / STEP_COUNT


async def _resume_a_recorded_job(app: flowq.App) -> tuple[float, float]:
    """Seconds of the run resuming a job whose 1,000 steps are recorded, and of its
    handler's way through them."""
    job_id = await app.start(many_steps, {"steps": REPLAY_STEPS, "wait": 1})
    worker = app.create_worker()
    await worker.run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.wait_token_id is not None, job
    await app.complete_token(job.wait_token_id, "go")
    began = time.perf_counter()
    await worker.run_until_idle()
    elapsed = time.perf_counter() - began
    assert await app.result(job_id, timeout=60) == sum(range(REPLAY_STEPS))
    return elapsed, replayed_in.pop(job_id)


async def replay_ms(app: flowq.App) -> float:
    """Milliseconds to resume a job whose 1,000 steps are recorded."""
    whole, _ = await _resume_a_recorded_job(app)
    return whole * 1000


async def replay_handler_ms(app: flowq.App) -> float:
    """Milliseconds the resumed handler takes to load and replay its 1,000 steps."""
    _, handler = await _resume_a_recorded_job(app)
    return handler * 1000


async def workflows_per_second(app: flowq.App) -> float:
    """3-step workflows completed per second at concurrency 10."""
    await app.add_jobs([flowq.JobSpec(three_steps, {}) for _ in range(WORKFLOWS)])
    began = time.perf_counter()
    await app.create_worker(concurrency=10).run_until_idle()
    elapsed = time.perf_counter() - began
    done = len(await app.get_jobs(status="completed", limit=None))
    assert done == WORKFLOWS, f"only {done} workflows completed"
    return WORKFLOWS / elapsed


FIGURES: list[tuple[str, Any]] = [
    ("step_ms", step_ms),
    ("replay_1000_ms", replay_ms),
    ("replay_1000_handler_ms", replay_handler_ms),
    ("workflows_3step_c10", workflows_per_second),
]
