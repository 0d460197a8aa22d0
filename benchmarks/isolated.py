"""What ``force_kill_on_timeout=True`` costs per job (``--suite isolated``).

- ``isolated_job_ms``: ms per job for 200 no-op jobs run one at a time with
  ``force_kill_on_timeout=True`` (each in a pooled worker process, warmed first),
  next to ``inline_job_ms`` for the same jobs run in the worker's event loop. The
  difference is the overhead: a pickle round trip to the process and back.
- ``isolated_cold_start_ms``: the first such job of a fresh process pool (starting a
  Python process and importing the handler's module), which counts against the
  job's timeout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import flowq

__all__ = ["FIGURES", "registry"]

registry = flowq.Registry()
JOBS = 200


@registry.workflow(name="bench.isolated_noop")
async def isolated_noop(payload: dict[str, Any]) -> None:
    """Does nothing."""


async def _per_job_ms(app: flowq.App, *, isolated: bool) -> float:
    worker = app.create_worker(concurrency=1)
    await app.start(isolated_noop, {}, force_kill_on_timeout=isolated)
    await worker.run_until_idle()  # warm: the process pool, the imports
    await app.add_jobs([flowq.JobSpec(isolated_noop, {}, force_kill_on_timeout=isolated)] * JOBS)
    began = time.perf_counter()
    await worker.run_until_idle()
    return (time.perf_counter() - began) * 1000 / JOBS


async def per_job(app: flowq.App) -> dict[str, float]:
    """ms per job, isolated and inline, one at a time."""
    inline = await _per_job_ms(app, isolated=False)
    isolated = await _per_job_ms(app, isolated=True)
    return {"inline_job_ms": inline, "isolated_job_ms": isolated, "overhead_ms": isolated - inline}


async def cold_start_ms(app: flowq.App) -> float:
    """ms of a first isolated job in a fresh Python process (fresh pool)."""
    script = (
        "import anyio, time, flowq\n"
        "from flowq_testing import InMemoryStore\n"
        "from benchmarks.isolated import registry, isolated_noop\n"
        "async def main():\n"
        "    app = flowq.App(store=InMemoryStore(), registry=registry)\n"
        "    await app.start(isolated_noop, {}, force_kill_on_timeout=True)\n"
        "    began = time.perf_counter()\n"
        "    await app.create_worker().run_until_idle()\n"
        "    print((time.perf_counter() - began) * 1000)\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run(  # noqa: ASYNC221, S603 (our own script, measured once)
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


FIGURES: list[tuple[str, Any]] = [
    ("isolated_per_job", per_job),
    ("isolated_cold_start_ms", cold_start_ms),
]
