"""In-process event hooks: ``app.on("job:completed", callback)``."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flowq.errors import ValidationError
from flowq.models import ErrorEntry

__all__ = ["HOOK_EVENTS", "HookCallback", "HookEvent", "Hooks"]

log = logging.getLogger("flowq.hooks")

HOOK_EVENTS = frozenset(
    {"job:started", "job:completed", "job:failed", "job:cancelled", "job:waiting"}
)
"""Events a callback can subscribe to."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HookEvent:
    """What a hook callback receives.

    Attributes:
        event: One of :data:`HOOK_EVENTS`.
        job_id: The job.
        workflow: Its workflow name.
        attempt: The attempt the event belongs to.
        error: For ``job:failed``, the recorded error.
        will_retry: For ``job:failed``, whether another attempt is scheduled.
    """

    event: str
    job_id: int
    workflow: str
    attempt: int
    error: ErrorEntry | None = None
    will_retry: bool | None = None


HookCallback = Callable[[HookEvent], Awaitable[None] | None]


class Hooks:
    """Callbacks by event name; a failing callback is logged and never stops a worker."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[HookCallback]] = {}

    def on(self, event: str, callback: HookCallback) -> None:
        """Call ``callback(HookEvent)`` (sync or async) on every ``event``.

        Raises:
            ValidationError: ``event`` is not one of :data:`HOOK_EVENTS`.
        """
        if event not in HOOK_EVENTS:
            raise ValidationError(
                f"unknown hook event {event!r}; choose from {', '.join(sorted(HOOK_EVENTS))}"
            )
        if not callable(callback):
            raise ValidationError(f"hook callback must be callable, got {callback!r}")
        self._callbacks.setdefault(event, []).append(callback)

    def wants(self, event: str) -> bool:
        """Whether any callback listens to ``event`` (so callers can skip building it)."""
        return event in self._callbacks

    async def emit(self, event: HookEvent) -> None:
        """Run every callback of ``event.event`` in registration order."""
        for callback in self._callbacks.get(event.event, ()):
            try:
                result: Any = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("flowq: hook %r for job %s raised", event.event, event.job_id)
