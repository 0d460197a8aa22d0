"""What the runner and the peers share: scratch databases, ready child processes, polling.

- :func:`scratch_database`: a new PostgreSQL database next to the admin one for one
  figure, dropped (``WITH (FORCE)``) afterwards, whatever happened.
- :func:`on_scratch_databases`: figures as ``{name: coroutine function}``, each run on
  a database of its own.
- :func:`ready_child`: a child process running a script that prints ``ready`` when it
  listens, given a second to settle, terminated afterwards (the ``latency_other_process``
  figures).
- :func:`poll_until`: the polling schedule of flowq's ``App.result`` (first look at
  once, then 5 ms doubling up to 250 ms), so every benchmark that waits for a job's
  outcome puts the same load on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

import asyncpg

from benchmarks.compare import Measure


async def _admin(admin_dsn: str, statement: str) -> None:
    """Run one statement on a connection of its own to the admin database."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def scratch_database(
    admin_dsn: str, prefix: str, *, create: bool = True
) -> AsyncIterator[str]:
    """A new database ``<prefix>_<hex>`` on the admin DSN's server; yields its DSN.

    Args:
        admin_dsn: A ``postgresql://`` DSN of a database to run ``CREATE`` / ``DROP
            DATABASE`` from; the scratch DSN is the same but for the database name.
        prefix: The start of the database's name.
        create: ``False`` when whoever uses the DSN creates the database itself (DBOS
            does); it is dropped afterwards all the same.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    if create:
        await _admin(admin_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def on_scratch_databases(
    fresh: Callable[[], contextlib.AbstractAsyncContextManager[str]],
    measures: dict[str, Callable[[str], Awaitable[Any]]],
) -> dict[str, Measure]:
    """Each of ``measures`` (given a DSN) as a :data:`Measure` run on a ``fresh()`` database."""

    def on_fresh(measure: Callable[[str], Awaitable[Any]]) -> Measure:
        async def run() -> Any:
            async with fresh() as dsn:
                return await measure(dsn)

        return run

    return {name: on_fresh(measure) for name, measure in measures.items()}


@contextlib.asynccontextmanager
async def ready_child(script: str, *args: str) -> AsyncIterator[IO[str]]:
    """``python -c script *args`` once it has printed ``ready`` and had a second to settle.

    Yields the child's standard output (text, after the ``ready`` line); the child is
    terminated afterwards.
    """
    child = subprocess.Popen(  # noqa: ASYNC220, S603 (started once, before any sample)
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready = await asyncio.to_thread(child.stdout.readline)
        assert ready.strip() == "ready", f"the child process said {ready!r}"
        await asyncio.sleep(1.0)
        yield child.stdout
    finally:
        child.terminate()
        child.wait(timeout=30)


async def poll_until(done: Callable[[], Awaitable[bool]]) -> None:
    """Await ``done()`` until it is true: at once, then after 5 ms doubling up to 250 ms."""
    delay = 0.005
    while not await done():
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
