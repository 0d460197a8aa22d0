"""``@flowq.step``: functions whose results a job records and replays.

Inside a running job, a step call takes its position when it is called; the first
execution stores its result, and every later run of the handler gets the stored
result back without running the body. Outside a job a step is a plain call (always
awaited; a sync body runs in a worker thread), so it can be unit-tested alone.

This module only defines steps (no I/O library); running a body's tries inside a
job (retries, timeouts, worker threads) is :mod:`flowq.step_tries`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

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
            return self._plain_call(args, kwargs)
        return ctx.run_step(self, args, kwargs)

    async def _plain_call(self, args: Any, kwargs: Any) -> R:
        """Outside a job: one try, within the step's timeout (a sync body in a worker
        thread, abandoned at the timeout). No retries, nothing recorded."""
        limit = None if self.timeout is None else self.timeout.total_seconds()
        async with asyncio.timeout(limit):
            if self.is_async:
                return await self.fn(*args, **kwargs)  # type: ignore[no-any-return,misc]
            body = cast(Callable[[], R], functools.partial(self.fn, *args, **kwargs))
            return await asyncio.to_thread(body)


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
