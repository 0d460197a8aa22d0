"""A pytest plugin module the flowq plugin registers after anyio's: its
``anyio_backend`` replaces anyio's, so anyio tests run on asyncio only (flowq's drivers,
asyncpg and aiosqlite, need it)."""

from __future__ import annotations

import pytest

__all__ = ["anyio_backend"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio, the only event loop flowq's database drivers run on."""
    return "asyncio"
