"""Durations and instants as users write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import flowq
from flowq.durations import add_months, parse_age, parse_duration, to_utc, wake_time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("48h", timedelta(hours=48)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5s", timedelta(seconds=1.5)),
        (" 2W ", timedelta(weeks=2)),
        (0.25, timedelta(milliseconds=250)),
        (90, timedelta(seconds=90)),
        (timedelta(days=1), timedelta(days=1)),
    ],
)
def test_accepted_durations(value: object, expected: timedelta) -> None:
    """Strings, numbers of seconds and timedeltas all read as the same duration."""
    assert parse_duration(value, name="timeout") == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "soon", "10", "5 minutes", "1h-2m", "m5", 0, -1, "0s",
                                   timedelta(0), float("nan"), True, None, [5]])  # fmt: skip
def test_rejected_durations_name_the_option(value: object) -> None:
    """Malformed or non-positive durations raise ValidationError naming the option."""
    with pytest.raises(flowq.ValidationError, match="timeout"):
        parse_duration(value, name="timeout")  # type: ignore[arg-type]


def test_validation_errors_are_value_errors() -> None:
    """Validation errors can be caught as ValueError too."""
    with pytest.raises(ValueError, match="delay"):
        parse_duration("later", name="delay")


def test_to_utc_converts_and_rejects_naive() -> None:
    """Aware datetimes convert to UTC; naive ones are refused."""
    tokyo = datetime(2030, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))
    assert to_utc(tokyo, name="run_at") == datetime(2030, 1, 1, tzinfo=UTC)
    assert to_utc(tokyo, name="run_at").tzinfo is UTC
    with pytest.raises(flowq.ValidationError, match="naive"):
        to_utc(datetime(2030, 1, 1), name="run_at")


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    """An instant in UTC."""
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "months", "expected"),
    [
        (at(2030, 1, 15), 1, at(2030, 2, 15)),
        (at(2030, 1, 31), 1, at(2030, 2, 28)),  # clamped to the month's length
        (at(2032, 1, 31), 1, at(2032, 2, 29)),  # a leap year
        (at(2030, 3, 31), 1, at(2030, 4, 30)),
        (at(2030, 12, 10, 7), 1, at(2031, 1, 10, 7)),  # over the year, time kept
        (at(2030, 11, 30), 14, at(2032, 1, 30)),
        (at(2030, 5, 31), 0, at(2030, 5, 31)),
        (at(2030, 3, 31), -1, at(2030, 2, 28)),
    ],
)  # fmt: skip
def test_calendar_months_clamp_the_day(moment: datetime, months: int, expected: datetime) -> None:
    """add_months moves by calendar months; a day the target month lacks becomes its
    last day."""
    assert add_months(moment, months) == expected


@pytest.mark.parametrize(
    ("months", "delta", "expected"),
    [
        (0, timedelta(hours=5), at(2030, 1, 31, 5)),
        (1, timedelta(0), at(2030, 2, 28)),
        (1, timedelta(days=1), at(2030, 3, 1)),  # months first, then the rest
        (12, timedelta(minutes=30), datetime(2031, 1, 31, 0, 30, tzinfo=UTC)),
    ],
)
def test_wake_times_add_months_then_the_rest(
    months: int, delta: timedelta, expected: datetime
) -> None:
    """ctx.wait_for's wake time: calendar months from now, then the other amounts."""
    assert wake_time(at(2030, 1, 31), months=months, delta=delta) == expected


@pytest.mark.parametrize(
    "value", [1e20, "99999999999d", timedelta.max, 2**2000, timedelta(days=36_501)]
)
def test_durations_over_a_hundred_years_are_refused(value: object) -> None:
    """Durations past MAX_DURATION raise ValidationError instead of OverflowError."""
    with pytest.raises(flowq.ValidationError, match=r"at most 36,500 days|finite"):
        parse_duration(value, name="delay")  # type: ignore[arg-type]
    assert parse_duration(timedelta(days=36_500), name="delay") == timedelta(days=36_500)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e12, -1, True, "3"])
def test_ages_are_finite_non_negative_numbers(value: object) -> None:
    """parse_age refuses what would overflow now - age, and non-numbers."""
    with pytest.raises(flowq.ValidationError, match="days"):
        parse_age(value, unit="days", unit_seconds=86400)
    assert parse_age(0, unit="days", unit_seconds=86400) == timedelta(0)


def test_instants_outside_the_utc_years_are_refused() -> None:
    """A datetime whose UTC conversion leaves years 1-9999 raises ValidationError."""
    late = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))
    with pytest.raises(flowq.ValidationError, match="run_at"):
        to_utc(late, name="run_at")
