"""Fixtures for engine and worker tests: an App on every kind of store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import flowq
from flowq_testing import FakeClock, InMemoryStore


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each kind of store: in memory (None), a SQLite file, a fresh PostgreSQL database."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def registry() -> flowq.Registry:
    """A registry of its own for each test."""
    return flowq.Registry()


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
