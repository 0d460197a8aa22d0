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
import typing
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

import anyio

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
    """

    __slots__ = (
        "__wrapped__",
        "_return_type",
        "fn",
        "is_async",
        "name",
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
        self.retries = retries
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
        from flowq import context

        ctx = context.current_or_none()
        if ctx is None:
            return self.invoke(args, kwargs)
        return ctx.run_step(self, args, kwargs)

    async def invoke(self, args: Any, kwargs: Any) -> R:
        """Run the body once (async, or sync in a worker thread), within its timeout."""
        with anyio.fail_after(None if self.timeout is None else self.timeout.total_seconds()):
            if self.is_async:
                return await self.fn(*args, **kwargs)  # type: ignore[no-any-return,misc]
            call = cast(Callable[[], R], functools.partial(self.fn, *args, **kwargs))
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)

    async def invoke_with_retries(self, args: Any, kwargs: Any) -> R:
        """Run the body, retrying it ``retries`` times on an exception."""
        tries = 0
        while True:
            tries += 1
            try:
                return await self.invoke(args, kwargs)
            except Exception:
                if tries > self.retries:
                    raise
            await anyio.sleep(self.retry.wait_after(tries, random.random()).total_seconds())  # noqa: S311


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
) -> StepDecorator: ...
def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry: RetryPolicy | None = None,
    timeout: Duration | None = None,
) -> Any:
    """Make a function a step, bare (``@flowq.step``) or with options.

    Args:
        fn: An async or sync function; its result must be JSON-encodable.
        name: Name in job histories (default: the function's qualname). Names are
            per job: the same name may be declared again (tests, reloads).
        retries: Extra tries in the same attempt before the step fails.
        retry: Waits between tries (default: 0.1 s doubling, at most 10 s).
        timeout: Limit of one try.
    """

    def decorate(function: Callable[..., Any]) -> Step[Any, Any]:
        return Step(function, name=name, retries=retries, retry=retry, timeout=timeout)

    return decorate if fn is None else decorate(fn)
