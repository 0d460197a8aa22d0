"""``flowq.workflow_ref``: a typed handle on a workflow implemented somewhere else.

A producer (a web service, a script, another team's service) enqueues jobs of a
workflow whose code it does not import. ``app.add_job("signup.onboard", payload)``
does that by name; a :class:`WorkflowRef` does the same with types, so that
``app.start(ref, payload)`` is checked by the type checker and the payload by msgspec,
without the implementation::

    onboard = flowq.workflow_ref("signup.onboard", Signup)
    job_id = await app.start(onboard, Signup(email="ada@example.com"))

The workflow's declared defaults (timeout, retry policy, max attempts, dead letter,
``force_kill_on_timeout``) are not known here: the worker that runs the job fills in
those not given at enqueue (see :data:`flowq.store.base.WORKER_RESOLVED`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

from flowq import validate
from flowq.errors import ValidationError

__all__ = ["WorkflowRef", "workflow_ref"]

PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")


class WorkflowRef(Generic[PayloadT, ResultT]):
    """A workflow known by name and types only. Made by :func:`workflow_ref`.

    Attributes:
        name: The name jobs refer to it by (the workflow's ``name``).
        payload_type: What payloads are checked against at enqueue (``Any``: only
            encoded).
        result_type: What the workflow returns, for readers of its results.
    """

    __slots__ = ("name", "payload_type", "result_type")

    def __init__(self, name: str, payload_type: Any = Any, result_type: Any = Any) -> None:
        checked = validate.optional_name(name, "a workflow name")
        if checked is None:
            raise ValidationError("a workflow name must be a string of 1-255 characters, got None")
        self.name = checked
        self.payload_type = payload_type
        self.result_type = result_type

    def __repr__(self) -> str:
        return f"<flowq.WorkflowRef {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkflowRef):
            return NotImplemented
        return (self.name, self.payload_type, self.result_type) == (
            other.name,
            other.payload_type,
            other.result_type,
        )

    def __hash__(self) -> int:
        return hash(self.name)


@overload
def workflow_ref(name: str) -> WorkflowRef[Any, Any]: ...
@overload
def workflow_ref(name: str, payload_type: type[PayloadT]) -> WorkflowRef[PayloadT, Any]: ...
@overload
def workflow_ref(
    name: str, payload_type: type[PayloadT], result_type: type[ResultT]
) -> WorkflowRef[PayloadT, ResultT]: ...
def workflow_ref(
    name: str, payload_type: Any = Any, result_type: Any = Any
) -> WorkflowRef[Any, Any]:
    """A typed handle on the workflow registered as ``name`` in the workers' code.

    Args:
        name: The workflow's name (``@flowq.workflow(name=...)``, or the handler's
            ``module.qualname``).
        payload_type: The payload's type (a msgspec Struct, dataclass, TypedDict or
            builtin): payloads given to ``app.start`` are checked against it.
        result_type: The workflow's result type (documentation for readers; results
            are read with ``app.result``).

    Raises:
        ValidationError: ``name`` is empty or not a string.

    Example:
        >>> ref = workflow_ref("signup.onboard", dict)
        >>> ref.name
        'signup.onboard'
    """
    return WorkflowRef(name, payload_type, result_type)
