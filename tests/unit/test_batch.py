"""Batch planning (flowq.store.batch): add_jobs batches and group-limited claims."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pytest

import flowq
from flowq.models import BatchDepRef
from flowq.store import batch
from flowq.store.base import GroupLimits, NewJob


def job(
    key: str | None = None,
    depends_on: tuple[int | BatchDepRef, ...] = (),
    tags: tuple[str, ...] = (),
) -> NewJob:
    """A job of a batch with an idempotency key and dependencies."""
    return NewJob(
        workflow="w",
        payload="{}",
        priority=0,
        max_attempts=3,
        run_at=None,
        retry=flowq.RetryPolicy(),
        timeout=None,
        force_kill_on_timeout=False,
        tags=(),
        idempotency_key=key,
        group=None,
        depends_on=depends_on,
        depends_on_tags=tags,
        dead_letter=None,
    )


REF = flowq.batch_dep_ref


@pytest.mark.parametrize(
    ("jobs", "existing", "count"),
    [
        ([job(), job()], {}, 2),
        ([job("a"), job("a"), job("b")], {}, 2),
        ([job("a"), job("b")], {"a": 1}, 1),
        ([], {}, 0),
    ],
)
def test_count_new_jobs(jobs: list[NewJob], existing: dict[str | None, int], count: int) -> None:
    """Only jobs without a stored or earlier idempotency key are inserted."""
    assert batch.count_new_jobs(jobs, existing) == count


@pytest.mark.parametrize(
    ("jobs", "existing", "prerequisites", "tag_matches", "ids", "edges"),
    [
        pytest.param([job(), job()], {}, {}, {}, [10, 11], [], id="plain"),
        pytest.param(
            [job("a"), job("a"), job("b")], {"b": 3}, {}, {}, [10, 10, 3], [], id="idempotency"
        ),
        pytest.param(
            [job(), job(depends_on=(REF(0), 5))],
            {},
            {5: ("completed", False)},
            {},
            [10, 11],
            [(11, 10), (11, 5)],
            id="batch-ref-and-id",
        ),
        pytest.param(
            [job(depends_on=(5,), tags=("nightly",))],
            {},
            {5: ("failed", True)},
            {("nightly",): [5, 6]},
            [10],
            [(10, 5), (10, 6)],
            id="tags-and-a-job-due-to-retry-deduplicated",
        ),
        pytest.param(
            [job("a", depends_on=(REF(1),)), job(), job("a", depends_on=(REF(1),))],
            {},
            {},
            {},
            [10, 11, 10],
            [(10, 11)],
            id="a-duplicate-plans-its-edges-once",
        ),
    ],
)  # fmt: skip
def test_plan_batch(
    jobs: list[NewJob],
    existing: dict[str | None, int],
    prerequisites: dict[int, tuple[str, bool]],
    tag_matches: dict[tuple[str, ...], list[int]],
    ids: list[int],
    edges: list[tuple[int, int]],
) -> None:
    """Ids in input order (existing ones for duplicates), rows to insert, edges."""
    plan = batch.plan_batch(jobs, existing, prerequisites, tag_matches, range(10, 20))
    assert plan.ids == ids
    assert [job_id for job_id, _ in plan.rows] == sorted(set(ids) - set(existing.values()))
    assert plan.edges == edges


def test_plan_batch_notes_tag_dependencies_in_the_added_event() -> None:
    """A job that depends on tags says so in the metadata of its added event."""
    plan = batch.plan_batch([job(tags=("a", "b"))], {}, {}, {("a", "b"): []}, [10])
    assert plan.added_metadata == {10: {"depends_on_tags": ["a", "b"]}}


@pytest.mark.parametrize(
    ("jobs", "prerequisites", "message"),
    [
        ([job(depends_on=(5,))], {}, "job 5, which does not exist"),
        ([job(depends_on=(5,))], {5: ("cancelled", False)}, "cancelled for good"),
        ([job(depends_on=(5,))], {5: ("failed", False)}, "failed for good"),
        ([job(depends_on=(REF(0),))], {}, "cannot depend on itself"),
        ([job(depends_on=(REF(3),))], {}, "has 1 jobs"),
        (
            [job(depends_on=(REF(1),)), job(depends_on=(REF(2),)), job(depends_on=(REF(0),))],
            {},
            "cycle in the batch: #0 -> #1 -> #2 -> #0",
        ),
    ],
)
def test_plan_batch_rejects_bad_dependencies(
    jobs: list[NewJob], prerequisites: dict[int, tuple[str, bool]], message: str
) -> None:
    """Unknown, dead, self and cyclic dependencies raise DependencyError."""
    with pytest.raises(flowq.DependencyError, match=message):
        batch.plan_batch(jobs, {}, prerequisites, {}, range(10, 20))


class Candidate(NamedTuple):
    """A runnable job with a group."""

    id: int
    group_name: str | None


@pytest.mark.parametrize(
    ("running", "limits", "candidates", "kept", "full"),
    [
        ({}, GroupLimits(), ["a", "a", None], [0, 1, 2], []),
        ({}, GroupLimits(default=1), ["a", "a", "b", None], [0, 2, 3], []),
        ({"a": 1}, GroupLimits(default=1), ["a", "b"], [1], ["a"]),
        ({"a": 1}, GroupLimits(per_group={"a": 2}), ["a", "a", "c", "c"], [0, 2, 3], []),
        ({"a": 2, "b": 5}, GroupLimits(per_group={"a": 2}), ["b"], [0], ["a"]),
    ],
)
def test_group_limited_claims(
    running: Mapping[str, int],
    limits: GroupLimits,
    candidates: Sequence[str | None],
    kept: list[int],
    full: list[str],
) -> None:
    """Candidates are kept in order while their group has room; full groups are named."""
    taken: dict[str, Any] = dict(running)
    assert batch.full_groups(taken, limits) == full
    rows = [Candidate(i, group) for i, group in enumerate(candidates)]
    assert [row.id for row in batch.fit_groups(rows, taken, limits)] == kept
