"""Clocks own waiting: a fake clock wakes its sleepers when a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

import flowq
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    """flowq runs on asyncio."""
    return "asyncio"


async def test_a_fake_clock_wakes_sleepers_only_when_moved_far_enough() -> None:
    """sleep_until returns once the clock reaches the moment, never by itself."""
    clock = FakeClock(T0)
    woke: list[datetime] = []

    async def sleeper(until: datetime) -> None:
        await clock.sleep_until(until)
        woke.append(clock.now())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(sleeper, T0 + timedelta(hours=2))
        tasks.start_soon(sleeper, T0 + timedelta(hours=1))
        await anyio.wait_all_tasks_blocked()
        assert woke == []
        clock.advance(timedelta(minutes=59))
        await anyio.wait_all_tasks_blocked()
        assert woke == []
        clock.advance(timedelta(minutes=1))
        await anyio.wait_all_tasks_blocked()
        assert woke == [T0 + timedelta(hours=1)]
        clock.set(T0 + timedelta(days=1))
    assert woke == [T0 + timedelta(hours=1), T0 + timedelta(days=1)]


async def test_sleeping_until_a_past_moment_returns_at_once() -> None:
    """Both clocks return at once for a moment already reached."""
    with anyio.fail_after(1):
        await FakeClock(T0).sleep_until(T0)
        system = flowq.SystemClock()
        await system.sleep_until(system.now() - timedelta(seconds=1))


async def test_the_system_clock_sleeps_until_the_moment() -> None:
    """SystemClock.sleep_until waits (real time) until now() has reached the moment."""
    clock = flowq.SystemClock()
    until = clock.now() + timedelta(milliseconds=30)
    with anyio.fail_after(5):
        await clock.sleep_until(until)
    assert clock.now() >= until - timedelta(milliseconds=2)  # loop clock vs wall clock
