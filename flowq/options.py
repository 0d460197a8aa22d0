"""Job options as users pass them, checked and turned into a :class:`NewJob`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypedDict, Unpack, cast

from flowq import codec, validate
from flowq.durations import Duration, parse_duration, parse_optional_duration, to_utc
from flowq.errors import DependencyError, ValidationError
from flowq.handler_names import check_importable
from flowq.models import BatchDepRef, DependsOn, RetryPolicy
from flowq.registry import Workflow
from flowq.store.base import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY, WORKER_RESOLVED, NewJob
from flowq.workflow_ref import WorkflowRef

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETRY",
    "EDITABLE_OPTIONS",
    "JobOptions",
    "JobSpec",
    "build_child_job",
    "build_new_job",
    "build_new_jobs",
    "check_change_names",
    "check_changes",
    "check_option_names",
    "dead_letter_name",
    "declared_values",
    "spec_from_dict",
]


class JobOptions(TypedDict, total=False):
    """Keyword options of ``start``, ``add_job`` and :class:`JobSpec`.

    Every option defaults to the workflow's default, then to flowq's.
    """

    run_at: datetime
    delay: Duration
    priority: int
    max_attempts: int
    retry: RetryPolicy
    retry_delay: Duration
    retry_backoff: bool
    retry_delay_max: Duration
    timeout: Duration
    force_kill_on_timeout: bool
    tags: Sequence[str]
    idempotency_key: str
    group: str
    depends_on: Sequence[int | BatchDepRef] | DependsOn
    dead_letter: str | Workflow[Any, Any]


@dataclass(frozen=True, slots=True, init=False)
class JobSpec:
    """One job of an ``add_jobs`` batch: ``JobSpec(workflow, payload, **options)``."""

    workflow: Workflow[Any, Any] | WorkflowRef[Any, Any] | str
    payload: Any
    options: JobOptions = field(default_factory=lambda: JobOptions())

    def __init__(
        self,
        workflow: Workflow[Any, Any] | WorkflowRef[Any, Any] | str,
        payload: Any = None,
        /,
        **options: Unpack[JobOptions],
    ) -> None:
        object.__setattr__(self, "workflow", workflow)
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "options", options)


_OPTION_NAMES = frozenset(JobOptions.__annotations__)


def spec_from_dict(item: dict[str, Any]) -> JobSpec:
    """Read ``{"workflow": ..., "payload": ..., **options}`` as a :class:`JobSpec`."""
    if "workflow" not in item:
        raise ValidationError(f"a job dict needs a 'workflow' key, got keys {sorted(item)}")
    options = {k: v for k, v in item.items() if k not in ("workflow", "payload")}
    check_option_names(options)
    return JobSpec(item["workflow"], item.get("payload"), **cast(JobOptions, options))


def check_option_names(options: dict[str, Any]) -> None:
    """Reject option names that do not exist (typos would otherwise be dropped)."""
    validate.option_names(options, _OPTION_NAMES, "job")


def build_new_job(
    definition: Workflow[Any, Any] | WorkflowRef[Any, Any],
    payload: Any,
    options: JobOptions,
    now: datetime,
) -> NewJob:
    """Check ``options``, merge the workflow's defaults and encode the payload.

    For a :class:`WorkflowRef` (a workflow not registered here) the defaults are not
    known: the options of :data:`WORKER_RESOLVED` not given in ``options`` are left for
    the worker that runs the job (``NewJob.unresolved_options``).

    Raises:
        ValidationError: An option is malformed (the message names it).
        PayloadError, SerializationError: The payload does not fit or cannot be encoded.
    """
    check_option_names(dict(options))
    payload_text = codec.encode_payload(payload, definition.payload_type, workflow=definition.name)
    depends_on, depends_on_tags = _depends_on(options.get("depends_on"))
    if isinstance(definition, Workflow):
        declared: _Declared = definition
        unresolved: tuple[str, ...] = ()
    else:
        declared = _UNDECLARED
        unresolved = tuple(name for name in WORKER_RESOLVED if not _given(name, options))
    priority = options.get("priority", declared.priority)
    max_attempts = options.get("max_attempts", declared.max_attempts)
    job = NewJob(
        workflow=definition.name,
        payload=payload_text,
        priority=0 if priority is None else validate.priority(priority),
        max_attempts=DEFAULT_MAX_ATTEMPTS
        if max_attempts is None
        else validate.max_attempts(max_attempts),
        run_at=_run_at(options, now),
        retry=_retry(options, declared.retry or DEFAULT_RETRY),
        timeout=parse_optional_duration(options.get("timeout", declared.timeout), name="timeout"),
        force_kill_on_timeout=validate.flag(
            options.get("force_kill_on_timeout", declared.force_kill_on_timeout),
            "force_kill_on_timeout",
        ),
        tags=validate.tags((*declared.tags, *validate.tags(options.get("tags", ())))),
        idempotency_key=validate.optional_name(options.get("idempotency_key"), "idempotency_key"),
        group=validate.optional_name(options.get("group"), "group"),
        depends_on=depends_on,
        depends_on_tags=depends_on_tags,
        dead_letter=dead_letter_name(options.get("dead_letter", declared.dead_letter)),
        unresolved_options=unresolved,
    )
    if job.force_kill_on_timeout and isinstance(definition, Workflow):
        check_importable(definition)
    return job


def build_new_jobs(
    items: Sequence[tuple[Workflow[Any, Any] | WorkflowRef[Any, Any], Any, JobOptions]],
    now: datetime,
) -> list[NewJob]:
    """:func:`build_new_job` for each ``(definition, payload, options)`` of a batch.

    Items of one workflow with equal options share the checked options of the first
    such item: only their payloads are encoded again (a bulk load of similar jobs
    costs little more than encoding its payloads).
    """
    built: dict[Any, dict[str, Any]] = {}  # options key -> the fields of its first job
    jobs = []
    for definition, payload, options in items:
        key = _options_key(definition, options)
        fields = built.get(key) if key is not None else None
        if fields is None:
            job = build_new_job(definition, payload, options, now)
            if key is not None:
                built[key] = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
        else:
            text = codec.encode_payload(payload, definition.payload_type, workflow=definition.name)
            job = NewJob(**{**fields, "payload": text})
        jobs.append(job)
    return jobs


def _options_key(
    definition: Workflow[Any, Any] | WorkflowRef[Any, Any], options: JobOptions
) -> Any:
    """What makes two items' checked options equal (None: options that cannot be
    compared cheaply, such as lists: each such item is checked on its own)."""
    key = (definition, *options.items())
    try:
        hash(key)
    except TypeError:
        return None
    return key


def declared_values(definition: Workflow[Any, Any], names: Sequence[str]) -> dict[str, Any]:
    """The values ``definition`` declares for the options ``names`` (of
    :data:`WORKER_RESOLVED`), checked as at enqueue, as ``Store.resolve_options`` takes
    them: what a worker writes for a job enqueued where the workflow was unknown."""
    values: dict[str, Any] = {
        "timeout": parse_optional_duration(definition.timeout, name="timeout"),
        "max_attempts": DEFAULT_MAX_ATTEMPTS
        if definition.max_attempts is None
        else validate.max_attempts(definition.max_attempts),
        "retry": definition.retry or DEFAULT_RETRY,
        "dead_letter": dead_letter_name(definition.dead_letter),
        "force_kill_on_timeout": definition.force_kill_on_timeout,
    }
    return {name: values[name] for name in names}


class _Declared(Protocol):
    """What a workflow declares for its jobs (a :class:`Workflow`, or nothing)."""

    @property
    def priority(self) -> int | None: ...
    @property
    def max_attempts(self) -> int | None: ...
    @property
    def retry(self) -> RetryPolicy | None: ...
    @property
    def timeout(self) -> Duration | None: ...
    @property
    def force_kill_on_timeout(self) -> bool: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def dead_letter(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class _Undeclared:
    """The declaration of a workflow this process does not know: nothing."""

    priority: int | None = None
    max_attempts: int | None = None
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    force_kill_on_timeout: bool = False
    tags: tuple[str, ...] = ()
    dead_letter: str | None = None


_UNDECLARED = _Undeclared()

_OPTIONS_OF_FIELD = {"retry": ("retry", "retry_delay", "retry_backoff", "retry_delay_max")}


def _given(field_name: str, options: JobOptions) -> bool:
    """Whether ``options`` sets the job field ``field_name`` explicitly."""
    return any(option in options for option in _OPTIONS_OF_FIELD.get(field_name, (field_name,)))


EDITABLE_OPTIONS = frozenset(
    {
        "payload", "priority", "max_attempts", "run_at", "delay", "tags", "timeout", "retry",
        "retry_delay", "retry_backoff", "retry_delay_max", "group", "dead_letter",
        "force_kill_on_timeout",
    }
)  # fmt: skip
"""What ``edit_job`` and ``edit_all_pending_jobs`` accept."""


def build_child_job(
    definition: Workflow[Any, Any],
    payload: Any,
    options: JobOptions,
    now: datetime,
    *,
    parent_id: int,
    position: int,
    outcome_position: int | None = None,
) -> NewJob:
    """The child job a parent starts at ``position`` of its history: idempotent per
    parent and position, so a parent that replays never starts it twice.

    Args:
        definition: The child's workflow.
        payload: The child's payload.
        options: ``start()``'s options, except ``idempotency_key``.
        now: The time the options' ``delay`` counts from.
        parent_id: The parent job.
        position: The position of the start in the parent's history.
        outcome_position: Where the parent records the child's outcome
            (``ctx.call``), or None if it does not wait for it. Until something is
            recorded there, ``cleanup_old_jobs`` keeps the finished child while the
            parent is unfinished.

    Raises:
        ValidationError: ``options`` has an idempotency key, or is malformed.
    """
    if "idempotency_key" in options:
        raise ValidationError("a child job gets its idempotency key from its parent")
    return dataclasses.replace(
        build_new_job(definition, payload, options, now),
        parent_job_id=parent_id,
        parent_outcome_seq=outcome_position,
        idempotency_key=f"flowq.child:{parent_id}:{position}",
    )


def check_change_names(changes: dict[str, Any]) -> None:
    """Reject changes ``edit_job`` cannot make (``status``, typos...)."""
    unknown = sorted(set(changes) - EDITABLE_OPTIONS)
    if unknown:
        raise ValidationError(
            f"edit_job cannot change {', '.join(unknown)}; editable: "
            f"{', '.join(sorted(EDITABLE_OPTIONS))}"
        )


def check_changes(
    definition: Workflow[Any, Any] | None,
    changes: dict[str, Any],
    now: datetime,
    *,
    current_retry: RetryPolicy | None,
) -> dict[str, Any]:
    """Check ``edit_job`` changes and return them as values for the store.

    ``tags`` replaces the job's tags; ``retry_delay`` / ``retry_backoff`` /
    ``retry_delay_max`` adjust ``current_retry`` (bulk edits, which have no single
    current policy, take ``retry=RetryPolicy(...)`` instead). A ``payload`` is checked
    against ``definition``, which bulk edits only have when filtered by workflow.
    """
    check_change_names(changes)
    result: dict[str, Any] = {}
    if "payload" in changes:
        if definition is None:
            raise ValidationError(
                "editing payloads in bulk needs workflow=... so the payload can be checked"
            )
        result["payload"] = codec.encode_payload(
            changes["payload"], definition.payload_type, workflow=definition.name
        )
    if "priority" in changes:
        result["priority"] = validate.priority(changes["priority"])
    if "max_attempts" in changes:
        result["max_attempts"] = validate.max_attempts(changes["max_attempts"])
    if "run_at" in changes or "delay" in changes:
        result["run_at"] = _run_at(cast(JobOptions, changes), now) or now
    if "tags" in changes:
        result["tags"] = validate.tags(changes["tags"])
    if "timeout" in changes:
        result["timeout"] = parse_optional_duration(changes["timeout"], name="timeout")
    flat_retry = {"retry_delay", "retry_backoff", "retry_delay_max"} & set(changes)
    if flat_retry and current_retry is None:
        raise ValidationError(
            f"bulk edits take retry=flowq.RetryPolicy(...), not {', '.join(sorted(flat_retry))}"
        )
    if "retry" in changes or flat_retry:
        result["retry"] = _retry(cast(JobOptions, changes), current_retry or DEFAULT_RETRY)
    if "group" in changes:
        result["group"] = validate.optional_name(changes["group"], "group")
    if "dead_letter" in changes:
        result["dead_letter"] = dead_letter_name(changes["dead_letter"])
    if "force_kill_on_timeout" in changes:
        result["force_kill_on_timeout"] = validate.flag(
            changes["force_kill_on_timeout"], "force_kill_on_timeout"
        )
    return result


def _run_at(options: JobOptions, now: datetime) -> datetime | None:
    """The requested start time; None means "now" (the store's clock)."""
    run_at, delay = options.get("run_at"), options.get("delay")
    if run_at is not None and delay is not None:
        raise ValidationError("pass run_at or delay, not both")
    if run_at is not None:
        return to_utc(run_at, name="run_at")
    if delay is not None:
        return now + parse_duration(delay, name="delay")
    return None


def _retry(options: JobOptions, base: RetryPolicy) -> RetryPolicy:
    policy = options.get("retry")
    flat = [k for k in ("retry_delay", "retry_backoff", "retry_delay_max") if k in options]
    if policy is not None:
        if flat:
            raise ValidationError(f"pass retry=RetryPolicy(...) or {', '.join(flat)}, not both")
        if not isinstance(policy, RetryPolicy):
            raise ValidationError(f"retry must be a flowq.RetryPolicy, got {policy!r}")
        return policy
    if not flat:
        return base
    backoff = validate.flag(options.get("retry_backoff", base.backoff), "retry_backoff")
    return RetryPolicy(
        options.get("retry_delay", base.delay),
        backoff=backoff,
        max_delay=options.get("retry_delay_max", base.max_delay),
        jitter=base.jitter and bool(backoff),  # a fixed delay is exact
    )


def dead_letter_name(value: Any) -> str | None:
    """A dead-letter workflow given as a workflow object or a name."""
    if isinstance(value, Workflow):
        return value.name
    return validate.optional_name(value, "dead_letter")


def _depends_on(value: Any) -> tuple[tuple[int | BatchDepRef, ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    if isinstance(value, DependsOn):
        ids, tags = value.job_ids, validate.tags(value.tags)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        ids, tags = tuple(value), ()
    else:
        raise DependencyError(
            f"depends_on must be a list of job ids or flowq.DependsOn(...), got {value!r}"
        )
    for item in ids:
        if isinstance(item, BatchDepRef):
            continue
        validate.integer(item, "each job id in depends_on", minimum=1, error=DependencyError)
    return tuple(dict.fromkeys(ids)), tags
