"""Workflows that `flowq worker tests.acceptance.workloads:registry` runs in the process tests.

Every handler leaves a trace outside the database (a line in a file) so that the
tests can check what really ran, and how often, independently of flowq's records.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

import flowq

registry = flowq.Registry()
"""The workflows below (the target the tests give `flowq worker`)."""

empty = flowq.Registry()
"""A registry without workflows (`flowq worker` must refuse it)."""

not_a_registry = 42
"""An attribute that is neither an App nor a Registry."""

RECORD_LOG_ENV = "FLOWQ_ACCEPTANCE_RECORD_LOG"
"""The file (one per worker process) where ``record`` appends the ids it ran."""


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line with a single O_APPEND write (atomic among processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def create_once(path: str | os.PathLike[str]) -> bool:
    """Create the file ``path``; False if it already existed."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True


@registry.workflow(name="acceptance.record")
async def record(payload: dict[str, Any], ctx: flowq.Context) -> int:
    """Do a little async work, then append the job id to this process's log."""
    await anyio.sleep(float(payload.get("sleep", 0.001)))
    append_line(os.environ[RECORD_LOG_ENV], str(ctx.job.id))
    return ctx.job.id


@registry.workflow(name="acceptance.slow_once", max_attempts=3)
async def slow_once(payload: dict[str, Any], ctx: flowq.Context) -> str:
    """The first run creates ``marker`` and takes ``seconds``; later runs return at once.

    Each run appends ``<job id> <attempt> <pid>`` to ``runs``.
    """
    append_line(payload["runs"], f"{ctx.job.id} {ctx.job.attempt} {os.getpid()}")
    if not create_once(payload["marker"]):
        return "second run"
    await anyio.sleep(float(payload["seconds"]))
    return "first run"


@registry.workflow(name="acceptance.stamp")
async def stamp(payload: dict[str, Any], ctx: flowq.Context) -> None:
    """Append ``<job id> <wall clock time>`` to ``file`` as soon as the handler starts."""
    append_line(payload["file"], f"{ctx.job.id} {time.time()!r}")
