"""Storage: the :class:`Store` boundary and the SQL implementation."""

from __future__ import annotations

from flowq.store.base import Store as Store
from flowq.store.sql import SqlStore as SqlStore

__all__ = ["SqlStore", "Store"]
