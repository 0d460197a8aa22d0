"""Planning batches before anything is written (pure, no I/O).

An ``add_jobs`` batch: the ids, idempotency keys and dependency edges of its jobs
(:func:`count_new_jobs`, :func:`plan_batch`). A group-limited claim: which
candidates fit in their concurrency groups (:func:`full_groups`, :func:`fit_groups`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from flowq.errors import DependencyError
from flowq.models import BatchDepRef, JobStatus
from flowq.store.base import GroupLimits, NewJob

__all__ = ["BatchPlan", "Candidate", "count_new_jobs", "fit_groups", "full_groups", "plan_batch"]


@dataclass(slots=True)
class BatchPlan:
    """What to write for a batch.

    Attributes:
        ids: The id of every input job, in input order (existing ids for duplicates).
        rows: ``(id, job)`` of the jobs to insert.
        edges: ``(job_id, prerequisite_id)`` dependency rows to insert.
        added_metadata: Extra metadata of the ``added`` event, by job id.
        blocked: How many prerequisites that have not completed each job to insert
            waits for (jobs without any are left out); see ``transitions.block``.
    """

    ids: list[int] = field(default_factory=list)
    rows: list[tuple[int, NewJob]] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    added_metadata: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: dict[int, int] = field(default_factory=dict)


def count_new_jobs(jobs: Sequence[NewJob], existing_keys: Mapping[str | None, int]) -> int:
    """How many of ``jobs`` will be inserted (not duplicates of stored or earlier keys)."""
    keys = {job.idempotency_key for job in jobs if job.idempotency_key is not None}
    return sum(1 for job in jobs if job.idempotency_key is None) + len(keys - set(existing_keys))


def plan_batch(
    jobs: Sequence[NewJob],
    existing_keys: Mapping[str | None, int],
    prerequisites: Mapping[int, tuple[str, bool]],
    tag_matches: Mapping[tuple[str, ...], Sequence[int]],
    fresh_ids: Iterable[int],
) -> BatchPlan:
    """Decide ids and edges for ``jobs`` before anything is written.

    Args:
        jobs: The batch, in input order.
        existing_keys: Idempotency keys already stored, with their job ids.
        prerequisites: ``id -> (status, will_run)`` of every explicitly named
            prerequisite that exists (``will_run`` is False for a failed job that
            will not retry), and of the existing jobs of ``existing_keys`` (a batch
            reference to a duplicate names one of them).
        tag_matches: For each ``depends_on_tags`` tuple, the unfinished jobs carrying
            all those tags.
        fresh_ids: Ascending unused ids, at least one per job to insert.

    Raises:
        DependencyError: An unknown, cancelled or permanently failed prerequisite, a
            job depending on itself, a batch reference out of range, or a cycle.
    """
    plan = BatchPlan()
    by_key = dict(existing_keys)
    new_ids = iter(fresh_ids)
    inserted: set[int] = set()
    for job in jobs:
        key = job.idempotency_key
        if key is not None and key in by_key:
            plan.ids.append(by_key[key])
            continue
        job_id = next(new_ids)
        plan.ids.append(job_id)
        plan.rows.append((job_id, job))
        inserted.add(job_id)
        if key is not None:
            by_key[key] = job_id
    graph: dict[int, list[int]] = {}
    planned: set[int] = set()
    for index, job in enumerate(jobs):
        job_id = plan.ids[index]
        if job_id not in inserted or job_id in planned:
            continue
        planned.add(job_id)
        targets = [_target(ref, index, plan.ids, prerequisites) for ref in job.depends_on]
        by_tags = set(tag_matches.get(job.depends_on_tags, ()) if job.depends_on_tags else ())
        targets += sorted(by_tags)
        unfinished = 0
        for target in dict.fromkeys(targets):
            if target == job_id:
                raise DependencyError(f"job #{index} of the batch cannot depend on itself")
            plan.edges.append((job_id, target))
            graph.setdefault(job_id, []).append(target)
            found = prerequisites.get(target)
            # Jobs of this batch and tag matches (unfinished jobs) have not completed.
            if (
                target in inserted
                or target in by_tags
                or (found is not None and found[0] != JobStatus.COMPLETED)
            ):
                unfinished += 1
        if unfinished:
            plan.blocked[job_id] = unfinished
        if job.depends_on_tags:
            plan.added_metadata[job_id] = {"depends_on_tags": list(job.depends_on_tags)}
    _reject_cycles(graph, plan.ids)
    return plan


def _target(
    ref: int | BatchDepRef,
    index: int,
    ids: list[int],
    prerequisites: Mapping[int, tuple[str, bool]],
) -> int:
    if isinstance(ref, BatchDepRef):
        if ref.index >= len(ids):
            raise DependencyError(
                f"job #{index} of the batch refers to batch_dep_ref({ref.index}), but the batch "
                f"has {len(ids)} jobs"
            )
        if ref.index == index:
            raise DependencyError(f"job #{index} of the batch cannot depend on itself")
        return ids[ref.index]
    found = prerequisites.get(ref)
    if found is None:
        raise DependencyError(f"depends_on names job {ref}, which does not exist")
    status, will_run = found
    if status == JobStatus.CANCELLED or (status == JobStatus.FAILED and not will_run):
        raise DependencyError(
            f"depends_on names job {ref}, which is {status} for good; it can never complete"
        )
    return ref


def _reject_cycles(graph: dict[int, list[int]], ids: list[int]) -> None:
    position = {job_id: index for index, job_id in reversed(list(enumerate(ids)))}
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    for start in graph:
        stack = [(start, iter(graph.get(start, ())))]
        state[start] = state.get(start, 0) or 1
        if state[start] == 2:
            continue
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                path = [n for n, _ in stack]
                cycle = [*path[path.index(child) :], child]
                names = " -> ".join(f"#{position[n]}" for n in cycle)
                raise DependencyError(f"depends_on forms a cycle in the batch: {names}")
            elif state.get(child) is None and child in graph:
                state[child] = 1
                stack.append((child, iter(graph[child])))


class Candidate(Protocol):
    """A runnable job as a group-limited claim sees it (a row with a group name)."""

    @property
    def group_name(self) -> str | None:
        """The job's concurrency group."""


CandidateT = TypeVar("CandidateT", bound=Candidate)


def full_groups(taken: Mapping[str, int], groups: GroupLimits) -> list[str]:
    """The groups (sorted) whose running jobs in ``taken`` reached their limit."""
    return sorted(
        group
        for group, count in taken.items()
        if (limit := groups.limit(group)) is not None and count >= limit
    )


def fit_groups(
    candidates: Sequence[CandidateT], taken: dict[str, int], groups: GroupLimits
) -> list[CandidateT]:
    """Keep candidates (in order) while their group has room; count them in ``taken``.

    ``taken`` holds the running jobs per group and grows with every candidate kept.
    Groups without a limit always have room.
    """
    kept = []
    for candidate in candidates:
        group = candidate.group_name
        limit = None if group is None else groups.limit(group)
        if group is not None and limit is not None:
            if taken.get(group, 0) >= limit:
                continue
            taken[group] = taken.get(group, 0) + 1
        kept.append(candidate)
    return kept
