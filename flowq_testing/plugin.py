"""The pytest plugin flowq registers (entry point ``pytest11``): fixtures for users' tests."""

from __future__ import annotations

import pytest

from flowq_testing.clock import FakeClock

__all__ = ["fake_clock"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` at 2030-01-01 00:00 UTC that moves only when told."""
    return FakeClock()
