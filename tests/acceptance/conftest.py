"""Fixtures of the process tests: a migrated database of each kind and worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import flowq
from tests.acceptance import workloads
from tests.acceptance.processes import Workers


async def _migrate(url: str) -> None:
    app = flowq.App(url)
    try:
        await app.migrate()
    finally:
        await app.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """One migrated test database of each kind (PostgreSQL from the template)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    url = str(request.getfixturevalue("sqlite_url"))
    asyncio.run(_migrate(url))
    return url


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[flowq.App]:
    """An App of the test process on the test database, knowing the workers' workflows."""
    async with flowq.App(database_url, registry=workloads.registry) as app:
        yield app


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Workers]:
    """Starts `flowq worker` processes; kills and reaps any left running after the test."""
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        await started.kill_all()
