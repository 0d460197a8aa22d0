"""Table sizes under a steady load with ``cleanup_old_jobs`` (issue 13, target 5):
``--suite cleanup`` (PostgreSQL only).

Each round adds :data:`JOBS` no-op jobs and :data:`STEP_WORKFLOWS` 3-step workflows,
processes them at concurrency 10, then deletes with ``cleanup_old_jobs`` every job
that finished before the round began (the previous round's, with their events and
step records), and records ``pg_total_relation_size`` of each flowq table (the
dialect's ``table_bytes``: heap, indexes and TOAST). Two databases, measured in
turns:

- ``as is``: nothing but the load; whatever the server's autovacuum does meanwhile
  (rounds last seconds, autovacuum looks at a database once per
  ``autovacuum_naptime``, 1 minute by default);
- ``vacuumed``: a plain ``VACUUM`` (not ``FULL``) of flowq's tables after each
  cleanup, what autovacuum does once the deleted rows pass a table's threshold.

Reported per round: each database's total flowq bytes, and ``growth``: the last
round's total / the total after :data:`SETTLE` rounds (1.0 = flat).

Also runnable alone on a database of one's own (no scratch databases):
``python -m benchmarks.cleanup postgresql://...`` runs the rounds there as is, to see
what that server's autovacuum does (``--rounds N --pause S`` to span its naptime).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

import flowq
from benchmarks import blocked
from benchmarks import steps as step_bench
from flowq.store.sql import SqlStore

__all__ = ["ROUNDS", "figures", "registry", "round_sizes", "table"]

registry = flowq.Registry()
registry.add(blocked.unrelated)
registry.add(step_bench.three_steps)
JOBS = 5_000
STEP_WORKFLOWS = 500
ROUNDS = 10
SETTLE = 4
_TABLES = "flowq_jobs, flowq_job_events, flowq_steps, flowq_tokens, flowq_job_dependencies"


async def one_round(app: flowq.App, *, vacuum: bool) -> dict[str, int]:
    """Add and process a round's jobs, delete those finished before it, then (with
    ``vacuum``) VACUUM flowq's tables; return each table's bytes."""
    began = datetime.now(UTC)
    await app.add_jobs([flowq.JobSpec(blocked.unrelated, {"n": n}) for n in range(JOBS)])
    await app.add_jobs([flowq.JobSpec(step_bench.three_steps, {}) for _ in range(STEP_WORKFLOWS)])
    await app.create_worker(concurrency=10).run_until_idle()
    age = (datetime.now(UTC) - began).total_seconds()
    await app.cleanup_old_jobs(days=age / 86400)
    store = app.store
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as connection:
        if vacuum:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f"VACUUM {_TABLES}"))
        return await store.dialect.table_bytes(connection)


async def round_sizes(
    urls: dict[str, str], rounds: int = ROUNDS, pause: float = 0.0
) -> dict[str, list[dict[str, int]]]:
    """``rounds`` rounds on each database of ``urls`` (``{shape: url}``, shapes ``as
    is`` and ``vacuumed``), in turns; each round's table bytes per shape."""
    sizes: dict[str, list[dict[str, int]]] = {shape: [] for shape in urls}
    async with contextlib.AsyncExitStack() as stack:
        apps = {
            shape: await stack.enter_async_context(flowq.App(url, registry=registry))
            for shape, url in urls.items()
        }
        for round_ in range(rounds):
            order = list(apps) if round_ % 2 == 0 else list(reversed(apps))
            for shape in order:
                sizes[shape].append(await one_round(apps[shape], vacuum=shape == "vacuumed"))
            totals = {shape: sum(found[-1].values()) for shape, found in sizes.items()}
            print(f"    round {round_ + 1}: " + _totals(totals), flush=True)
            if pause:
                await asyncio.sleep(pause)
    return sizes


def _totals(totals: dict[str, int]) -> str:
    return ", ".join(f"{shape} {size / 2**20:.1f} MiB" for shape, size in totals.items())


async def figures(urls: list[str]) -> dict[str, Any]:
    """The rounds on two migrated databases (``as is``, ``vacuumed``), with the
    server's autovacuum setting and each shape's growth."""
    async with flowq.App(urls[0]) as app:
        store = app.store
        assert isinstance(store, SqlStore)
        async with store.engine.connect() as connection:
            found = await connection.execute(
                text(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('autovacuum', 'autovacuum_naptime', 'autovacuum_vacuum_cost_limit', "
                    "'autovacuum_vacuum_cost_delay')"
                )
            )
            settings = {str(name): str(value) for name, value in found.all()}
    began = time.perf_counter()
    sizes = await round_sizes(dict(zip(("as is", "vacuumed"), urls, strict=True)))
    return {
        "server": settings,
        "seconds": round(time.perf_counter() - began, 1),
        "sizes": sizes,
        "growth": {shape: growth(found) for shape, found in sizes.items()},
    }


def growth(sizes: list[dict[str, int]]) -> float:
    """The last round's total bytes / the total after :data:`SETTLE` rounds."""
    settled = sizes[min(SETTLE, len(sizes)) - 1]
    return sum(sizes[-1].values()) / sum(settled.values())


def table(result: dict[str, Any]) -> str:
    """Total flowq bytes per round and shape, then the biggest tables' last sizes."""
    sizes: dict[str, list[dict[str, int]]] = result["sizes"]
    shapes = list(sizes)
    lines = [
        "server: " + ", ".join(f"{name}={value}" for name, value in result["server"].items()),
        f"{'round':<7}" + "".join(f"{shape + ' MiB':>16}" for shape in shapes),
    ]
    for round_ in range(len(sizes[shapes[0]])):
        cells = "".join(f"{sum(sizes[shape][round_].values()) / 2**20:>16.1f}" for shape in shapes)
        lines.append(f"{round_ + 1:<7}{cells}")
    lines.append(
        f"{f'growth (last / round {SETTLE})':<7}"
        + "".join(f"{result['growth'][shape]:>16.2f}" for shape in shapes)
    )
    for shape in shapes:
        last = sizes[shape][-1]
        biggest = sorted(last.items(), key=lambda item: -item[1])[:4]
        lines.append(
            f"{shape}, last round: "
            + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in biggest)
        )
    return "\n".join(lines)


async def _alone(url: str, rounds: int, pause: float) -> None:
    """The rounds, as is, on the database ``url`` (migrated first)."""
    await flowq.App(url).migrate()
    sizes = await round_sizes({"as is": url}, rounds, pause)
    for round_, found in enumerate(sizes["as is"], 1):
        print(round_, {name: size for name, size in found.items() if size > 100_000})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between rounds")
    arguments = parser.parse_args()
    asyncio.run(_alone(arguments.url, arguments.rounds, arguments.pause))
