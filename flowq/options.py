"""Job options as users pass them, checked and turned into a :class:`NewJob`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, Unpack, cast

from flowq import codec
from flowq.durations import Duration, parse_duration, parse_optional_duration, to_utc
from flowq.errors import DependencyError, ValidationError
from flowq.models import BatchDepRef, DependsOn, RetryPolicy
from flowq.registry import Workflow
from flowq.store.base import NewJob

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETRY",
    "JobOptions",
    "JobSpec",
    "build_new_job",
    "check_changes",
]

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY = RetryPolicy()
MAX_NAME_LENGTH = 255


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

    workflow: Workflow[Any, Any] | str
    payload: Any
    options: JobOptions = field(default_factory=lambda: JobOptions())

    def __init__(
        self,
        workflow: Workflow[Any, Any] | str,
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
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise ValidationError(
            f"unknown job option(s) {', '.join(unknown)}; valid: {', '.join(sorted(_OPTION_NAMES))}"
        )


def build_new_job(
    definition: Workflow[Any, Any] | None,
    workflow_name: str,
    payload: Any,
    options: JobOptions,
    now: datetime,
) -> NewJob:
    """Check ``options``, merge the workflow's defaults and encode the payload.

    ``definition`` is ``None`` for a workflow this process does not know; the payload
    is then only checked to be encodable.

    Raises:
        ValidationError: An option is malformed (the message names it).
        PayloadError, SerializationError: The payload does not fit or cannot be encoded.
    """
    check_option_names(dict(options))
    payload_text = codec.encode_payload(
        payload, definition.payload_type if definition else Any, workflow=workflow_name
    )
    depends_on, depends_on_tags = _depends_on(options.get("depends_on"))
    workflow_tags = definition.tags if definition else ()
    return NewJob(
        workflow=workflow_name,
        payload=payload_text,
        priority=_priority(options.get("priority", definition.priority if definition else None)),
        max_attempts=_max_attempts(
            options.get("max_attempts", definition.max_attempts if definition else None)
        ),
        run_at=_run_at(options, now),
        retry=_retry(options, definition.retry if definition else None),
        timeout=parse_optional_duration(
            options.get("timeout", definition.timeout if definition else None), name="timeout"
        ),
        force_kill_on_timeout=bool(
            options.get(
                "force_kill_on_timeout", definition.force_kill_on_timeout if definition else False
            )
        ),
        tags=_tags((*workflow_tags, *_tags(options.get("tags", ())))),
        idempotency_key=_optional_name(options.get("idempotency_key"), "idempotency_key"),
        group=_optional_name(options.get("group"), "group"),
        depends_on=depends_on,
        depends_on_tags=depends_on_tags,
        dead_letter=_dead_letter(
            options.get("dead_letter", definition.dead_letter if definition else None)
        ),
    )


def check_changes(
    definition: Workflow[Any, Any] | None,
    workflow_name: str,
    changes: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Check ``edit_job`` changes and return them as stored values.

    Accepts ``payload``, ``priority``, ``max_attempts``, ``run_at`` / ``delay``,
    ``tags`` (replaces the tags), ``timeout``, ``retry`` / ``retry_*``, ``group``,
    ``dead_letter`` and ``force_kill_on_timeout``.
    """
    allowed = {
        "payload", "priority", "max_attempts", "run_at", "delay", "tags", "timeout", "retry",
        "retry_delay", "retry_backoff", "retry_delay_max", "group", "dead_letter",
        "force_kill_on_timeout",
    }  # fmt: skip
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValidationError(
            f"edit_job cannot change {', '.join(unknown)}; editable: {', '.join(sorted(allowed))}"
        )
    result: dict[str, Any] = {}
    if "payload" in changes:
        result["payload"] = codec.encode_payload(
            changes["payload"],
            definition.payload_type if definition else Any,
            workflow=workflow_name,
        )
    if "priority" in changes:
        result["priority"] = _priority(changes["priority"])
    if "max_attempts" in changes:
        result["max_attempts"] = _max_attempts(changes["max_attempts"])
    if "run_at" in changes or "delay" in changes:
        result["run_at"] = _run_at(cast(JobOptions, changes), now)
    if "tags" in changes:
        result["tags"] = _tags(changes["tags"])
    if "timeout" in changes:
        result["timeout"] = parse_optional_duration(changes["timeout"], name="timeout")
    if {"retry", "retry_delay", "retry_backoff", "retry_delay_max"} & set(changes):
        result["retry"] = _retry(cast(JobOptions, changes), None)
    if "group" in changes:
        result["group"] = _optional_name(changes["group"], "group")
    if "dead_letter" in changes:
        result["dead_letter"] = _dead_letter(changes["dead_letter"])
    if "force_kill_on_timeout" in changes:
        result["force_kill_on_timeout"] = bool(changes["force_kill_on_timeout"])
    return result


def _priority(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"priority must be an integer, got {value!r}")
    if not -(2**31) <= value < 2**31:
        raise ValidationError(f"priority must fit in 32 bits, got {value!r}")
    return value


def _max_attempts(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_ATTEMPTS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
        raise ValidationError(f"max_attempts must be an integer >= 1, got {value!r}")
    return value


def _run_at(options: JobOptions, now: datetime) -> datetime:
    run_at, delay = options.get("run_at"), options.get("delay")
    if run_at is not None and delay is not None:
        raise ValidationError("pass run_at or delay, not both")
    if run_at is not None:
        return to_utc(run_at, name="run_at")
    if delay is not None:
        return now + parse_duration(delay, name="delay")
    return now


def _retry(options: JobOptions, default: RetryPolicy | None) -> RetryPolicy:
    policy = options.get("retry")
    flat = [k for k in ("retry_delay", "retry_backoff", "retry_delay_max") if k in options]
    if policy is not None:
        if flat:
            raise ValidationError(f"pass retry=RetryPolicy(...) or {', '.join(flat)}, not both")
        if not isinstance(policy, RetryPolicy):
            raise ValidationError(f"retry must be a flowq.RetryPolicy, got {policy!r}")
        return policy
    base = default or DEFAULT_RETRY
    if not flat:
        return base
    return RetryPolicy(
        options.get("retry_delay", base.delay),
        backoff=options.get("retry_backoff", base.backoff),
        max_delay=options.get("retry_delay_max", base.max_delay),
        jitter=base.jitter,
    )


def _tags(values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence | set | frozenset):
        raise ValidationError(f"tags must be a list of strings, got {values!r}")
    for value in values:
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
            raise ValidationError(f"each tag must be a string of 1-255 characters, got {value!r}")
    return tuple(dict.fromkeys(values))


def _optional_name(value: Any, option: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise ValidationError(f"{option} must be a string of 1-255 characters, got {value!r}")
    return value


def _dead_letter(value: Any) -> str | None:
    if isinstance(value, Workflow):
        return value.name
    return _optional_name(value, "dead_letter")


def _depends_on(value: Any) -> tuple[tuple[int | BatchDepRef, ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    if isinstance(value, DependsOn):
        ids, tags = value.job_ids, _tags(value.tags)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        ids, tags = tuple(value), ()
    else:
        raise DependencyError(
            f"depends_on must be a list of job ids or flowq.DependsOn(...), got {value!r}"
        )
    for item in ids:
        if isinstance(item, BatchDepRef):
            continue
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise DependencyError(f"depends_on takes job ids (positive integers), got {item!r}")
    return tuple(dict.fromkeys(ids)), tags
