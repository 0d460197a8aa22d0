"""The wall clock: flowq's default :class:`flowq.clock.Clock`."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

__all__ = ["SystemClock"]


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return ``datetime.now(UTC)``."""
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime) -> None:
        """Sleep (real time) until ``deadline``."""
        left = (deadline - self.now()).total_seconds()
        if left > 0:
            await anyio.sleep(left)
