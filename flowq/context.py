"""``ctx``: what a running handler may ask of flowq, and the contextvar that holds it."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import anyio

from flowq import codec
from flowq.errors import ValidationError
from flowq.store.base import Lease, Store

__all__ = ["Context", "JobInfo", "current_context"]

_current: contextvars.ContextVar[Context] = contextvars.ContextVar("flowq_context")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """The running job, as a handler sees it."""

    id: int
    workflow: str
    attempt: int
    max_attempts: int
    tags: tuple[str, ...]
    group: str | None


class Context:
    """The ``ctx`` argument of a handler.

    Attributes:
        job: Which job and attempt is running.
        cancelled: Set when the job is cancelled (or its worker lost it); the
            handler is also cancelled at its next ``await``. Sync handlers can poll
            ``ctx.cancelled.is_set()``.
    """

    def __init__(self, job: JobInfo, lease: Lease, store: Store) -> None:
        self.job = job
        self.cancelled = anyio.Event()
        self._lease = lease
        self._store = store
        self._output: str | None = None
        self._has_output = False

    async def set_progress(self, percent: float) -> None:
        """Record progress (0-100, rounded to an integer) with a ``progress`` event.

        Raises:
            ValidationError: ``percent`` is not a number from 0 to 100.
        """
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not (0 <= percent <= 100)
        ):
            raise ValidationError(f"progress must be a number from 0 to 100, got {percent!r}")
        await self._store.record_progress(self._lease, round(percent))

    async def set_output(self, value: Any) -> None:
        """Store ``value`` as the job's output now (a non-None return value wins later).

        Raises:
            SerializationError: ``value`` cannot be encoded as JSON.
        """
        text = codec.encode(value, what=f"output of job {self.job.id}")
        await self._store.record_output(self._lease, text)
        self._output, self._has_output = text, True

    def output_for(self, returned: Any) -> str | None:
        """The output to store at completion: the return value unless it is None."""
        if returned is not None:
            return codec.encode(returned, what=f"output of job {self.job.id}")
        return self._output if self._has_output else None


def current_context() -> Context:
    """The ``ctx`` of the job running in this task.

    Raises:
        LookupError: Called outside a running job.
    """
    return _current.get()


def bind(context: Context) -> contextvars.Token[Context]:
    """Make ``context`` current for this task (the engine does this)."""
    return _current.set(context)
