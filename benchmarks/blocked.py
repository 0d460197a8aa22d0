"""Claims behind jobs that cannot run (issue 7, item 5): ``--suite blocked``.

Each shape is measured on a fresh database, next to the same figures without the
jobs that cannot run (``unblocked``), in the same run:

- ``blocked``: 100,000 jobs depending on one prerequisite that does not finish (it is
  due tomorrow), added before the unrelated jobs;
- ``foreign``: 100,000 due jobs of a workflow no worker runs, added before them.

Figures per shape: ``claim_ms`` (median ms of one ``claim_jobs`` of 10 jobs straight
on the store, 40 claims over a queue of 1,000 unrelated jobs) and ``jobs_per_s``
(2,000 unrelated no-op jobs processed by a worker at concurrency 10 with
``run_until_idle``; the best of 2 rounds). The three databases exist side by side
and are measured in turns, so that the load of a shared machine weighs on all
shapes alike. ``x base`` compares each shape with ``unblocked`` (1.0 = no cost; the
target is claim latency and throughput within 10%).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import flowq

registry = flowq.Registry()
CANNOT_RUN = 100_000
UNRELATED = 2_000
CLAIM_QUEUE = 1_000
CLAIMS = 40
CLAIM_SIZE = 10
CHUNK = 10_000
ROUNDS = 2


@registry.workflow(name="bench.unrelated")
async def unrelated(payload: dict[str, Any]) -> None:
    """Does nothing."""


async def _not_run(payload: dict[str, Any]) -> None:
    """Registered so that jobs can be added; the measured worker does not run it."""


for _name in ("bench.prerequisite", "bench.dependant", "bench.nobody_runs_this"):
    registry.workflow(name=_name)(
        type(_not_run)(_not_run.__code__, globals(), _name.replace(".", "_"))
    )


async def _add_blocked(app: flowq.App) -> None:
    """One prerequisite due tomorrow and :data:`CANNOT_RUN` jobs depending on it."""
    prerequisite = await app.add_job("bench.prerequisite", {}, delay=timedelta(days=1))
    for start in range(0, CANNOT_RUN, CHUNK):
        await app.add_jobs(
            [
                flowq.JobSpec("bench.dependant", {"n": n}, depends_on=[prerequisite])
                for n in range(start, min(start + CHUNK, CANNOT_RUN))
            ]
        )


async def _add_foreign(app: flowq.App) -> None:
    """:data:`CANNOT_RUN` due jobs of a workflow no worker runs."""
    for start in range(0, CANNOT_RUN, CHUNK):
        await app.add_jobs(
            [
                flowq.JobSpec("bench.nobody_runs_this", {"n": n})
                for n in range(start, min(start + CHUNK, CANNOT_RUN))
            ]
        )


async def _nothing(app: flowq.App) -> None:
    """No jobs that cannot run (the reference figures)."""


SHAPES = [("unblocked", _nothing), ("blocked", _add_blocked), ("foreign", _add_foreign)]


async def _throughput(app: flowq.App) -> float:
    await app.add_jobs([flowq.JobSpec(unrelated, {"n": n}) for n in range(UNRELATED)])
    worker = app.create_worker(concurrency=10, workflows=[unrelated])
    began = time.perf_counter()
    await worker.run_until_idle()
    elapsed = time.perf_counter() - began
    return UNRELATED / elapsed


async def _claim_ms(app: flowq.App) -> float:
    began = time.perf_counter()
    claimed = await app.store.claim_jobs("bench", CLAIM_SIZE, [unrelated.name])
    took = (time.perf_counter() - began) * 1000
    assert len(claimed) == CLAIM_SIZE, len(claimed)
    return took


Shape = tuple[str, Callable[[flowq.App], Awaitable[None]]]
"""A shape's name and what adds its jobs to a migrated, empty database."""
Rate = Callable[[flowq.App], Awaitable[float]]
"""A figure measured in rounds, the best kept (higher is better)."""


async def shape_figures(
    urls: list[str],
    shapes: Sequence[Shape] = SHAPES,
    *,
    figures_registry: flowq.Registry = registry,
    rates: Mapping[str, Rate] | None = None,
    rounds: int = ROUNDS,
    after: Callable[[dict[str, flowq.App]], Awaitable[None]] | None = None,
) -> dict[str, dict[str, float]]:
    """Every shape on its own database (``urls``, one per shape, migrated), measured
    in turns so that the load of a shared machine weighs on all of them alike:
    throughput in ``rounds`` rounds (the best kept), claims one shape after the
    other, the order reversed every other claim (the median kept), after an
    ``ANALYZE`` on PostgreSQL.

    Args:
        urls: One database per shape.
        shapes: The shapes (default: this module's).
        figures_registry: The registry of the apps (it must hold :func:`unrelated`
            and the workflows of ``rates``).
        rates: More figures measured in the same rounds as ``jobs_per_s`` (by name).
        rounds: How many rounds of the rates.
        after: Called with the apps by shape once the claims are measured (the
            claimed jobs are still held), before they close.
    """
    results: dict[str, dict[str, float]] = {}
    every_rate: dict[str, Rate] = {"jobs_per_s": _throughput, **(rates or {})}
    async with contextlib.AsyncExitStack() as stack:
        apps = {}
        for (shape, add), url in zip(shapes, urls, strict=True):
            app = await stack.enter_async_context(flowq.App(url, registry=figures_registry))
            began = time.perf_counter()
            await add(app)
            if getattr(getattr(app.store, "dialect", None), "name", None) == "postgresql":
                await _analyze(app)
            results[shape] = {"setup_s": time.perf_counter() - began}
            results[shape].update(dict.fromkeys(every_rate, 0.0))
            apps[shape] = app
        for round_ in range(rounds):
            order = list(apps) if round_ % 2 == 0 else list(reversed(apps))
            for name, rate_of in every_rate.items():
                for shape in order:
                    rate = await rate_of(apps[shape])
                    results[shape][name] = max(results[shape][name], rate)
        for app in apps.values():
            await app.add_jobs([flowq.JobSpec(unrelated, {"n": n}) for n in range(CLAIM_QUEUE)])
            if getattr(getattr(app.store, "dialect", None), "name", None) == "postgresql":
                # Statistics of the tables as the rounds left them (autovacuum's), not
                # of the empty tables: the claim's plan is made from them.
                await _analyze(app)
        samples: dict[str, list[float]] = {shape: [] for shape in apps}
        for claim in range(CLAIMS):
            order = list(apps) if claim % 2 == 0 else list(reversed(apps))
            for shape in order:
                samples[shape].append(await _claim_ms(apps[shape]))
        for shape, taken in samples.items():
            results[shape]["claim_ms"] = statistics.median(taken)
        if after is not None:
            await after(apps)
    return results


async def _analyze(app: flowq.App) -> None:
    """Fresh planner statistics, as autovacuum would have after such a load."""
    store: Any = app.store
    async with store.engine.connect() as connection:
        await connection.exec_driver_sql("ANALYZE")
        await connection.commit()


def with_ratios(
    results: dict[str, dict[str, float]], base_shape: str = "unblocked"
) -> dict[str, dict[str, float]]:
    """Each shape's figures with ``claim_ratio`` and ``throughput_ratio`` against
    ``base_shape`` (claim: shape / base; throughput: base / shape)."""
    base = results[base_shape]
    for figures in results.values():
        figures["claim_ratio"] = figures["claim_ms"] / base["claim_ms"]
        figures["throughput_ratio"] = base["jobs_per_s"] / figures["jobs_per_s"]
    return results


def table(kind: str, results: dict[str, dict[str, float]]) -> str:
    """The shapes of one database as text."""
    lines = [
        f"{'shape':<12}{'database':<10}{'claim ms':>10}{'x base':>8}{'jobs/s':>10}"
        f"{'x base':>8}{'setup s':>9}"
    ]
    for shape, figures in results.items():
        lines.append(
            f"{shape:<12}{kind:<10}{figures['claim_ms']:>10.2f}{figures['claim_ratio']:>8.2f}"
            f"{figures['jobs_per_s']:>10,.0f}{figures['throughput_ratio']:>8.2f}"
            f"{figures['setup_s']:>9.1f}"
        )
    return "\n".join(lines)
