"""Where flowq reads the time: every read goes through a :class:`Clock`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of the current time, always timezone-aware UTC.

    The system clock is the default; ``flowq_testing.FakeClock`` moves only when a
    test moves it. Stores and workers compare against ``now()`` instead of the
    database's own clock so that a fake clock can travel.
    """

    def now(self) -> datetime:
        """Return the current instant as an aware UTC datetime."""


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return ``datetime.now(UTC)``."""
        return datetime.now(UTC)
