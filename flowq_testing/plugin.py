"""The pytest plugin flowq registers (entry point ``pytest11``): fixtures for users' tests."""

from __future__ import annotations

import pytest

from flowq_testing.clock import FakeClock
from flowq_testing.environment import WorkflowEnvironment

__all__ = ["fake_clock", "flowq_env"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` at 2030-01-01 00:00 UTC that moves only when told."""
    return FakeClock()


@pytest.fixture
def flowq_env(fake_clock: FakeClock) -> WorkflowEnvironment:
    """A :class:`WorkflowEnvironment` running the ``@flowq.workflow`` workflows (the
    default registry) in memory under ``fake_clock``. It needs no ``async with`` (it
    opens on first use), so it works under pytest-anyio and pytest-asyncio alike."""
    return WorkflowEnvironment(clock=fake_clock)
