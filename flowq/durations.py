"""Durations and instants as users may write them, turned into ``timedelta`` / UTC, and
the calendar arithmetic of waits measured in months."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

from flowq.errors import ValidationError

__all__ = [
    "Duration",
    "add_months",
    "parse_duration",
    "parse_optional_duration",
    "to_utc",
    "wake_time",
]

Duration = timedelta | int | float | str
"""A duration: a ``timedelta``, seconds as a number, or a string like ``"500ms"``."""

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Duration, *, name: str = "duration") -> timedelta:
    """Turn a duration into a positive ``timedelta``.

    Args:
        value: A ``timedelta``, a number of seconds, or a string made of
            number-unit parts (``"500ms"``, ``"30s"``, ``"10m"``, ``"48h"``, ``"7d"``,
            ``"1h30m"``).
        name: What the value is, for the error message.

    Raises:
        ValidationError: The value is malformed, not positive, or of another type.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(
            f"{name} must be a timedelta, a number of seconds or a string like '30s', got {value!r}"
        )
    elif isinstance(value, str):
        result = _parse_text(value, name)
    else:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValidationError(f"{name} must be a finite number of seconds, got {value!r}")
        result = timedelta(seconds=value)
    if result <= timedelta(0):
        raise ValidationError(f"{name} must be positive, got {value!r}")
    return result


def parse_optional_duration(value: Duration | None, *, name: str) -> timedelta | None:
    """Like :func:`parse_duration`, passing ``None`` through."""
    return None if value is None else parse_duration(value, name=name)


def _parse_text(text: str, name: str) -> timedelta:
    compact = text.strip().replace(" ", "").lower()
    position = 0
    seconds = 0.0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not compact or position != len(compact):
        raise ValidationError(
            f"{name}: cannot read {text!r} as a duration; write e.g. '500ms', '30s', "
            "'10m', '48h', '7d' or '1h30m'"
        )
    return timedelta(seconds=seconds)


def to_utc(value: datetime, *, name: str) -> datetime:
    """Return ``value`` as an aware UTC datetime.

    Raises:
        ValidationError: ``value`` is not a datetime or is naive.
    """
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValidationError(
            f"{name} is a naive datetime ({value.isoformat()}); pass a timezone-aware "
            "one, e.g. datetime.now(UTC)"
        )
    return value.astimezone(UTC)


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, the day clamped to the target month's length."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def wake_time(now: datetime, *, months: int = 0, delta: timedelta = timedelta(0)) -> datetime:
    """``now`` plus calendar months, then plus ``delta``."""
    return add_months(now, months) + delta if months else now + delta
