"""Module-level workflows for the force-kill tests: another process imports them by
name (tests/integration/test_force_kill.py)."""

from __future__ import annotations

import os
import time
from typing import Any

import flowq

registry = flowq.Registry()


@flowq.step(name="isolated.a_step")
async def a_step() -> int:
    """A step (which a force-killed job's handler cannot run)."""
    return 1


@registry.workflow(name="isolated.blocks", timeout="3s", force_kill_on_timeout=True, max_attempts=1)
def blocks(payload: dict[str, Any]) -> None:
    """Writes its pid, then blocks in time.sleep far past its timeout (the timeout
    leaves room for starting a process and importing this module)."""
    with open(payload["pid_file"], "w") as file:
        file.write(str(os.getpid()))
    time.sleep(60)


@registry.workflow(name="isolated.answers", force_kill_on_timeout=True, timeout="30s")
async def answers(payload: dict[str, Any], ctx: flowq.Context) -> dict[str, Any]:
    """Returns its payload and the pid and job id it ran with."""
    return {"echo": payload, "pid": os.getpid(), "job": ctx.job.id}


@registry.workflow(name="isolated.uses_a_step", force_kill_on_timeout=True, max_attempts=1)
async def uses_a_step(payload: dict[str, Any]) -> int:
    """Calls a step, which needs the engine."""
    return await a_step()


@registry.workflow(name="isolated.sleeps_durably", force_kill_on_timeout=True, max_attempts=1)
async def sleeps_durably(payload: dict[str, Any], ctx: flowq.Context) -> None:
    """Asks for a durable sleep, which needs the engine."""
    await ctx.sleep("1h")


@registry.workflow(name="isolated.raises", force_kill_on_timeout=True, max_attempts=1)
def raises(payload: dict[str, Any]) -> None:
    """Raises its own error."""
    raise LookupError("nothing here")


@registry.workflow(name="isolated.quick")
async def quick(payload: dict[str, Any]) -> str:
    """An ordinary job that runs beside the blocked one."""
    return "quick"


@registry.workflow(name="isolated.gives_up", force_kill_on_timeout=True, max_attempts=3)
def gives_up(payload: dict[str, Any]) -> None:
    """Raises NonRetryableError in its own process."""
    raise flowq.NonRetryableError("no point in trying again")
