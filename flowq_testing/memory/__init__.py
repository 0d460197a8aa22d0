"""The in-memory store: flowq's tables as Python dicts, for tests.

``store`` holds :class:`InMemoryStore`; its verbs live by topic as the SQL store's
do (``jobs``, ``runs``, ``durable``) over the rows and low-level writes of ``tables``.
"""

from __future__ import annotations

from flowq_testing.memory.store import InMemoryStore as InMemoryStore

__all__ = ["InMemoryStore"]
