"""Where flowq reads the time and waits for it: every read and every wait for a
moment in job time goes through a :class:`Clock` (the seam only, free of I/O
libraries; the wall clock is :class:`flowq.system_clock.SystemClock`)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock"]


@runtime_checkable
class Clock(Protocol):
    """A source of the current time (always timezone-aware UTC) that also owns waiting
    for a moment of that time, as trio's ``MockClock`` does.

    The system clock is the default; ``flowq_testing.FakeClock`` moves only when a
    test moves it, and moving it wakes whoever sleeps until a moment it has reached
    (a worker waiting for a timer, a retry or a token's deadline). Stores and workers
    compare against ``now()`` instead of the database's own clock so that a fake clock
    can travel. Waits that are about the database rather than job time (poll
    intervals, heartbeats, back-off) are real time.
    """

    def now(self) -> datetime:
        """Return the current instant as an aware UTC datetime."""

    async def sleep_until(self, deadline: datetime) -> None:
        """Return once ``now() >= deadline`` (at once if it already is). Cancellable."""
