"""Where a workflow's handler lives, by name, so another process can import it (pure;
``force_kill_on_timeout`` runs handlers that way, see :mod:`flowq.isolated`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowq.errors import ValidationError

if TYPE_CHECKING:
    from flowq.registry import Workflow

__all__ = ["check_importable", "location", "resolve"]


def location(workflow: Workflow[Any, Any]) -> tuple[str, str]:
    """The module and qualified name of the workflow's handler."""
    fn = workflow.fn
    return getattr(fn, "__module__", "") or "", getattr(fn, "__qualname__", "") or ""


def check_importable(workflow: Workflow[Any, Any]) -> None:
    """Refuse a handler that another process cannot import by name.

    Raises:
        ValidationError: A lambda, a closure or nested function, or a name that does
            not lead back to this workflow.
    """
    module_name, qualname = location(workflow)
    why = None
    if "<lambda>" in qualname:
        why = "it is a lambda"
    elif "<locals>" in qualname:
        why = "it is defined inside a function (a closure or nested function)"
    else:
        try:
            found = resolve(module_name, qualname)
        except (ImportError, AttributeError):
            found = None
        if found is not workflow and getattr(found, "fn", found) is not workflow.fn:
            why = f"{module_name}.{qualname} does not lead back to it"
    if why is not None:
        raise ValidationError(
            f"workflow {workflow.name!r} cannot run with force_kill_on_timeout=True: its "
            f"handler must be importable by qualified name from another process, and {why}; "
            "define it at module level"
        )


def resolve(module_name: str, qualname: str) -> Any:
    """The object at ``module_name`` / ``qualname`` (importing the module)."""
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found
