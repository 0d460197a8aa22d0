"""The pytest plugin flowq registers (entry point ``pytest11``): fixtures for users'
tests, and anyio tests pinned to asyncio (flowq's drivers run on asyncio only; with
trio installed, anyio's plugin would also run every ``@pytest.mark.anyio`` test on
trio). A project that tests trio code too sets ``flowq_pin_asyncio = false`` in its
pytest configuration; a conftest ``anyio_backend`` fixture also wins."""

from __future__ import annotations

import pytest

from flowq_testing.clock import FakeClock
from flowq_testing.environment import WorkflowEnvironment

__all__ = ["fake_clock", "flowq_env", "pytest_addoption", "pytest_configure"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``flowq_pin_asyncio`` ini option."""
    parser.addini(
        "flowq_pin_asyncio",
        type="bool",
        default=True,
        help="run anyio tests on asyncio only (flowq needs it); false to leave anyio's "
        "backends alone",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``slow`` marker (the store contract's volume tests carry it) and
    pin anyio tests to asyncio unless ``flowq_pin_asyncio = false``."""
    config.addinivalue_line(
        "markers", "slow: long tests (the store contract's 40,000-row volume tests)"
    )
    if config.getini("flowq_pin_asyncio"):
        from flowq_testing import asyncio_only

        config.pluginmanager.register(asyncio_only, "flowq-asyncio-only")


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
