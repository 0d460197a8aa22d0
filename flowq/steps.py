"""``@flowq.step``: functions whose results a job records and replays.

Inside a running job, a step call takes its position when it is called; the first
execution stores its result, and every later run of the handler gets the stored
result back without running the body. Outside a job a step is a plain call (always
awaited; a sync body runs in a worker thread), so it can be unit-tested alone.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
import typing
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

import anyio

from flowq import current
from flowq.durations import Duration, parse_optional_duration
from flowq.errors import RegistrationError, ValidationError
from flowq.models import RetryPolicy

__all__ = ["Step", "StepDecorator", "step"]

P = ParamSpec("P")
R = TypeVar("R")

_UNRESOLVED: Any = object()


class Step(Generic[P, R]):
    """A step: a function, its name in job histories, and how it retries.

    Attributes:
        fn: The wrapped function (async or sync).
        name: The name recorded in job histories (default: the function's qualname).
        retries: Extra tries, in the same attempt, before the step fails.
        retry: Waits between those tries.
        timeout: Limit of one try (None: none).
        overlap_retries: Whether a retry of a sync body may start while the thread
            of a timed-out try still runs (default False: it waits for that thread).
    """

    __slots__ = (
        "__wrapped__",
        "_return_type",
        "fn",
        "is_async",
        "name",
        "overlap_retries",
        "retries",
        "retry",
        "timeout",
    )

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry: RetryPolicy | None = None,
        timeout: Duration | None = None,
        overlap_retries: bool = False,
    ) -> None:
        self.fn = fn
        self.__wrapped__ = fn
        self.name = name if name is not None else fn.__qualname__
        if not isinstance(self.name, str) or not self.name or self.name.startswith("@"):
            raise RegistrationError(
                f"step names are non-empty and do not start with '@': {self.name!r}"
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValidationError(
                f"retries of step {self.name!r} must be an integer >= 0, got {retries!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValidationError(f"retry of step {self.name!r} must be a flowq.RetryPolicy")
        if not isinstance(overlap_retries, bool):
            raise ValidationError(
                f"overlap_retries of step {self.name!r} must be True or False, "
                f"got {overlap_retries!r}"
            )
        self.retries = retries
        self.overlap_retries = overlap_retries
        self.retry = retry or RetryPolicy(0.1, max_delay=10)
        self.timeout: timedelta | None = parse_optional_duration(
            timeout, name=f"timeout of step {self.name!r}"
        )
        self.is_async = inspect.iscoroutinefunction(fn)
        self._return_type: Any = _UNRESOLVED

    @property
    def return_type(self) -> Any:
        """The return annotation, used to decode recorded results (Any without one)."""
        if self._return_type is _UNRESOLVED:
            try:
                hints = typing.get_type_hints(self.fn)
            except NameError as exc:
                raise ValidationError(
                    f"cannot resolve the return annotation of step {self.name!r}: {exc}"
                ) from None
            found = hints.get("return", Any)
            self._return_type = Any if found is type(None) else found
        return self._return_type

    def __repr__(self) -> str:
        return f"<Step {self.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """Run the step: memoized inside a job (its position is taken now), plain outside."""
        ctx = current.current_or_none()
        if ctx is None:
            return self.invoke(args, kwargs)
        return ctx.run_step(self, args, kwargs)

    async def invoke(self, args: Any, kwargs: Any) -> R:
        """Run the body once (async, or sync in a worker thread), within its timeout."""
        return await self._try(args, kwargs, _Tries())

    async def invoke_with_retries(self, args: Any, kwargs: Any) -> R:
        """Run the body, retrying it ``retries`` times on an exception.

        A try of a sync body that timed out leaves its thread running (a thread
        cannot be stopped from outside); unless ``overlap_retries`` is set, the next
        try waits for that thread to end before it runs the body again.
        """
        tries = _Tries()
        while True:
            try:
                return await self._try(args, kwargs, tries)
            except Exception:
                if tries.count > self.retries:
                    raise
            delay = self.retry.wait_after(tries.count, random.random())  # noqa: S311
            await anyio.sleep(delay.total_seconds())

    async def _try(self, args: Any, kwargs: Any, tries: _Tries) -> R:
        tries.count += 1
        limit = None if self.timeout is None else self.timeout.total_seconds()
        if self.is_async:
            with anyio.fail_after(limit):
                return await self.fn(*args, **kwargs)  # type: ignore[no-any-return,misc]
        previous = None if self.overlap_retries else tries.thread
        body = _Body(cast(Callable[[], R], functools.partial(self.fn, *args, **kwargs)))
        try:
            with anyio.fail_after(limit):
                if previous is not None:
                    await previous.ended()
                tries.thread, tries.thread_try = body, tries.count
                return await anyio.to_thread.run_sync(body.run, abandon_on_cancel=True)
        except TimeoutError:
            if tries.thread is body or limit is None:
                raise
            raise TimeoutError(
                f"try {tries.count} of step {self.name!r} did not start within its timeout "
                f"of {limit:g}s: the thread of try {tries.thread_try}, which timed out, "
                "was still running"
            ) from None
        finally:
            body.settle()


class _Body:
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
        self.thread: _Body | None = None
        self.thread_try = 0


class StepDecorator(Protocol):
    """What ``@step(...)`` with options returns."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Step[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> Step[P, R]: ...
@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    retries: int = 0,
    retry: RetryPolicy | None = None,
    timeout: Duration | None = None,
    overlap_retries: bool = False,
) -> StepDecorator: ...
def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry: RetryPolicy | None = None,
    timeout: Duration | None = None,
    overlap_retries: bool = False,
) -> Any:
    """Make a function a step, bare (``@flowq.step``) or with options.

    Args:
        fn: An async or sync function; its result must be JSON-encodable.
        name: Name in job histories (default: the function's qualname). Names are
            per job: the same name may be declared again (tests, reloads).
        retries: Extra tries in the same attempt before the step fails.
        retry: Waits between tries (default: 0.1 s doubling, at most 10 s).
        timeout: Limit of one try. An async body is cancelled at the limit; a sync
            body's thread cannot be stopped from outside and runs on (see
            ``overlap_retries``).
        overlap_retries: Let a retry of a sync body start while the thread of a
            timed-out try still runs. By default the retry waits for that thread
            (the wait counts against the retry's own timeout), so two tries never
            run the body at once. No effect on async bodies.

    Raises:
        ValidationError: An option is out of range or of the wrong type.
        RegistrationError: ``name`` is empty or starts with ``@``.
    """

    def decorate(function: Callable[..., Any]) -> Step[Any, Any]:
        return Step(
            function,
            name=name,
            retries=retries,
            retry=retry,
            timeout=timeout,
            overlap_retries=overlap_retries,
        )

    return decorate if fn is None else decorate(fn)
