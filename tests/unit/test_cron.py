"""Cron tick times in time zones, across DST, and what a schedule catches up (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import flowq
from flowq import cron

NEW_YORK = cron.check_timezone("America/New_York")


def ticks(expression: str, after: datetime, count: int, zone: str = "UTC") -> list[datetime]:
    """The next ``count`` ticks after ``after``."""
    found, moment = [], after
    for _ in range(count):
        moment = cron.next_tick(expression, cron.check_timezone(zone), moment)
        found.append(moment)
    return found


def test_nine_in_new_york_is_14_utc_in_winter_and_13_in_summer() -> None:
    """0 9 * * * in America/New_York fires at 14:00 UTC in January, 13:00 UTC in July."""
    [winter] = ticks("0 9 * * *", datetime(2031, 1, 15, tzinfo=UTC), 1, "America/New_York")
    [summer] = ticks("0 9 * * *", datetime(2031, 7, 15, tzinfo=UTC), 1, "America/New_York")
    assert (winter, summer) == (
        datetime(2031, 1, 15, 14, tzinfo=UTC), datetime(2031, 7, 15, 13, tzinfo=UTC),
    )  # fmt: skip


def test_a_time_in_the_spring_forward_gap_runs_once_after_the_gap() -> None:
    """Daily 02:30 on 2031-03-09 (clocks jump 02:00 -> 03:00): once, at 03:00 EDT."""
    found = ticks("30 2 * * *", datetime(2031, 3, 8, 12, tzinfo=UTC), 3, "America/New_York")
    local = [t.astimezone(NEW_YORK).strftime("%m-%d %H:%M %Z") for t in found]
    assert local == ["03-09 03:00 EDT", "03-10 02:30 EDT", "03-11 02:30 EDT"]


def test_a_repeated_wall_time_on_fall_back_runs_once() -> None:
    """Daily 01:30 on 2031-11-02 (01:00-02:00 happens twice): once, the first time."""
    found = ticks("30 1 * * *", datetime(2031, 11, 1, 12, tzinfo=UTC), 2, "America/New_York")
    local = [t.astimezone(NEW_YORK).strftime("%m-%d %H:%M %Z") for t in found]
    assert local == ["11-02 01:30 EDT", "11-03 01:30 EST"]


def test_every_15_minutes_through_the_gap_never_ticks_twice_at_one_instant() -> None:
    """Four wall times in the gap collapse into one tick at its end."""
    found = ticks("*/15 * * * *", datetime(2031, 3, 9, 6, 40, tzinfo=UTC), 3, "America/New_York")
    assert found == [
        datetime(2031, 3, 9, 6, 45, tzinfo=UTC),  # 01:45 EST
        datetime(2031, 3, 9, 7, 0, tzinfo=UTC),  # 03:00 EDT (02:00-02:45 fell in the gap)
        datetime(2031, 3, 9, 7, 15, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
    ],
)
def test_aliases_tick_like_their_five_fields(expression: str, expected: str) -> None:
    """The aliases are the usual five-field schedules."""
    start = datetime(2031, 5, 17, 10, 20, tzinfo=UTC)
    assert ticks(expression, start, 3) == ticks(expected, start, 3)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "not valid"),
        ("* * * *", "has 4 field"),
        ("0 9 * * * *", "has 6 field"),
        ("every day", "has 2 field"),
        ("@sometimes", "unknown cron alias"),
        ("", "non-empty string"),
        (9, "non-empty string"),
    ],
)
def test_bad_expressions_are_schedule_errors(expression: object, message: str) -> None:
    """A ScheduleError (a ValidationError) that says what is wrong."""
    with pytest.raises(flowq.ScheduleError, match=message) as raised:
        cron.check_expression(expression)
    assert isinstance(raised.value, flowq.ValidationError)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", None, "../etc/passwd"])
def test_unknown_zones_are_schedule_errors(zone: object) -> None:
    """Unknown or malformed zone names are refused."""
    with pytest.raises(flowq.ScheduleError):
        cron.check_timezone(zone)


HOUR = "0 * * * *"
START = datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("catch_up", "now", "expected"),
    [
        ("latest", START + timedelta(hours=5, minutes=30), [START + timedelta(hours=5)]),
        (
            "all",
            START + timedelta(hours=2, minutes=30),
            [START, START + timedelta(hours=1), START + timedelta(hours=2)],
        ),
        ("none", START + timedelta(hours=5, minutes=30), []),
        ("none", START + timedelta(hours=5, seconds=30), [START + timedelta(hours=5)]),
        ("latest", START - timedelta(minutes=1), []),
    ],
    ids=[
        "latest after downtime",
        "all missed",
        "none after downtime",
        "none on time",
        "not due yet",
    ],
)
def test_what_a_schedule_enqueues_after_downtime(
    catch_up: cron.CatchUp, now: datetime, expected: list[datetime]
) -> None:
    """Due ticks from next_run_at to now, per catch_up; the next run is after now."""
    due, following = cron.due_ticks(HOUR, cron.check_timezone("UTC"), START, now, catch_up)
    assert due == expected
    assert following > now and following == cron.next_tick(HOUR, cron.check_timezone("UTC"), now)


def test_catching_up_everything_is_bounded() -> None:
    """A year of minutely ticks missed: "all" enqueues the latest 100, at once."""
    now = START + timedelta(days=365)
    due, _ = cron.due_ticks("* * * * *", cron.check_timezone("UTC"), START, now, "all")
    assert len(due) == cron.CATCH_UP_ALL_LIMIT and due[-1] == now
    assert due == sorted(due) and due[0] == now - timedelta(minutes=99)
