"""``force_kill_on_timeout=True``: a job's handler runs in a worker process of its own
that is killed (SIGKILL) at the deadline, so a handler stuck in ``time.sleep`` or C
code is stopped and the worker goes on with other jobs.

The handler is found in the child process by its module and qualified name, so it
must be importable: a closure, lambda or nested function is refused when the job is
added. The child has no database connection: ctx features that need the engine
(steps, waits, tokens, progress, ``prolong``...) raise ``ContextError`` there.
Processes come from anyio's worker process pool (``anyio.to_process``), so they are
reused between jobs; a killed one is replaced.
"""

from __future__ import annotations

import inspect
import traceback
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.to_process
import msgspec

from flowq import codec, current
from flowq.errors import ContextError, NonRetryableError
from flowq.failures import exception_message, exception_name
from flowq.handler_names import location, resolve

if TYPE_CHECKING:
    from flowq.context import JobInfo
    from flowq.registry import Workflow

__all__ = ["IsolatedContext", "IsolatedFailure", "run_in_process"]

_NEEDS_ENGINE = (
    "it runs in a separate process killed at its deadline (force_kill_on_timeout=True), "
    "which has no connection to the database"
)


class IsolatedFailure(Exception):
    """The handler raised in its process: its type's name and message, as stored."""

    def __init__(self, type_name: str, message: str, details: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message
        self.details = details
        """The traceback from the child process."""
        self.retryable = retryable
        """False when the handler raised ``NonRetryableError``."""


async def run_in_process(workflow: Workflow[Any, Any], payload_json: str, job: JobInfo) -> Any:
    """Run the handler in a worker process; return its result (decoded JSON).

    Cancelling the caller (the deadline, a cancelled job, a stopping worker) kills
    the process.

    Raises:
        IsolatedFailure: The handler raised.
    """
    module_name, qualname = location(workflow)
    outcome = await anyio.to_process.run_sync(
        _run_here, module_name, qualname, payload_json, asdict(job), cancellable=True
    )
    if outcome[0] in ("error", "final"):
        kind, type_name, message, details = outcome
        raise IsolatedFailure(type_name, message, details, retryable=kind == "error")
    return codec.decode(outcome[1])


class IsolatedContext:
    """The ``ctx`` of a handler in its own process: ``job`` and ``cancelled`` work;
    everything that needs the engine raises ``ContextError`` saying why."""

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        self.cancelled = anyio.Event()

    def __getattr__(self, name: str) -> NoReturn:
        raise ContextError(f"ctx.{name} is not available in job {self.job.id}: {_NEEDS_ENGINE}")

    def run_step(self, step: Any, args: Any, kwargs: Any) -> NoReturn:
        """Steps need the engine: refused."""
        raise ContextError(
            f"step {getattr(step, 'name', step)!r} cannot run in job {self.job.id}: {_NEEDS_ENGINE}"
        )


def _run_here(
    module_name: str, qualname: str, payload_json: str, job: dict[str, Any]
) -> tuple[str, ...]:
    """In the child process: run the handler; ``("ok", output JSON)`` or ``("error"``
    (``"final"`` for ``NonRetryableError``), type name, message, traceback)``."""
    from flowq.context import JobInfo
    from flowq.registry import Workflow

    try:
        found = resolve(module_name, qualname)
        workflow = found if isinstance(found, Workflow) else None
        fn = found.fn if workflow is not None else found
        payload_type = workflow.payload_type if workflow is not None else Any
        payload = msgspec.json.decode(payload_json, type=payload_type)
        info = JobInfo(**{**job, "tags": tuple(job["tags"])})
        context = IsolatedContext(info)
        token = current.bind(context)  # type: ignore[arg-type]
        try:
            takes_context = workflow.takes_context if workflow is not None else False
            args = (payload, context) if takes_context else (payload,)
            result = fn(*args)
            if inspect.isawaitable(result):

                async def wait_for(awaitable: Any) -> Any:
                    return await awaitable

                result = anyio.run(wait_for, result)
        finally:
            current.reset(token)
        return ("ok", codec.encode_result(result, what=f"output of job {info.id}"))
    except Exception as exc:
        kind = "final" if isinstance(exc, NonRetryableError) else "error"
        return (kind, exception_name(exc), exception_message(exc), traceback.format_exc())
