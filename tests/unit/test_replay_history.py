"""The replay decisions of flowq.replay.History, from table-driven histories (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flowq.errors import NonDeterminismError
from flowq.replay import (
    History,
    RecordedCall,
    Reservation,
    child_wait_id,
    recorded_call_of,
    waited_child,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
JOB = 41


def recorded(
    seq: int, name: str, output: str | None = "1", error: str | None = None
) -> RecordedCall:
    """A call as a store hands it back."""
    return RecordedCall(
        seq=seq, name=name, attempt=1, output=output, error=None, started_at=T0, completed_at=T0
    )


def history(*names: str | None) -> History:
    """A history with ``names[i]`` recorded at position i (None: nothing there)."""
    return History(JOB, [recorded(i, n) for i, n in enumerate(names) if n is not None])


# -- reservations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "recorded_names",
    [(), ("a",), ("a", "b", "c"), (None, None, "late")],
)
def test_positions_are_taken_in_call_order_whatever_is_recorded(
    recorded_names: tuple[str | None, ...],
) -> None:
    """reserve() hands out 0, 1, 2... whatever the history holds, and position follows."""
    found = history(*recorded_names)
    assert found.position == 0
    taken = [found.reserve(name) for name in ("x", "y", "x")]
    assert taken == [Reservation(0, "x"), Reservation(1, "y"), Reservation(2, "x")]
    assert found.position == 3


# -- what a reserved call gets back ---------------------------------------------------


@pytest.mark.parametrize(
    ("recorded_names", "called", "expected"),
    [
        ((), ["a"], [None]),
        (("a",), ["a", "b"], ["a", None]),
        (("a", "b"), ["a", "b"], ["a", "b"]),
        ((None, "b"), ["a", "b"], [None, "b"]),
        (("@timer", "@token"), ["@timer", "@token", "@wait_token"], ["@timer", "@token", None]),
    ],
)  # fmt: skip
def test_a_call_gets_the_record_at_its_position(
    recorded_names: tuple[str | None, ...], called: list[str], expected: list[str | None]
) -> None:
    """recorded_at: the record at the reserved position (same name), or None."""
    found = history(*recorded_names)
    got = [found.recorded_at(found.reserve(name)) for name in called]
    assert [None if call is None else call.name for call in got] == expected
    assert [call.seq for call in got if call is not None] == [
        i for i, name in enumerate(expected) if name is not None
    ]


@pytest.mark.parametrize(
    ("recorded_names", "called", "position", "recorded_name", "called_name"),
    [
        (("fetch",), ["send"], 0, "fetch", "send"),
        (("fetch", "send"), ["fetch", "charge"], 1, "send", "charge"),
        (("fetch", "@timer"), ["fetch", "@token"], 1, "@timer", "@token"),
        (("@child:a",), ["@child:b"], 0, "@child:a", "@child:b"),
        (("@patch:x",), ["fetch"], 0, "@patch:x", "fetch"),
    ],
)  # fmt: skip
def test_another_name_at_a_position_is_a_nondeterminism_error(
    recorded_names: tuple[str, ...],
    called: list[str],
    position: int,
    recorded_name: str,
    called_name: str,
) -> None:
    """The error names the job, the position, what was recorded and what was called."""
    found = history(*recorded_names)
    reservations = [found.reserve(name) for name in called]
    for reservation in reservations[:-1]:
        found.recorded_at(reservation)
    with pytest.raises(NonDeterminismError) as raised:
        found.recorded_at(reservations[-1])
    error = raised.value
    assert (error.job_id, error.position, error.recorded, error.called) == (
        JOB,
        position,
        recorded_name,
        called_name,
    )
    message = str(error)
    assert f"job {JOB}" in message and f"position {position}" in message
    assert repr(recorded_name) in message and repr(called_name) in message


def test_a_call_recorded_during_the_run_is_found_and_checked() -> None:
    """record() adds to the history: a later lookup finds it, or rejects another name."""
    found = history()
    reservation = found.reserve("a")
    assert found.recorded_at(reservation) is None
    found.record(recorded(0, "a", output="7"))
    call = found.recorded_at(reservation)
    assert call is not None and call.output == "7"
    with pytest.raises(NonDeterminismError):
        found.recorded_at(Reservation(0, "b"))


# -- ctx.patched ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded_names", "before", "decision"),
    [
        # A new execution: nothing recorded from here on, the new code path applies.
        ((), [], 0),
        (("a",), ["a"], 1),
        # The marker is recorded here: the job ran the new code before.
        (("@patch:x",), [], 0),
        (("a", "@patch:x", "b"), ["a"], 1),
        # The old code made this history: another call here, or a later one recorded.
        (("a",), [], None),
        (("a", "b"), ["a"], None),
        ((None, "b"), [], None),
        (("@patch:y",), [], None),
    ],
)  # fmt: skip
def test_patched_decisions(
    recorded_names: tuple[str | None, ...], before: list[str], decision: int | None
) -> None:
    """patched() reserves the marker's position when the new path applies (the marker
    is recorded there, or nothing is recorded from there on), and takes no position
    when the history was made by the old code."""
    found = history(*recorded_names)
    for name in before:
        found.recorded_at(found.reserve(name))
    got = found.patched("@patch:x")
    if decision is None:
        assert got is None
        assert found.position == len(before)
    else:
        assert got == Reservation(decision, "@patch:x")
        assert found.position == decision + 1


def test_patched_sees_calls_recorded_during_the_run() -> None:
    """A call recorded later in this run counts as history made from here on."""
    found = history()
    found.record(recorded(1, "later"))
    assert found.patched("@patch:x") is None


# -- the wait id of a parent waiting for its child ------------------------------------


@pytest.mark.parametrize("child_id", [1, 42, 9_000_000_000])
def test_child_wait_ids_round_trip(child_id: int) -> None:
    """child_wait_id spells 'child:<id>' (the stores' triggers match it); waited_child
    reads it back."""
    wait_id = child_wait_id(child_id)
    assert wait_id == f"child:{child_id}"
    assert waited_child(wait_id) == child_id


def test_a_token_id_names_no_child() -> None:
    """Token ids (urlsafe base64, no ':') are not child waits."""
    assert waited_child("hT3_kz-0aQ1xYb2cVd4eFg5hIj6kLm7n") is None


# -- loading ------------------------------------------------------------------------


def test_a_call_made_from_a_row_is_the_call_made_by_keywords() -> None:
    """recorded_call_of (the stores' fast way to build a loaded call) gives the same
    frozen RecordedCall as the keyword constructor: equal, same hash, same repr."""
    later = datetime(2030, 1, 1, 0, 0, 1, 5, tzinfo=UTC)
    fast = recorded_call_of(3, "charge", 2, None, '{"message": "x"}', T0, later)
    slow = RecordedCall(
        seq=3, name="charge", attempt=2, output=None, error='{"message": "x"}',
        started_at=T0, completed_at=later,
    )  # fmt: skip
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    with pytest.raises(AttributeError):
        fast.seq = 4  # type: ignore[misc]


def test_a_loaded_history_holds_every_call_and_ends_after_the_last() -> None:
    """extend() (a whole loaded history at once) is record() of each call."""
    found = history("a")
    found.extend([recorded(4, "e"), recorded(2, "c")])
    positions = [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e")]
    held = [found.recorded_at(Reservation(n, name)) is not None for n, name in positions]
    assert held == [True, False, True, False, True]
    assert found.end == 5
    found.extend([])
    assert found.end == 5
