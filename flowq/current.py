"""The ``ctx`` of the job running in this task: one contextvar, set by the engine.

It lives alone here so that :mod:`flowq.steps` can find the running job's context
without importing :mod:`flowq.context` (which imports the steps for ``ctx.run``).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from flowq.errors import ContextError

if TYPE_CHECKING:
    from flowq.context import Context

__all__ = ["bind", "current_context", "current_or_none", "reset"]

_current: contextvars.ContextVar[Context] = contextvars.ContextVar("flowq_context")


def current_context() -> Context:
    """The ``ctx`` of the job running in this task.

    Raises:
        ContextError: Called outside a running job.
    """
    found = _current.get(None)
    if found is None:
        raise ContextError("there is no running job here (current_context() outside a job)")
    return found


def current_or_none() -> Context | None:
    """The ``ctx`` of the job running in this task, or None."""
    return _current.get(None)


def bind(context: Context) -> contextvars.Token[Context]:
    """Make ``context`` current for this task (the engine does this while the handler
    runs); give the returned token to :func:`reset` afterwards."""
    return _current.set(context)


def reset(token: contextvars.Token[Context]) -> None:
    """Undo the :func:`bind` that returned ``token``."""
    _current.reset(token)
