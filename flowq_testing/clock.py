"""A clock that moves only when a test moves it, and wakes whoever sleeps on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio

from flowq.durations import to_utc
from flowq.errors import ValidationError

__all__ = ["FakeClock"]

_DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)


class FakeClock:
    """A :class:`flowq.Clock` for tests: ``now()`` changes only through ``set``/``advance``.

    Moving it wakes every ``sleep_until`` whose moment it has reached, so a worker
    sleeping until a timer, a retry or a token's deadline runs it as soon as the test
    moves the clock there, in the same App or another one sharing this clock.

    Args:
        start: The initial instant (aware); 2030-01-01 00:00 UTC by default.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _DEFAULT_START if start is None else to_utc(start, name="start")
        self._sleepers: set[anyio.Event] = set()

    def now(self) -> datetime:
        """The current fake instant (aware UTC)."""
        return self._now

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (aware; may go backwards)."""
        self._now = to_utc(instant, name="instant")
        self._wake_sleepers()

    def advance(self, delta: timedelta) -> None:
        """Move forward by ``delta`` (a non-negative timedelta)."""
        if not isinstance(delta, timedelta) or delta < timedelta(0):
            raise ValidationError(f"advance() takes a non-negative timedelta, got {delta!r}")
        self._now += delta
        self._wake_sleepers()

    async def sleep_until(self, deadline: datetime) -> None:
        """Wait until the test moves the clock to ``deadline`` or past it."""
        while self._now < deadline:
            moved = anyio.Event()
            self._sleepers.add(moved)
            try:
                await moved.wait()
            finally:
                self._sleepers.discard(moved)

    def _wake_sleepers(self) -> None:
        for sleeper in list(self._sleepers):
            sleeper.set()
