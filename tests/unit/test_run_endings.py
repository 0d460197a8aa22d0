"""How the engine reads a handler's end through exception groups (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flowq.durable import LeaseLost, Suspend, effective
from flowq.errors import NonDeterminismError

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def group(*leaves: BaseException) -> BaseExceptionGroup[BaseException]:
    """What an anyio task group raises."""
    return BaseExceptionGroup("unhandled errors in a TaskGroup", list(leaves))


def test_bare_exceptions_are_their_own_end() -> None:
    """Without a group nothing changes (gather raises bare exceptions)."""
    error = ValueError("x")
    assert effective(error) is error


def test_waits_in_a_group_park_until_the_earliest() -> None:
    """Several waits, however deeply nested: one Suspend at the earliest time, on the
    first token they wait for."""
    nested = group(
        Suspend(T0 + timedelta(hours=2), None),
        group(Suspend(T0 + timedelta(hours=1), "tok-a"), Suspend(None, "child:7")),
    )
    ended = effective(nested)
    assert isinstance(ended, Suspend)
    assert (ended.wait_until, ended.wait_id) == (T0 + timedelta(hours=1), "tok-a")


@pytest.mark.parametrize(
    ("leaves", "expected"),
    [
        ((Suspend(T0, None), LeaseLost(), ValueError("x")), LeaseLost),
        ((ValueError("x"), NonDeterminismError(1, 0, "a", "b")), NonDeterminismError),
        ((Suspend(T0, None), KeyError("k")), KeyError),
    ],
    ids=["lost lease wins", "nondeterminism beats errors", "an error beats a wait"],
)
def test_what_wins_in_a_group(
    leaves: tuple[BaseException, ...], expected: type[BaseException]
) -> None:
    """A lost lease, then non-determinism, then a handler error, then waits."""
    assert isinstance(effective(group(*leaves)), expected)


def test_several_errors_stay_a_group_without_the_waits() -> None:
    """Two handler errors fail the attempt as one ExceptionGroup of just those errors."""
    first, second = ValueError("a"), KeyError("b")
    ended = effective(group(first, Suspend(T0, None), group(second)))
    assert isinstance(ended, ExceptionGroup)
    assert [type(e) for e in ended.exceptions] == [ValueError, ExceptionGroup]


def test_a_group_with_anything_else_is_left_alone() -> None:
    """A cancellation or KeyboardInterrupt in the group: re-raised as it is."""
    raised = group(KeyboardInterrupt(), Suspend(T0, None))
    assert effective(raised) is raised
