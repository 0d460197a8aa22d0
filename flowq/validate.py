"""Checks of option values shared by workflow declarations and job options."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from flowq.errors import ValidationError

__all__ = [
    "INT32",
    "INT64",
    "MAX_NAME_LENGTH",
    "flag",
    "integer",
    "max_attempts",
    "option_names",
    "optional_name",
    "priority",
    "tags",
    "text",
]

MAX_NAME_LENGTH = 255
"""The longest workflow name, tag, group or idempotency key."""


INT32 = (-(2**31), 2**31 - 1)
"""The range of a 32-bit column (priorities, attempt counts)."""
INT64 = (-(2**63), 2**63 - 1)
"""The range of a 64-bit column (job ids)."""


def integer(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    bounds: tuple[int, int] = INT64,
    error: type[ValidationError] = ValidationError,
) -> int:
    """An ``int`` (not a ``bool``) of at least ``minimum`` that fits ``bounds``.

    Raises:
        ValidationError: (or ``error``) naming ``name``, the rule and the value.
    """
    low = bounds[0] if minimum is None else max(minimum, bounds[0])
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= bounds[1]:
        rule = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise error(f"{name} must be {rule} (at most {bounds[1]}), got {value!r}")
    return value


def flag(value: Any, name: str) -> bool:
    """A ``bool``, not a value that merely looks true or false (``"false"``, ``1``).

    Raises:
        ValidationError: naming ``name`` and the value.
    """
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be True or False, got {value!r}")
    return value


def text(value: str, name: str) -> str:
    """A string every store keeps as given: no NUL characters (PostgreSQL refuses
    them) and no lone surrogates (they are not UTF-8). ``value`` must be a ``str``.

    Raises:
        ValidationError: naming ``name`` and what is wrong.
    """
    if "\x00" in value:
        raise ValidationError(f"{name} must not contain NUL characters, got {value!r}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationError(
                f"{name} must not contain lone surrogates (it would not be valid UTF-8), "
                f"got {value!r}"
            ) from None
    return value


def option_names(given: Collection[str], valid: Collection[str], what: str) -> None:
    """Refuse keyword options that do not exist (a typo would otherwise be dropped or
    raise a ``TypeError``).

    Raises:
        ValidationError: ``unknown <what> option(s) ...; valid: ...``.
    """
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValidationError(
            f"unknown {what} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )


def priority(value: Any) -> int:
    """A priority: any 32-bit integer (higher runs first)."""
    return integer(value, "priority", bounds=INT32)


def max_attempts(value: Any) -> int:
    """A number of attempts: an integer of at least 1."""
    return integer(value, "max_attempts", minimum=1, bounds=INT32)


def tags(values: Any) -> tuple[str, ...]:
    """A list of tags: strings of 1-255 characters, kept once each, in order."""
    if isinstance(values, str) or not isinstance(values, Sequence | set | frozenset):
        raise ValidationError(f"tags must be a list of strings, got {values!r}")
    for value in values:
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
            raise ValidationError(f"each tag must be a string of 1-255 characters, got {value!r}")
        text(value, "a tag")
    return tuple(dict.fromkeys(values))


def optional_name(value: Any, option: str) -> str | None:
    """``None`` or a string of 1-255 characters (a group, a key, a workflow name)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise ValidationError(f"{option} must be a string of 1-255 characters, got {value!r}")
    return text(value, option)
