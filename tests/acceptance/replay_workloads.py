"""Durable workflows that `flowq worker tests.acceptance.replay_workloads:registry` runs
in :mod:`tests.acceptance.test_replay_processes`.

Every step body leaves a trace outside flowq's records, so that the tests can count
how often each body really ran: a counter in the test database (table
``side_effects``, bumped through a connection of the step's own) or a line
``<job id>:<step name>`` in a per-process file.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from datetime import timedelta
from typing import Any

import anyio
import anyio.lowlevel
import asyncpg
from sqlalchemy.engine import make_url

import flowq
from tests.acceptance.workloads import append_line
from tests.pg_server import asyncpg_dsn

registry = flowq.Registry()
"""The workflows below (the target the tests give `flowq worker`)."""

TARGET = "tests.acceptance.replay_workloads:registry"
"""How `flowq worker` names :data:`registry`."""

SOAK_LOG_ENV = "FLOWQ_ACCEPTANCE_SOAK_LOG"
"""The file (one per worker process) where the soak's step bodies append their runs."""

ANSWER_TAG = "answer"
"""Tag of the soak's tokens that the test completes."""

EXPIRE_TAG = "expire"
"""Tag of the soak's tokens that are left to time out."""

EXPIRE_AFTER = "300ms"
"""Timeout of the soak's tokens that nobody completes."""

# -- side effects counted in the database ----------------------------------------------

_BUMP = (
    "INSERT INTO side_effects (name, n) VALUES ({0}, 1) "
    "ON CONFLICT (name) DO UPDATE SET n = side_effects.n + 1 RETURNING n"
)


def _sqlite_path(database_url: str) -> str | None:
    url = make_url(database_url)
    return url.database if url.get_backend_name() == "sqlite" else None


def _sqlite(path: str, statement: str, *args: Any) -> list[Any]:
    """Run one statement in its own transaction on its own connection."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        rows = connection.execute(statement, args).fetchall()
        connection.execute("COMMIT")
        return rows
    finally:
        connection.close()


async def _pg(database_url: str, statement: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


async def create_side_effects(database_url: str) -> None:
    """Create the table ``side_effects(name text primary key, n int)``."""
    statement = "CREATE TABLE side_effects (name text PRIMARY KEY, n integer NOT NULL)"
    path = _sqlite_path(database_url)
    if path is not None:
        await anyio.to_thread.run_sync(_sqlite, path, statement)
    else:
        await _pg(database_url, statement)


async def bump(database_url: str, name: str) -> int:
    """Add 1 to the counter ``name`` (committed at once, outside flowq); return it."""
    path = _sqlite_path(database_url)
    if path is not None:
        [(n,)] = await anyio.to_thread.run_sync(_sqlite, path, _BUMP.format("?"), name)
    else:
        [(n,)] = await _pg(database_url, _BUMP.format("$1"), name)
    return int(n)


async def side_effects(database_url: str) -> dict[str, int]:
    """Every counter of ``side_effects``."""
    statement = "SELECT name, n FROM side_effects ORDER BY name"
    path = _sqlite_path(database_url)
    if path is not None:
        rows = await anyio.to_thread.run_sync(_sqlite, path, statement)
    else:
        rows = await _pg(database_url, statement)
    return {str(name): int(n) for name, n in rows}


# -- 1. a crash between two steps ---------------------------------------------------------


@flowq.step(name="crash.a")
async def crash_a(database_url: str, job_id: int) -> int:
    """Bump ``<job>:crash.a``; return the count (1 unless the body ran again)."""
    return await bump(database_url, f"{job_id}:crash.a")


@flowq.step(name="crash.b")
async def crash_b(database_url: str, job_id: int, a: int, hang: bool) -> str:
    """Bump ``<job>:crash.b``; with ``hang``, its first run never returns."""
    runs = await bump(database_url, f"{job_id}:crash.b")
    if hang and runs == 1:
        await anyio.sleep_forever()  # until the test kills this process
    return f"b saw a={a}"


@registry.workflow(name="replay.crash_between_steps")
async def crash_between_steps(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, Any]:
    """Step A, then step B. ``payload["hang"]`` picks where attempt 1 hangs forever:
    ``"in_b"`` inside B's first run, ``"before_b"`` in the handler between A and B
    (after creating the file ``payload["marker"]``)."""
    url = payload["database_url"]
    a = await crash_a(url, ctx.job.id)
    if payload["hang"] == "before_b" and ctx.job.attempt == 1:
        append_line(payload["marker"], str(os.getpid()))
        await anyio.sleep_forever()  # until the test kills this process
    b = await crash_b(url, ctx.job.id, a, payload["hang"] == "in_b")
    return {"a": a, "b": b}


# -- 1b. a job handed back by a stopping worker -------------------------------------------


@flowq.step(name="handback.charge")
async def handback_charge(database_url: str, job_id: int) -> str:
    """Bump ``<job>:handback.charge``; return a new charge id each time the body runs."""
    await bump(database_url, f"{job_id}:handback.charge")
    return f"ch_{uuid.uuid4().hex[:8]}"


@registry.workflow(name="replay.charge_then_approval")
async def charge_then_approval(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, Any]:
    """Charge, create an approval token, then (until the file ``payload["go"]`` exists)
    write the token id to ``payload["marker"]`` and hang until the worker stops; then
    wait for the approval."""
    charged = await handback_charge(payload["database_url"], ctx.job.id)
    token = await ctx.create_token(tags=["approval"])
    if not await anyio.Path(payload["go"]).exists():
        append_line(payload["marker"], token.id)
        await anyio.sleep_forever()  # until the worker's drain timeout cancels it
    approval = await ctx.wait_for_token(token)
    return {"charge": charged, "token": token.id, "approval": approval.output}


# -- 1c. steps beside waits in a task group and in gather ---------------------------------


@flowq.step(name="beside.work")
async def beside_work(database_url: str, job_id: int, name: str) -> str:
    """Bump ``<job>:beside.<name>`` and take a moment (still running when the wait
    beside it parks the job)."""
    await bump(database_url, f"{job_id}:beside.{name}")
    await anyio.sleep(0.1)
    return name


@registry.workflow(name="replay.beside_waits")
async def beside_waits(payload: dict[str, Any], ctx: flowq.Context) -> list[str]:
    """A step and a 300 ms durable sleep in an anyio task group, then a step and a
    300 ms sleep under ``asyncio.gather``."""
    url, job_id = payload["database_url"], ctx.job.id
    async with anyio.create_task_group() as tg:
        tg.start_soon(beside_work, url, job_id, "grouped")
        tg.start_soon(ctx.sleep, "300ms")
    gathered, _ = await asyncio.gather(beside_work(url, job_id, "gathered"), ctx.sleep("300ms"))
    return ["grouped", gathered]


# -- 2. the soak ----------------------------------------------------------------------------


def trace(job_id: int, step: str) -> None:
    """Append ``<job id>:<step>`` to this process's soak log (one O_APPEND write)."""
    append_line(os.environ[SOAK_LOG_ENV], f"{job_id}:{step}")


@flowq.step(name="soak.first")
async def soak_first(job_id: int) -> int:
    """An async step."""
    trace(job_id, "soak.first")
    return job_id


@flowq.step(name="soak.second")
def soak_second(job_id: int, waited: str) -> str:
    """A sync step (its body runs in a worker thread)."""
    trace(job_id, "soak.second")
    return waited


@flowq.step(name="soak.third")
async def soak_third(job_id: int) -> float:
    """An async step that some jobs run after the others."""
    trace(job_id, "soak.third")
    await anyio.lowlevel.checkpoint()
    return time.time()


@registry.workflow(name="replay.soak")
async def soak(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, Any]:
    """Step, then by a recorded random draw: a durable sleep of 50-300 ms, a token the
    test answers, a token left to time out after 300 ms, or no wait; then one or two
    more steps. Returns what it waited for and which steps it ran."""
    job_id = ctx.job.id
    await soak_first(job_id)
    ran = ["soak.first"]
    kind = await ctx.random()
    token_result: dict[str, Any] | None = None
    if kind < 0.3:
        await ctx.sleep(timedelta(seconds=0.05 + 0.25 * await ctx.random()))
        waited = "slept"
    elif kind < 0.45:
        token = await ctx.create_token(timeout="120s", tags=[ANSWER_TAG])
        result = await ctx.wait_for_token(token)
        token_result = {"ok": result.ok, "output": result.output, "error": result.error}
        waited = "answered token"
    elif kind < 0.6:
        token = await ctx.create_token(timeout=EXPIRE_AFTER, tags=[EXPIRE_TAG])
        result = await ctx.wait_for_token(token)
        token_result = {"ok": result.ok, "output": result.output, "error": result.error}
        waited = "expired token"
    else:
        waited = "nothing"
    await soak_second(job_id, waited)
    ran.append("soak.second")
    if await ctx.random() < 0.5:
        await soak_third(job_id)
        ran.append("soak.third")
    return {"waited": waited, "token": token_result, "steps": ran}


# -- 3. a token's wake-up -------------------------------------------------------------------


@flowq.step(name="stamp.resumed")
async def stamp_resumed(path: str, job_id: int) -> float:
    """Append ``<job id> <wall clock time>`` to ``path``; return the time."""
    now = time.time()
    append_line(path, f"{job_id} {now!r}")
    return now


@registry.workflow(name="replay.token_then_stamp")
async def token_then_stamp(payload: dict[str, Any], ctx: flowq.Context) -> Any:
    """Wait for a token (no timeout), then stamp the time the job resumed in
    ``payload["file"]``; return the token's output."""
    token = await ctx.create_token(tags=["wake-up"])
    result = await ctx.wait_for_token(token)
    await stamp_resumed(payload["file"], ctx.job.id)
    return result.output
