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
