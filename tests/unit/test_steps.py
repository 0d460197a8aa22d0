"""Step options and the thread bookkeeping of sync step bodies (no database)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import flowq
from flowq.step_tries import ThreadBody

pytestmark = pytest.mark.anyio


def body() -> str:
    """A sync step body."""
    return "ok"


def test_overlap_retries_defaults_to_false_and_must_be_a_bool() -> None:
    """overlap_retries is off unless asked for; anything but a bool is a ValidationError."""
    assert flowq.step(body).overlap_retries is False
    assert flowq.step(overlap_retries=True)(body).overlap_retries is True
    for wrong in (1, "yes", None):
        with pytest.raises(flowq.ValidationError, match="overlap_retries of step"):
            flowq.step(overlap_retries=wrong)(body)  # type: ignore[call-overload]


async def test_a_body_dropped_before_a_thread_took_it_never_runs() -> None:
    """A try cancelled before a worker thread picked its body up: the body never runs,
    even if a thread picks it up later, and the next try need not wait for it."""
    ran: list[str] = []
    dropped = ThreadBody(lambda: ran.append("ran"))
    dropped.settle()
    assert dropped.run() is None and ran == []
    with anyio.fail_after(5):
        await dropped.ended()


async def test_a_body_that_ran_is_ended_only_when_its_thread_returns() -> None:
    """ended() waits for the thread running the body; settle() after the run changes
    nothing."""
    release = threading.Event()
    running = ThreadBody(lambda: release.wait(5))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(anyio.to_thread.run_sync, running.run)
        with anyio.move_on_after(0.05):
            await running.ended()
            pytest.fail("the body is still running")
        release.set()
        with anyio.fail_after(5):
            await running.ended()
    running.settle()
    with anyio.fail_after(5):
        await running.ended()


async def test_a_plain_call_of_a_sync_step_times_out() -> None:
    """Outside a job, a sync step still has its timeout (its thread is abandoned)."""
    release = threading.Event()

    @flowq.step(timeout="50ms")
    def blocks() -> Any:
        release.wait(5)

    try:
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await blocks()
    finally:
        release.set()
