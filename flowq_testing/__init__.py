"""flowq_testing: the in-memory store, a fake clock and the store contract suite."""

from __future__ import annotations

from flowq_testing.clock import FakeClock as FakeClock
from flowq_testing.memory import InMemoryStore as InMemoryStore

__all__ = ["FakeClock", "InMemoryStore"]
