"""Durations and instants as users may write them, turned into ``timedelta`` / UTC, and
the calendar arithmetic of waits measured in months."""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flowq.errors import ValidationError

__all__ = [
    "MAX_DURATION",
    "Duration",
    "add_months",
    "parse_age",
    "parse_duration",
    "parse_optional_duration",
    "to_utc",
    "wake_time",
]

Duration = timedelta | int | float | str
"""A duration: a ``timedelta``, seconds as a number, or a string like ``"500ms"``."""

MAX_DURATION = timedelta(days=36_500)
"""The longest duration flowq accepts (100 years): a delay, timeout, retry wait or age
added to now must stay a representable date."""
_MAX_SECONDS = MAX_DURATION.total_seconds()

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
        ValidationError: The value is malformed, not positive, longer than
            :data:`MAX_DURATION`, or of another type.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(
            f"{name} must be a timedelta, a number of seconds or a string like '30s', got {value!r}"
        )
    elif isinstance(value, str):
        seconds = _parse_text(value, name)
    else:
        seconds = _finite(value, name)
    if seconds <= 0:
        raise ValidationError(f"{name} must be positive, got {value!r}")
    if seconds > _MAX_SECONDS:
        raise ValidationError(f"{name} must be at most {MAX_DURATION.days:,} days, got {value!r}")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def parse_age(value: Any, *, unit: str, unit_seconds: int) -> timedelta:
    """An age counted back from now (``cleanup_old_jobs(days)``), ``0`` allowed.

    Args:
        value: A number of ``unit``s, at least 0.
        unit: Names the value in the error (``"days"``, ``"minutes"``).
        unit_seconds: The seconds in one ``unit``.

    Raises:
        ValidationError: ``value`` is not a number, negative, not finite, or longer
            than :data:`MAX_DURATION`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValidationError(f"{unit} must be a number >= 0, got {value!r}")
    seconds = _finite(value, unit) * unit_seconds
    if seconds > _MAX_SECONDS:
        raise ValidationError(
            f"{unit} must be at most {_MAX_SECONDS / unit_seconds:,.0f}, got {value!r}"
        )
    return timedelta(seconds=seconds)


def _finite(value: int | float, name: str) -> float:
    """``value`` as a float, refusing NaN, infinities and ints too large for a float."""
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValidationError(f"{name} must be a finite number, got {value!r}")
    return seconds


def parse_optional_duration(value: Duration | None, *, name: str) -> timedelta | None:
    """Like :func:`parse_duration`, passing ``None`` through."""
    return None if value is None else parse_duration(value, name=name)


def _parse_text(text: str, name: str) -> float:
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
    return seconds


def to_utc(value: datetime, *, name: str) -> datetime:
    """Return ``value`` as an aware UTC datetime.

    Raises:
        ValidationError: ``value`` is not a datetime, is naive, or is outside the
            years 1-9999 in UTC.
    """
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValidationError(
            f"{name} is a naive datetime ({value.isoformat()}); pass a timezone-aware "
            "one, e.g. datetime.now(UTC)"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            f"{name} ({value.isoformat()}) is outside the years 1-9999 in UTC"
        ) from None


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, the day clamped to the target month's length."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def wake_time(now: datetime, *, months: int = 0, delta: timedelta = timedelta(0)) -> datetime:
    """``now`` plus calendar months, then plus ``delta``."""
    return add_months(now, months) + delta if months else now + delta
