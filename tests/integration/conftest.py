"""Fixtures for engine and worker tests: an App on every kind of store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import flowq
from flowq_testing import FakeClock, InMemoryStore


@pytest.fixture
def clock() -> FakeClock:
    """Time moves only when a test moves it."""
    return FakeClock()


@pytest.fixture
async def app(
    database_url: str | None, registry: flowq.Registry, clock: FakeClock
) -> AsyncIterator[flowq.App]:
    """An App on the test store with a fake clock."""
    if database_url is None:
        app = flowq.App(store=InMemoryStore(), registry=registry, clock=clock)
    else:
        app = flowq.App(database_url, registry=registry, clock=clock, auto_migrate=True)
    async with app:
        yield app
