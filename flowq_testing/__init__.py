"""flowq_testing: the in-memory store, a fake clock and the store contract suite."""

from __future__ import annotations

from flowq_testing.clock import FakeClock as FakeClock

__all__ = ["FakeClock"]
