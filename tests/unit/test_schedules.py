"""@flowq.schedule / registry.schedule: declarations checked when the decorator runs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import flowq


class Report(msgspec.Struct):
    """A typed payload."""

    kind: str


def fresh() -> tuple[flowq.Registry, flowq.Workflow[Any, Any]]:
    """A registry with one workflow taking a Report."""
    registry = flowq.Registry()

    @registry.workflow(name="reports.make")
    async def make(payload: Report) -> None: ...

    return registry, make


def test_schedules_stack_on_a_workflow_and_are_listed_by_name() -> None:
    """Several schedules on one workflow, with their options, the workflow unchanged."""
    registry, make = fresh()
    daily = registry.schedule("0 9 * * *", timezone="America/New_York", payload=Report("daily"))
    weekly = registry.schedule(
        "@weekly", name="weekly-report", payload=Report("weekly"), allow_overlap=True,
        catch_up="all", priority=5, tags=["reports"],
    )  # fmt: skip
    assert weekly(daily(make)) is make
    [first, second] = registry.schedules()
    assert (first.name, first.cron_expression, first.timezone, first.catch_up) == (
        "reports.make@0 9 * * *", "0 9 * * *", "America/New_York", "latest",
    )  # fmt: skip
    assert (second.name, second.allow_overlap, second.options) == (
        "weekly-report", True, {"priority": 5, "tags": ["reports"]},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"cron_expression": "61 * * * *"}, flowq.ScheduleError, "not valid"),
        ({"timezone": "Nowhere/Land"}, flowq.ScheduleError, "unknown time zone"),
        ({"catch_up": "some"}, flowq.ScheduleError, "catch_up must be one of"),
        ({"allow_overlap": "yes"}, flowq.ScheduleError, "allow_overlap"),
        ({"payload": {"kind": 3}}, flowq.PayloadError, "does not fit"),
        ({"idempotency_key": "x"}, flowq.ScheduleError, "idempotency key"),
        ({"prioritee": 1}, flowq.ValidationError, "prioritee"),
    ],
)
def test_bad_declarations_fail_at_decoration_and_register_nothing(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    """The error names the problem; the registry holds no schedule afterwards."""
    registry, make = fresh()
    expression = arguments.pop("cron_expression", "0 9 * * *")
    with pytest.raises(error, match=message):
        registry.schedule(expression, **{"payload": Report("x"), **arguments})(make)
    assert registry.schedules() == []


def test_a_taken_name_and_a_foreign_workflow_are_refused() -> None:
    """Two different schedules under one name, or a workflow of another registry."""
    registry, make = fresh()
    registry.schedule("@daily", name="nightly", payload=Report("a"))(make)
    registry.schedule("@daily", name="nightly", payload=Report("a"))(make)  # the same again
    with pytest.raises(flowq.ScheduleError, match="'nightly' is taken"):
        registry.schedule("@hourly", name="nightly", payload=Report("a"))(make)
    other, _ = fresh()
    with pytest.raises(flowq.ScheduleError, match="not registered on this registry"):
        other.schedule("@daily", payload=Report("a"))(make)
    with pytest.raises(flowq.ScheduleError, match="above @workflow"):
        registry.schedule("@daily")(lambda payload: None)  # type: ignore[arg-type]
