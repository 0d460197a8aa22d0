"""Cron expressions in time zones: validation and tick times (pure, no I/O).

An expression is 5 fields (minute hour day-of-month month day-of-week) or one of
``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly`` (``@annually``,
``@midnight``), read by croniter. Ticks are wall-clock times in the schedule's zone
(``zoneinfo``), turned into UTC instants:

- a wall time that does not exist (inside a spring-forward gap) ticks once, at the
  first instant after the gap (a daily 02:30 job runs at 03:00 that day);
- a wall time that happens twice (fall back) ticks once, at its first occurrence.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from flowq.errors import ScheduleError

__all__ = [
    "ALIASES",
    "CATCH_UP",
    "CATCH_UP_ALL_LIMIT",
    "ON_TIME",
    "CatchUp",
    "check_expression",
    "check_timezone",
    "due_ticks",
    "next_tick",
]

CatchUp = Literal["latest", "all", "none"]
CATCH_UP: tuple[CatchUp, ...] = ("latest", "all", "none")
"""What a schedule does with ticks it missed (after downtime)."""
CATCH_UP_ALL_LIMIT = 100
"""The most missed ticks ``catch_up="all"`` enqueues at once (the latest ones)."""
ON_TIME = timedelta(minutes=1)
"""A tick picked up within this long after its time is on time, not missed."""
_walkers = threading.local()
_WALKERS_KEPT = 256
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def check_expression(expression: object) -> str:
    """A valid cron expression, stripped.

    Raises:
        ScheduleError: Not a string of 5 fields or an alias, or a field out of range.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ScheduleError(f"a cron expression is a non-empty string, got {expression!r}")
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ScheduleError(
                f"unknown cron alias {text!r}; use one of {', '.join(ALIASES)} or 5 fields"
            )
        return text.lower()
    fields = text.split(" ")
    if len(fields) != 5:
        raise ScheduleError(
            f"cron expression {text!r} has {len(fields)} field(s); it needs 5: "
            "minute hour day-of-month month day-of-week (e.g. '0 9 * * *')"
        )
    if not croniter.is_valid(text):
        raise ScheduleError(f"cron expression {text!r} is not valid (a field is out of range?)")
    return text


def check_timezone(timezone: object) -> ZoneInfo:
    """The zone named ``timezone`` (an IANA name such as ``America/New_York``).

    Raises:
        ScheduleError: Not a string, or no such zone.
    """
    if not isinstance(timezone, str) or not timezone:
        raise ScheduleError(f"a time zone is an IANA name such as 'UTC', got {timezone!r}")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {timezone!r}") from None


def next_tick(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first tick strictly after ``after`` (an aware instant), as a UTC instant."""
    wall = after.astimezone(zone).replace(tzinfo=None)
    walls = _walker(expression, wall)
    while True:  # a wall time mapped to an instant not after ``after`` (fall back) is skipped
        instant = _instant(walls.get_next(datetime), zone)
        if instant > after:
            return instant


def due_ticks(
    expression: str,
    zone: ZoneInfo,
    next_run_at: datetime,
    now: datetime,
    catch_up: CatchUp,
) -> tuple[list[datetime], datetime]:
    """The ticks to enqueue at ``now`` for a schedule due at ``next_run_at``, and its
    next run time after them (later than ``now``).

    Ticks from ``next_run_at`` up to ``now`` are due. The latest of them is on time if
    it is at most :data:`ON_TIME` old; the others were missed. ``"latest"`` enqueues
    the latest due tick; ``"all"`` every due tick (at most the
    :data:`CATCH_UP_ALL_LIMIT` latest); ``"none"`` only an on-time tick.
    """
    if next_run_at > now:
        return [], next_run_at
    limit = CATCH_UP_ALL_LIMIT if catch_up == "all" else 1
    due = _ticks_until(expression, zone, now, since=next_run_at, limit=limit)
    following = next_tick(expression, zone, now)
    if not due or (catch_up == "none" and now - due[-1] > ON_TIME):
        return [], following
    return due, following


def _ticks_until(
    expression: str, zone: ZoneInfo, now: datetime, *, since: datetime, limit: int
) -> list[datetime]:
    """The latest ``limit`` ticks in [``since``, ``now``], ascending (walking back from
    ``now``, so that a long downtime costs nothing)."""
    start = now.astimezone(zone).replace(tzinfo=None) + timedelta(seconds=1)
    walls = _walker(expression, start)
    found: list[datetime] = []
    while len(found) < limit:
        instant = _instant(walls.get_prev(datetime), zone)
        if instant < since:
            break
        if instant <= now and (not found or instant < found[-1]):
            found.append(instant)
    return found[::-1]


def _walker(expression: str, start: datetime) -> croniter:
    """A croniter positioned at ``start``. Parsing an expression costs far more than
    walking it, so each thread keeps one per expression (a thread uses it only inside
    one synchronous call, and repositions it each time)."""
    walkers: dict[str, croniter] | None = getattr(_walkers, "by_expression", None)
    if walkers is None:
        walkers = _walkers.by_expression = {}
    walker = walkers.get(expression)
    if walker is None:
        if len(walkers) >= _WALKERS_KEPT:
            walkers.clear()
        walker = walkers[expression] = croniter(expression, start)
    else:
        walker.set_current(start, force=True)
    return walker


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall time of ``zone`` (first occurrence; a wall time in a
    gap is the first instant after the gap)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads it with the offset before the gap (an instant after the
    # gap), fold=1 with the offset after it (an instant before the gap). The gap's end
    # is the instant between them where the offset changes.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0) if high.microsecond else high
