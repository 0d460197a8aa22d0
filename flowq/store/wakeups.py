"""In-process wake-up hints from a store to the workers of the same process."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LocalWakeups"]


class LocalWakeups:
    """Listeners called after this process commits something workers care about.

    Hints are plain strings: ``"jobs"`` (work may have become runnable) and
    ``"cancel:<job id>"`` (a running job was cancelled). They are only hints: a
    worker that misses one still finds the work by polling.
    """

    def __init__(self) -> None:
        self._listeners: set[Callable[[str], None]] = set()

    def add_listener(self, on_wake: Callable[[str], None]) -> None:
        """Call ``on_wake(hint)`` for every hint from now on."""
        self._listeners.add(on_wake)

    def remove_listener(self, on_wake: Callable[[str], None]) -> None:
        """Stop calling ``on_wake``."""
        self._listeners.discard(on_wake)

    def wake(self, hint: str) -> None:
        """Deliver ``hint`` to every listener."""
        for listener in list(self._listeners):
            listener(hint)
