"""Checks of option values shared by workflow declarations and job options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowq.errors import ValidationError

__all__ = ["MAX_NAME_LENGTH", "max_attempts", "optional_name", "priority", "tags"]

MAX_NAME_LENGTH = 255
"""The longest workflow name, tag, group or idempotency key."""


def priority(value: Any) -> int:
    """A priority: any 32-bit integer (higher runs first)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"priority must be an integer, got {value!r}")
    if not -(2**31) <= value < 2**31:
        raise ValidationError(f"priority must fit in 32 bits, got {value!r}")
    return value


def max_attempts(value: Any) -> int:
    """A number of attempts: an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
        raise ValidationError(f"max_attempts must be an integer >= 1, got {value!r}")
    return value


def tags(values: Any) -> tuple[str, ...]:
    """A list of tags: strings of 1-255 characters, kept once each, in order."""
    if isinstance(values, str) or not isinstance(values, Sequence | set | frozenset):
        raise ValidationError(f"tags must be a list of strings, got {values!r}")
    for value in values:
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
            raise ValidationError(f"each tag must be a string of 1-255 characters, got {value!r}")
    return tuple(dict.fromkeys(values))


def optional_name(value: Any, option: str) -> str | None:
    """``None`` or a string of 1-255 characters (a group, a key, a workflow name)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise ValidationError(f"{option} must be a string of 1-255 characters, got {value!r}")
    return value
