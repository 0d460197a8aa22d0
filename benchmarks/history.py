"""Claims and throughput next to a long history (issue 13, target 5): ``--suite history``.

Three databases side by side, measured in turns as ``benchmarks/blocked.py`` does (its
:func:`~benchmarks.blocked.shape_figures`):

- ``empty``: nothing but the measured jobs;
- ``waiting``: the waiting jobs of ``history`` alone (what they cost without the
  finished ones);
- ``history``: :data:`FINISHED` finished jobs (90% completed, 7% failed, 3%
  cancelled, finished over the past 10 days, over several workflows, the measured
  ones among them) with 3 events (added, processing, the outcome) and 3 recorded
  steps each, plus :data:`WAITING` jobs of the measured workflows waiting since an
  hour ago: half on a timer due tomorrow (a ``ready_at`` in the future, so they sit
  in the claim indexes), half on a token (with its ``flowq_tokens`` row). Filled
  with one ``INSERT ... SELECT generate_series`` per table (the jobs copy a real
  job through :data:`benchmarks.dashboard.FILL_ROWS`), then ``VACUUM ANALYZE``
  (what autovacuum soon does after such a load).

Figures per shape: ``claim_ms`` (median ms of 40 ``claim_jobs`` of 10 straight on the
store, over a queue of 1,000 due jobs), ``jobs_per_s`` (2,000 no-op jobs at
concurrency 10 with ``run_until_idle``) and ``steps_per_s`` (:data:`STEP_WORKFLOWS`
3-step workflows at concurrency 10, whose step records go to the big
``flowq_steps``), the best of :data:`ROUNDS` interleaved rounds. ``x empty``: claim
ms / empty's, empty's rate / the shape's (1.0 = no cost; the target is within 1.10).

Then the plans, ``EXPLAIN (ANALYZE, BUFFERS)`` on the history database (rolled back,
see ``benchmarks/plans.py``): the claim as the claim connection runs it (generic
plan), and with custom and generic plans: ``COMPLETE_JOBS``, ``RECORD_CALLS`` and
``LOAD_HISTORY`` of held jobs, ``next_ready_at``, the heartbeat's lock and update,
the expired-lease look-up and the cleanup's batch look-up.

PostgreSQL only: on SQLite the suite is skipped with the reason printed.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text, update

import flowq
from benchmarks import blocked, plans
from benchmarks import steps as step_bench
from benchmarks.dashboard import FILL_ROWS
from flowq.replay import RecordedCall
from flowq.store import rows, transitions
from flowq.store.base import Lease
from flowq.store.sql import SqlStore, render
from flowq.store.sql import postgres as pg
from flowq.store.sql.base import held
from flowq.store.sql.schema import jobs

__all__ = ["FINISHED", "SHAPES", "WAITING", "registry", "skipped", "table"]

registry = flowq.Registry()
registry.add(blocked.unrelated)
registry.add(step_bench.three_steps)
MEASURED = (blocked.unrelated.name, step_bench.three_steps.name)
FINISHED = 1_000_000
WAITING = 100_000
STEP_WORKFLOWS = 500
ROUNDS = 3
_NAMES = ", ".join(f"'{name}'" for name in MEASURED)

_HISTORY_ROWS = f"""SELECT
    CASE WHEN g > :finished THEN (ARRAY[{_NAMES}])[g / 2 % 2 + 1]
         WHEN g % 8 < 4 THEN (ARRAY[{_NAMES}])[g / 2 % 2 + 1]
         ELSE 'bench.history_' || (g % 8) END AS workflow,
    x.status, x.at,
    CASE WHEN x.status = 'waiting' AND g % 2 = 1 THEN now() + interval '1 day' END AS ready,
    CASE WHEN x.status = 'waiting' AND g % 2 = 1 THEN now() + interval '1 day' END AS wake,
    CASE WHEN x.status = 'waiting' AND g % 2 = 0 THEN 'bench-token-' || g END AS token
    FROM (SELECT
        CASE WHEN g > :finished THEN 'waiting' WHEN g % 100 < 90 THEN 'completed'
             WHEN g % 100 < 97 THEN 'failed' ELSE 'cancelled' END AS status,
        CASE WHEN g > :finished THEN now() - interval '1 hour'
             ELSE now() - interval '1 hour' - (:finished - g) * interval '864 milliseconds'
        END AS at) AS x"""  # noqa: S608 (constants, no input)
"""Each copy's shape (see :data:`benchmarks.dashboard.FILL_ROWS`): the first
``:finished`` finished, 864 ms apart (10 days before the last), the rest waiting."""

_EVENTS = """
INSERT INTO flowq_job_events (job_id, event_type, at, metadata)
SELECT j.id, e.event_type, j.created_at + e.after, e.metadata
FROM flowq_jobs j CROSS JOIN LATERAL (VALUES
    ('added', interval '0', NULL),
    ('processing', interval '1 millisecond',
     '{"worker_id": "bench-worker", "attempt": 1, "resumed": false}'),
    (j.status, interval '2 milliseconds', NULL)) AS e(event_type, after, metadata)
WHERE j.id > :template
"""
_STEPS = """
INSERT INTO flowq_steps (job_id, seq, name, attempt, output, error, started_at, completed_at)
SELECT j.id, s.seq, 'bench.noop_step', 1, s.seq::text, NULL, j.created_at, j.created_at
FROM flowq_jobs j CROSS JOIN generate_series(0, 2) AS s(seq)
WHERE j.id > :template
"""
_TOKENS = """
INSERT INTO flowq_tokens (id, job_id, status, output, tags, timeout_at, created_at)
SELECT wait_token_id, id, 'waiting', NULL, '{}', NULL, created_at
FROM flowq_jobs WHERE wait_token_id IS NOT NULL
"""


async def _add_history(app: flowq.App) -> None:
    """:data:`FINISHED` finished and :data:`WAITING` waiting jobs with their events,
    steps and tokens, then ``VACUUM ANALYZE``."""
    await _add_jobs(app, FINISHED, WAITING)


async def _add_waiting(app: flowq.App) -> None:
    """:data:`WAITING` waiting jobs alone (what the timers cost without the rest of
    the history)."""
    await _add_jobs(app, 0, WAITING)


async def _add_jobs(app: flowq.App, finished: int, waiting: int) -> None:
    """``finished`` finished and ``waiting`` waiting jobs with their events, steps
    and tokens, then ``VACUUM ANALYZE``."""
    store = app.store
    assert isinstance(store, SqlStore)
    template = await app.start(blocked.unrelated, {"n": 0})
    await app.cancel_job(template)
    began = time.perf_counter()
    async with store.engine.begin() as connection:
        fill = FILL_ROWS.format(rows=_HISTORY_ROWS)
        count = finished + waiting
        await connection.execute(
            text(fill), {"count": count, "template": template, "finished": finished}
        )
        for statement in (_EVENTS, _STEPS, _TOKENS):
            await connection.execute(text(statement), {"template": template})
    filled = time.perf_counter()
    async with store.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE"))
    print(
        f"    {finished:,} finished and {waiting:,} waiting jobs filled in "
        f"{filled - began:.0f} s, vacuumed in {time.perf_counter() - filled:.0f} s",
        flush=True,
    )


async def _nothing(app: flowq.App) -> None:
    """No history (the reference figures)."""


SHAPES: list[blocked.Shape] = [
    ("empty", _nothing),
    ("waiting", _add_waiting),
    ("history", _add_history),
]


async def _steps_per_s(app: flowq.App) -> float:
    """3-step workflows completed per second at concurrency 10."""
    await app.add_jobs([flowq.JobSpec(step_bench.three_steps, {}) for _ in range(STEP_WORKFLOWS)])
    worker = app.create_worker(concurrency=10, workflows=[step_bench.three_steps])
    began = time.perf_counter()
    await worker.run_until_idle()
    return STEP_WORKFLOWS / (time.perf_counter() - began)


def skipped(kind: str, suite: str = "history") -> str | None:
    """Why ``suite`` (history or cleanup) does not run on ``kind`` (None: it runs)."""
    if kind != "postgres":
        return (
            f"the {suite} suite is PostgreSQL only (its fill is generate_series, its "
            "sizes pg_total_relation_size, its plans EXPLAIN)"
        )
    return None


async def figures(urls: list[str]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """The figures of :data:`SHAPES` (one migrated database each, in ``urls``) with
    their ratios to ``empty``, and the plans on the history database."""
    found_plans: list[str] = []

    async def explain(apps: dict[str, flowq.App]) -> None:
        found_plans.append(await claim_plan(apps["empty"], urls[0], "empty"))
        found_plans.extend(await statement_plans(apps["history"], urls[-1]))

    results = await blocked.shape_figures(
        urls,
        SHAPES,
        figures_registry=registry,
        rates={"steps_per_s": _steps_per_s},
        rounds=ROUNDS,
        after=explain,
    )
    base = results["empty"]
    for shape in results.values():
        shape["steps_ratio"] = base["steps_per_s"] / shape["steps_per_s"]
    return blocked.with_ratios(results, "empty"), found_plans


async def claim_plan(app: flowq.App, url: str, shape: str) -> str:
    """The plan of a claim of 10 of :func:`benchmarks.blocked.unrelated` on ``shape``'s
    database, as the claim connection runs it (generic)."""
    statement = pg.claim_statement((blocked.unrelated.name,), blocked.CLAIM_SIZE)
    arguments = [app.store.clock.now(), [blocked.unrelated.name], "bench-explain"]
    planned = (f"claim of 1 workflow on {shape}", statement, arguments)
    return await plans.explain(url.replace("+asyncpg", ""), planned, "force_generic_plan")


async def statement_plans(app: flowq.App, url: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the hot statements on ``app``'s database, whose
    claim measurements left jobs held (processing)."""
    store = app.store
    assert isinstance(store, SqlStore)
    dsn = url.replace("+asyncpg", "")
    now = store.clock.now()
    async with store.engine.connect() as connection:
        found = await connection.execute(
            text(
                "SELECT id, lease_id FROM flowq_jobs WHERE status = 'processing' "
                "ORDER BY id LIMIT 10"
            )
        )
        leases = [Lease(job_id, lease_id, "bench") for job_id, lease_id in found.all()]
        one_finished = (
            await connection.execute(
                text("SELECT min(id) + 500000 FROM flowq_jobs WHERE status = 'completed'")
            )
        ).scalar_one()
    ids = [lease.job_id for lease in leases]
    lease_ids = [lease.lease_id for lease in leases]
    calls = [
        RecordedCall(
            seq=0,
            name="bench.noop_step",
            attempt=1,
            output="1",
            error=None,
            started_at=now,
            completed_at=now,
        )
        for _ in leases
    ]
    dialect = store.engine.dialect
    sqlalchemy_statements: list[tuple[str, Any]] = [
        (
            "next_ready_at",
            select(func.min(jobs.c.ready_at)).where(
                jobs.c.ready_at > now, jobs.c.workflow.in_(sorted(MEASURED))
            ),
        ),
        (
            "heartbeat lock",
            select(jobs.c.id).where(held(leases)).order_by(jobs.c.id).with_for_update(),
        ),
        (
            "heartbeat update",
            update(jobs)
            .where(held(leases))
            .values(render.values(transitions.HEARTBEAT, now))
            .returning(jobs.c.id),
        ),
        (
            "expired leases",
            select(jobs)
            .where(
                jobs.c.status == "processing",
                jobs.c.locked_at <= now - timedelta(seconds=30),
                jobs.c.id > 0,
            )
            .order_by(jobs.c.id)
            .limit(100)
            .with_for_update(skip_locked=True),
        ),
        (
            "cleanup batch",
            select(jobs.c.id, jobs.c.finished_at)
            .where(jobs.c.finished_at.is_not(None), jobs.c.finished_at <= now - timedelta(days=5))
            .order_by(jobs.c.finished_at)
            .limit(1000)
            .with_for_update(skip_locked=True),
        ),
    ]
    planned: list[plans.Planned] = [
        (
            "COMPLETE_JOBS",
            pg.COMPLETE_JOBS,
            [ids, lease_ids, ["null"] * len(ids), now],
        ),
        (
            "RECORD_CALLS",
            pg.RECORD_CALLS,
            [
                ids,
                lease_ids,
                *([getattr(call, column) for call in calls] for column in rows.CALL_COLUMNS),
            ],
        ),
        ("LOAD_HISTORY", pg.LOAD_HISTORY, [one_finished]),
    ]
    for name, statement in sqlalchemy_statements:
        planned.append((name, *plans.compiled(statement, dialect)))
    out = []
    for workflows in ((blocked.unrelated.name,), MEASURED):
        claim = pg.claim_statement(workflows, blocked.CLAIM_SIZE)
        arguments = [now, list(workflows), "bench-explain"]
        label = f"claim of {len(workflows)} workflow(s)"
        out.append(await plans.explain(dsn, (label, claim, arguments), "force_generic_plan"))
    for entry in planned:
        for mode in ("force_custom_plan", "force_generic_plan"):
            out.append(await plans.explain(dsn, entry, mode))
    return out


def table(results: dict[str, dict[str, float]]) -> str:
    """The shapes as text."""
    lines = [
        f"{'shape':<10}{'claim ms':>10}{'x empty':>9}{'jobs/s':>9}{'x empty':>9}"
        f"{'3-step/s':>10}{'x empty':>9}{'setup s':>9}"
    ]
    for shape, figures in results.items():
        lines.append(
            f"{shape:<10}{figures['claim_ms']:>10.2f}{figures['claim_ratio']:>9.2f}"
            f"{figures['jobs_per_s']:>9,.0f}{figures['throughput_ratio']:>9.2f}"
            f"{figures['steps_per_s']:>10,.0f}{figures['steps_ratio']:>9.2f}"
            f"{figures['setup_s']:>9.1f}"
        )
    return "\n".join(lines)
