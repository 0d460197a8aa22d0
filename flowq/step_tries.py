"""Running a step's body inside a job: tries, their timeouts, and worker threads.

A step call that must run its body (nothing recorded at its position) runs it here:
up to ``1 + retries`` tries in the same attempt, waiting the step's retry policy
between them. An async body is cancelled at its timeout; a sync body runs in a
worker thread, which a timeout cannot stop: the next try then waits for that thread
to end (unless ``overlap_retries``), so two tries never run the body at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import random
import threading
import types
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import anyio

from flowq.errors import NonRetryableError
from flowq.steps import Step

__all__ = ["ThreadBody", "run_with_retries", "step_mocks"]

step_mocks: contextvars.ContextVar[Mapping[str, Callable[..., Any]]] = contextvars.ContextVar(
    "flowq_step_mocks", default=types.MappingProxyType({})
)
"""Replacements of step bodies by step name, for the jobs run in this context (set by
``flowq_testing.WorkflowEnvironment.mock_step``): a mocked step runs the replacement
once instead of its body, and its result is recorded and replayed like the body's."""

R = TypeVar("R")


async def run_with_retries(step: Step[Any, R], args: Any, kwargs: Any) -> R:
    """Run the step's body, retrying it ``step.retries`` times on an exception.

    A try of a sync body that timed out leaves its thread running (a thread
    cannot be stopped from outside); unless ``overlap_retries`` is set, the next
    try waits for that thread to end before it runs the body again.
    """
    mock = step_mocks.get().get(step.name)
    if mock is not None:
        result = mock(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result  # type: ignore[no-any-return]
    tries = _Tries()
    while True:
        try:
            return await _try(step, args, kwargs, tries)
        except NonRetryableError:
            raise
        except Exception:
            if tries.count > step.retries:
                raise
        delay = step.retry.wait_after(tries.count, random.random())  # noqa: S311
        await anyio.sleep(delay.total_seconds())


async def _try(step: Step[Any, R], args: Any, kwargs: Any, tries: _Tries) -> R:
    tries.count += 1
    limit = None if step.timeout is None else step.timeout.total_seconds()
    if step.is_async:
        if limit is None:  # no cancel scope to enter and leave (~20 us a try)
            return await step.fn(*args, **kwargs)  # type: ignore[no-any-return,misc]
        with anyio.fail_after(limit):
            return await step.fn(*args, **kwargs)  # type: ignore[no-any-return,misc]
    previous = None if step.overlap_retries else tries.thread
    body = ThreadBody(cast(Callable[[], R], functools.partial(step.fn, *args, **kwargs)))
    try:
        with anyio.fail_after(limit) if limit is not None else contextlib.nullcontext():
            if previous is not None:
                await previous.ended()
            tries.thread, tries.thread_try = body, tries.count
            return await anyio.to_thread.run_sync(body.run, abandon_on_cancel=True)
    except TimeoutError:
        if tries.thread is body or limit is None:
            raise
        raise TimeoutError(
            f"try {tries.count} of step {step.name!r} did not start within its timeout "
            f"of {limit:g}s: the thread of try {tries.thread_try}, which timed out, "
            "was still running"
        ) from None
    finally:
        body.settle()


class ThreadBody:
    """A sync step body handed to a worker thread, and whether that thread is done.

    A try that times out stops waiting for its thread, but the thread runs on; the
    next try awaits :meth:`ended` so that two tries never run the body at once.
    """

    __slots__ = ("_call", "_done", "_dropped", "_lock", "_started")

    def __init__(self, call: Callable[[], Any]) -> None:
        self._call = call
        self._lock = threading.Lock()
        self._started = False
        self._dropped = False
        self._done = threading.Event()

    def run(self) -> Any:
        """Run the body (in the worker thread), then signal that it ended."""
        with self._lock:
            if self._dropped:
                return None
            self._started = True
        try:
            return self._call()
        finally:
            self._done.set()

    def settle(self) -> None:
        """The try is over: if no thread took the body yet, it never will."""
        with self._lock:
            if not self._started:
                # anyio drops a call cancelled before a thread picked it up; if one
                # picks it up anyway, run() sees this and does nothing.
                self._dropped = True
                self._done.set()

    async def ended(self) -> None:
        """Wait until no thread runs the body any more (cancellable at once)."""
        while not self._done.is_set():
            # The wait happens in a helper thread that gives up after a second, so a
            # cancelled wait leaves no thread blocked on a body that never ends.
            await anyio.to_thread.run_sync(
                self._done.wait, 1.0, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
            )


class _Tries:
    """The tries of one step call: how many began, and the body (and number) of the
    last try that handed a sync body to a thread."""

    __slots__ = ("count", "thread", "thread_try")

    def __init__(self) -> None:
        self.count = 0
        self.thread: ThreadBody | None = None
        self.thread_try = 0
