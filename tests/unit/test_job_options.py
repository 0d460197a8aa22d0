"""Building the jobs of a batch: shared option checks give the same jobs as one by one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

import flowq
from flowq.options import JobOptions, build_new_job, build_new_jobs

NOW = datetime(2026, 12, 7, tzinfo=UTC)
registry = flowq.Registry()


class Order(msgspec.Struct):
    """A typed payload."""

    order_id: int


@registry.workflow(name="ship", max_attempts=4, tags=["orders"], timeout="5m")
async def ship(payload: Order) -> None:
    """Ships an order."""


def test_a_batch_builds_the_jobs_one_by_one_would() -> None:
    """Items with equal options (shared checks), other options, unhashable options
    (a list of tags) and references: each job equals the one build_new_job makes."""
    ref = flowq.workflow_ref("elsewhere")
    options: list[JobOptions] = [{}, {}, {"priority": 3}, {"tags": ["a"]}, {"tags": ["a"]}, {}]
    definitions: list[Any] = [ship, ship, ship, ship, ship, ref]
    items = [
        (definition, {"order_id": n}, option)
        for n, (definition, option) in enumerate(zip(definitions, options, strict=True))
    ]
    batch = build_new_jobs(items, NOW)
    assert batch == [build_new_job(*item, NOW) for item in items]
    assert [job.payload for job in batch] == [f'{{"order_id":{n}}}' for n in range(6)]
    assert batch[2].priority == 3 and batch[3].tags == ("orders", "a")
    assert batch[5].unresolved_options and not batch[0].unresolved_options


def test_a_bad_payload_in_a_shared_batch_is_still_refused() -> None:
    """The third item shares the first's options but not its payload's fitness."""
    items: list[Any] = [(ship, {"order_id": 1}, {}), (ship, {"order_id": 2}, {})]
    items.append((ship, {"order_id": "three"}, {}))
    with pytest.raises(flowq.PayloadError, match="ship"):
        build_new_jobs(items, NOW)
