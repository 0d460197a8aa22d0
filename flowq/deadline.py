"""A running attempt's timeout, which the handler may steer: ``ctx.prolong`` moves it,
``ctx.on_timeout`` is asked before it fires.

The deadline is real (monotonic) time, like the attempt it bounds: durable waits end
the attempt's run, and a resumed run starts its timeout afresh.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio

from flowq.durations import parse_optional_duration

__all__ = ["Deadline", "TimeoutCallback"]

log = logging.getLogger("flowq.worker")

TimeoutCallback = Callable[[], Any]
"""``ctx.on_timeout``'s callback: no arguments, sync or async, returns a duration to
extend the deadline by (from now) or None to let the timeout fire."""


class Deadline:
    """The timeout of one run of a job.

    Args:
        timeout: The job's timeout (None: the run has no deadline).
        job_id: Named in log lines.
    """

    def __init__(self, timeout: timedelta | None, job_id: int) -> None:
        self.timeout = timeout
        self.job_id = job_id
        self.at: float | None = (
            None if timeout is None else anyio.current_time() + timeout.total_seconds()
        )
        """When the run times out (``anyio.current_time()`` seconds), None for never."""
        self.expired = False
        """Whether the timeout fired (the handler was cancelled because of it)."""
        self.moved = False
        """Whether ``prolong`` or an ``on_timeout`` callback moved the deadline."""
        self._callback: TimeoutCallback | None = None
        self._moved: anyio.Event | None = None  # made by watch(): only runs with a deadline

    def prolong(self, duration: timedelta | None) -> float | None:
        """Move the deadline to now + ``duration`` (None: the job's own timeout);
        return the seconds left, or None when the run has no deadline."""
        if self.at is None or self.timeout is None:
            return None
        extension = self.timeout if duration is None else duration
        self.at = anyio.current_time() + extension.total_seconds()
        self.moved = True
        if self._moved is not None:
            self._moved.set()
        return extension.total_seconds()

    def on_timeout(self, callback: TimeoutCallback) -> None:
        """Ask ``callback`` at the deadline (it replaces an earlier one)."""
        self._callback = callback

    async def watch(self, scope: anyio.CancelScope) -> None:
        """Until cancelled: at the deadline, ask the callback; cancel ``scope`` (the
        handler) when the timeout fires."""
        while self.at is not None:
            self._moved = anyio.Event()
            with anyio.move_on_after(max(0.0, self.at - anyio.current_time())):
                await self._moved.wait()
                continue  # prolonged meanwhile: wait for the new deadline
            if anyio.current_time() < self.at:
                continue
            extension = await self._ask()
            if extension is None:
                self.expired = True
                scope.cancel()
                return
            self.at = anyio.current_time() + extension.total_seconds()
            self.moved = True

    async def _ask(self) -> timedelta | None:
        """The callback's extension, or None (none given, or it failed: logged)."""
        if self._callback is None:
            return None
        try:
            answer = self._callback()
            if inspect.isawaitable(answer):
                answer = await answer
            extension = parse_optional_duration(answer, name="on_timeout's result")
        except Exception:
            log.exception(
                "flowq: job %s: the on_timeout callback failed; the timeout fires", self.job_id
            )
            return None
        if extension is not None and extension <= timedelta(0):
            return None
        return extension
