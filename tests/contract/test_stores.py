"""The store contract, run against every store flowq ships, through its fast and its
general paths (the ``paths`` fixture of the contract)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from flowq.store.base import Store
from flowq.store.sql import SqlStore
from flowq_testing import FakeClock, InMemoryStore, StoreContract


class TestInMemoryStore(StoreContract):
    """The in-memory store users run their unit tests on."""

    @pytest.fixture
    async def store(self, clock: FakeClock) -> Store:
        """A fresh in-memory store."""
        return InMemoryStore(clock=clock)


class TestSqliteStore(StoreContract):
    """The embedded default: a SQLite file."""

    @pytest.fixture
    async def store(self, clock: FakeClock, sqlite_url: str, paths: str) -> AsyncIterator[Store]:
        """A migrated SQLite file in tmp_path."""
        store = SqlStore(sqlite_url, clock=clock)
        store.fast_paths = paths == "fast"
        await store.migrate()
        yield store
        await store.close()

    def connection(self, store: Store) -> AbstractAsyncContextManager[Any] | None:
        """A connection on the same file."""
        assert isinstance(store, SqlStore)
        return store.engine.connect()


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    """The production backend: a fresh PostgreSQL database per test."""

    @pytest.fixture
    async def store(self, clock: FakeClock, postgres_url: str, paths: str) -> AsyncIterator[Store]:
        """A fresh database cloned from the migrated template."""
        store = SqlStore(postgres_url, clock=clock)
        store.fast_paths = paths == "fast"
        yield store
        await store.close()

    def connection(self, store: Store) -> AbstractAsyncContextManager[Any] | None:
        """A connection on the same database."""
        assert isinstance(store, SqlStore)
        return store.engine.connect()


@pytest.mark.postgres
class TestPostgresSchemaStore(StoreContract):
    """PostgreSQL with flowq's tables in a schema of their own (``schema=``), beside
    the migrated tables in ``public``; the fast paths, where the SQL is flowq's own."""

    @pytest.fixture(autouse=True)
    def _no_volume_tests(self, request: pytest.FixtureRequest) -> None:
        """The volume tests (``slow``) measure statements, not schemas: they run on
        the store above."""
        if request.node.get_closest_marker("slow") is not None:
            pytest.skip("volume tests run on TestPostgresStore")

    @pytest.fixture(params=["fast"], name="paths")
    def paths_fixture(self, request: pytest.FixtureRequest) -> str:
        """The one-statement hot paths only: the general ones are SQLAlchemy's, on the
        same connections (and group-limited claims in a schema are checked by
        tests/integration/test_pg_schemas.py)."""
        self.paths = str(request.param)
        return self.paths

    @pytest.fixture
    async def store(self, clock: FakeClock, postgres_url: str, paths: str) -> AsyncIterator[Store]:
        """A schema created and migrated in a fresh database."""
        store = SqlStore(postgres_url, clock=clock, schema="flowq contract")
        store.fast_paths = paths == "fast"
        await store.migrate()
        yield store
        await store.close()

    def connection(self, store: Store) -> AbstractAsyncContextManager[Any] | None:
        """A connection of the store's engine (its search_path is the schema)."""
        assert isinstance(store, SqlStore)
        return store.engine.connect()
