"""Workflow definitions and the registry that holds them (no I/O here)."""

from __future__ import annotations

import inspect
import threading
import typing
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Concatenate, Generic, Protocol, TypedDict, TypeVar, Unpack, overload

from flowq import validate
from flowq.durations import Duration, parse_optional_duration
from flowq.errors import (
    RegistrationError,
    ScheduleError,
    UnknownWorkflowError,
    ValidationError,
)
from flowq.models import RetryPolicy

if typing.TYPE_CHECKING:
    from flowq.options import JobOptions
    from flowq.schedules import DeclaredSchedule

__all__ = [
    "MainModuleWorkflowWarning",
    "Registry",
    "Workflow",
    "WorkflowDecorator",
    "WorkflowOptions",
    "default_registry",
    "schedule",
    "workflow",
]

PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")

_UNRESOLVED: Any = object()


class WorkflowOptions(TypedDict, total=False):
    """Options of ``@workflow`` (and :class:`Workflow`): a workflow's defaults.

    Attributes:
        name: The workflow name (default ``module.qualname``).
        max_attempts: Default attempts for its jobs (default 3).
        timeout: Default deadline of one attempt.
        retry: Default retry policy.
        priority: Default priority (higher runs first).
        tags: Tags every job of this workflow carries, besides its own.
        dead_letter: Workflow (or its name) that receives jobs that failed permanently.
        force_kill_on_timeout: Run attempts in a child process killed at the deadline.
    """

    name: str | None
    max_attempts: int | None
    timeout: Duration | None
    retry: RetryPolicy | None
    priority: int | None
    tags: Sequence[str]
    dead_letter: str | Workflow[Any, Any] | None
    force_kill_on_timeout: bool


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this module (the decorated code),
    seen from the function that calls ``warnings.warn``."""
    frame = inspect.currentframe()
    level = 0
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        level += 1
    return level


class MainModuleWorkflowWarning(UserWarning):
    """A workflow named after ``__main__`` (a script): workers importing the code as a
    module would look for another name."""


class Workflow(Generic[PayloadT, ResultT]):
    """A registered workflow: a handler plus its defaults. Made by ``@workflow``.

    Calling the object calls the handler directly (handy in unit tests).

    Attributes:
        name: The name jobs refer to it by.
        fn: The handler, ``(payload)`` or ``(payload, ctx)``, async or sync.
        takes_context: Whether the handler has a second (``ctx``) parameter.
        is_async: Whether the handler is a coroutine function.
        max_attempts, timeout, retry, priority, tags, dead_letter,
        force_kill_on_timeout: Defaults for jobs of this workflow.
        schedules: The ``@schedule`` declarations stacked on it (a registry it is
            added to takes them along).
    """

    __slots__ = (
        "_payload_type",
        "dead_letter",
        "fn",
        "force_kill_on_timeout",
        "is_async",
        "max_attempts",
        "name",
        "priority",
        "retry",
        "schedules",
        "tags",
        "takes_context",
        "timeout",
    )

    def __init__(self, fn: Callable[..., Any], **options: Unpack[WorkflowOptions]) -> None:
        unknown = sorted(set(options) - set(WorkflowOptions.__annotations__))
        if unknown:
            raise ValidationError(
                f"unknown workflow option(s) {', '.join(unknown)}; valid: "
                f"{', '.join(sorted(WorkflowOptions.__annotations__))}"
            )
        self.fn = fn
        name = options.get("name")
        self.name = name if name is not None else f"{fn.__module__}.{fn.__qualname__}"
        if name is None and fn.__module__ == "__main__":
            warnings.warn(
                f"workflow {fn.__qualname__!r} is defined in __main__ without name=, so its "
                f"jobs are stored as {self.name!r}: a worker that imports this code as a "
                "module will not find them. Pass name=... (e.g. "
                f"@flowq.workflow(name={fn.__qualname__!r}))",
                MainModuleWorkflowWarning,
                stacklevel=_caller_level(),
            )
        if not isinstance(self.name, str) or not self.name or len(self.name) > 255:
            raise RegistrationError(f"workflow name must be 1-255 characters, got {self.name!r}")
        validate.text(self.name, "workflow name")
        self.takes_context = _count_parameters(fn, self.name) == 2
        self.is_async = inspect.iscoroutinefunction(fn)
        where = f"workflow {self.name!r}"
        max_attempts = options.get("max_attempts")
        self.max_attempts = None if max_attempts is None else validate.max_attempts(max_attempts)
        self.timeout: timedelta | None = parse_optional_duration(
            options.get("timeout"), name=f"timeout of {where}"
        )
        retry = options.get("retry")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValidationError(f"retry of {where} must be a flowq.RetryPolicy, got {retry!r}")
        self.retry = retry
        priority = options.get("priority")
        self.priority = None if priority is None else validate.priority(priority)
        self.tags = validate.tags(options.get("tags", ()))
        dead_letter = options.get("dead_letter")
        self.dead_letter = (
            dead_letter.name
            if isinstance(dead_letter, Workflow)
            else validate.optional_name(dead_letter, f"dead_letter of {where}")
        )
        self.force_kill_on_timeout = validate.flag(
            options.get("force_kill_on_timeout", False), f"force_kill_on_timeout of {where}"
        )
        self._payload_type: Any = _UNRESOLVED
        self.schedules: tuple[DeclaredSchedule, ...] = ()

    @property
    def payload_type(self) -> Any:
        """The payload annotation of the handler (``Any`` when there is none).

        Read lazily so that annotations may name classes defined after the handler.
        """
        if self._payload_type is _UNRESOLVED:
            self._payload_type = _first_parameter_type(self.fn)
        return self._payload_type

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the handler directly, outside any job."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}>"

    def same_definition(self, other: Workflow[Any, Any]) -> bool:
        """Whether ``other`` is this handler again (the same object, or a reload of it)."""
        if other.fn is self.fn:
            return True
        mine, theirs = getattr(self.fn, "__code__", None), getattr(other.fn, "__code__", None)
        return (
            mine is not None
            and theirs is not None
            and self.fn.__qualname__ == other.fn.__qualname__
            and mine.co_filename == theirs.co_filename
            and mine.co_firstlineno == theirs.co_firstlineno
        )


def _count_parameters(fn: Callable[..., Any], name: str) -> int:
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"workflow {name!r}: cannot read the handler signature") from exc
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) not in (1, 2) or len(positional) != len(
        [
            p
            for p in parameters
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    ):
        raise RegistrationError(
            f"workflow {name!r}: the handler must take (payload) or (payload, ctx), "
            f"got {inspect.signature(fn)}"
        )
    return len(positional)


def _first_parameter_type(fn: Callable[..., Any]) -> Any:
    first = next(iter(inspect.signature(fn).parameters))
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise ValidationError(
            f"cannot resolve the payload annotation of {fn.__qualname__}: {exc}"
        ) from None
    return hints.get(first, Any)


class Registry:
    """A set of workflows by name. ``flowq.default_registry`` is the global one.

    Example:
        >>> registry = Registry()
        >>> @registry.workflow(name="greet")
        ... async def greet(payload: dict) -> str:
        ...     return "hi"
        >>> registry.get("greet") is greet
        True
    """

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow[Any, Any]] = {}
        self._schedules: dict[str, DeclaredSchedule] = {}
        self._lock = threading.Lock()

    def add(self, workflow: Workflow[Any, Any]) -> None:
        """Register ``workflow``.

        Raises:
            RegistrationError: Another function is registered under the same name.
        """
        with self._lock:
            taken = self._workflows.get(workflow.name)
            if taken is not None and not taken.same_definition(workflow):
                raise RegistrationError(
                    f"workflow name {workflow.name!r} is taken by {taken.fn.__module__}."
                    f"{taken.fn.__qualname__}; pass name=... to register another function"
                )
            self._workflows[workflow.name] = workflow
            for declared in workflow.schedules:
                self._add_schedule(declared)

    def get(self, name: str) -> Workflow[Any, Any] | None:
        """The workflow registered as ``name``, or ``None``."""
        return self._workflows.get(name)

    def require(self, name: str) -> Workflow[Any, Any]:
        """The workflow registered as ``name``.

        Raises:
            UnknownWorkflowError: Nothing is registered under that name.
        """
        found = self._workflows.get(name)
        if found is None:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise UnknownWorkflowError(
                f"no workflow is registered as {name!r} (registered: {known}); import the "
                "module that defines it before adding jobs"
            )
        return found

    def names(self) -> list[str]:
        """Sorted names of every registered workflow."""
        return sorted(self._workflows)

    def __iter__(self) -> Iterator[Workflow[Any, Any]]:
        return iter(list(self._workflows.values()))

    def __len__(self) -> int:
        return len(self._workflows)

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

    @overload
    def workflow(
        self, fn: Callable[Concatenate[PayloadT, ...], Awaitable[ResultT]], /
    ) -> Workflow[PayloadT, ResultT]: ...
    @overload
    def workflow(
        self, fn: Callable[Concatenate[PayloadT, ...], ResultT], /
    ) -> Workflow[PayloadT, ResultT]: ...
    @overload
    def workflow(self, **options: Unpack[WorkflowOptions]) -> WorkflowDecorator: ...
    def workflow(
        self, fn: Callable[..., Any] | None = None, **options: Unpack[WorkflowOptions]
    ) -> Any:
        """Register a handler as a workflow, bare (``@workflow``) or with options.

        Args:
            fn: The handler: ``(payload)`` or ``(payload, ctx)``, async or sync.
            **options: See :class:`WorkflowOptions`.

        Raises:
            RegistrationError: The name is taken by another function, or the handler
                does not take ``(payload)`` or ``(payload, ctx)``.
            ValidationError: An option is malformed (checked here, not at start()).
        """

        def register(handler: Callable[..., Any]) -> Workflow[Any, Any]:
            if isinstance(handler, Workflow):
                raise RegistrationError(f"{handler!r} is already a workflow")
            definition: Workflow[Any, Any] = Workflow(handler, **options)
            self.add(definition)
            return definition

        return register if fn is None else register(fn)

    def schedule(
        self,
        cron_expression: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        allow_overlap: bool = False,
        catch_up: str = "latest",
        payload: Any = None,
        **job_options: Unpack[JobOptions],
    ) -> Callable[[Workflow[PayloadT, ResultT]], Workflow[PayloadT, ResultT]]:
        """Run a workflow of this registry on a cron schedule; stack it above
        ``@registry.workflow`` (several schedules per workflow are fine). Workers save
        declared schedules when they start.

        Args:
            cron_expression: 5 fields (``"0 9 * * *"``) or ``@hourly``, ``@daily``,
                ``@weekly``, ``@monthly``, ``@yearly``.
            name: Unique name (default ``"<workflow>@<expression>"``).
            timezone: IANA zone of the expression's wall-clock times (``"UTC"``).
            allow_overlap: Start a tick's job while the previous one is unfinished
                (default False: the tick is skipped, and recorded as skipped).
            catch_up: Missed ticks after downtime: ``"latest"`` runs one, ``"all"``
                runs each (at most 100), ``"none"`` runs none.
            payload: The payload of every job.
            **job_options: ``start()``'s options for every job.

        Raises:
            ScheduleError: A bad expression, zone or option, a name taken by another
                schedule, or a workflow not registered on this registry.
        """
        from flowq.schedules import declare

        def attach(workflow: Workflow[PayloadT, ResultT]) -> Workflow[PayloadT, ResultT]:
            declared = declare(
                workflow,
                cron_expression,
                name=name,
                timezone=timezone,
                allow_overlap=allow_overlap,
                catch_up=catch_up,
                payload=payload,
                options=job_options,
            )
            with self._lock:
                if self._workflows.get(workflow.name) is not workflow:
                    raise ScheduleError(
                        f"workflow {workflow.name!r} is not registered on this registry: put "
                        "the registry's own .schedule above its .workflow"
                    )
                self._add_schedule(declared)
                if declared not in workflow.schedules:
                    workflow.schedules = (*workflow.schedules, declared)
            return workflow

        return attach

    def _add_schedule(self, declared: DeclaredSchedule) -> None:
        taken = self._schedules.get(declared.name)
        if taken is not None and taken != declared:
            raise ScheduleError(
                f"schedule name {declared.name!r} is taken by another schedule; "
                "pass name=... to tell them apart"
            )
        self._schedules[declared.name] = declared

    def schedules(self) -> list[DeclaredSchedule]:
        """The schedules declared on this registry, by name."""
        return [self._schedules[name] for name in sorted(self._schedules)]


class WorkflowDecorator(Protocol):
    """What ``@workflow(...)`` with options returns."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[PayloadT, ...], Awaitable[ResultT]], /
    ) -> Workflow[PayloadT, ResultT]: ...
    @overload
    def __call__(
        self, fn: Callable[Concatenate[PayloadT, ...], ResultT], /
    ) -> Workflow[PayloadT, ResultT]: ...


default_registry = Registry()
"""The registry ``@flowq.workflow`` registers on."""

workflow = default_registry.workflow
"""Register a workflow on :data:`default_registry` (see :meth:`Registry.workflow`)."""

schedule = default_registry.schedule
"""Schedule a workflow of :data:`default_registry` (see :meth:`Registry.schedule`)."""
