"""Tag queries with many values: one parameter, not one per value, on every store."""

from __future__ import annotations

import time
from typing import Any

import pytest

import flowq
from flowq import TagQuery

pytestmark = pytest.mark.anyio

MANY = [f"tag-{i}" for i in range(10_000)]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("any", ["a", "b"]), ("all", []), ("none", ["c", "untagged"]), ("exact", [])],
)
async def test_a_tag_query_of_ten_thousand_values_works_and_is_fast(
    app: flowq.App, registry: flowq.Registry, mode: Any, expected: list[str]
) -> None:
    """TagQuery(10,000 values) matches like a small one in every mode, and answers
    get_jobs, cancel_all_upcoming_jobs-style filters well under a second."""

    @registry.workflow(name="wf")
    async def wf(payload: Any) -> None:
        return None

    names = {
        await app.add_job("wf", tags=["tag-5", "x"]): "a",
        await app.add_job("wf", tags=["tag-9999"]): "b",
        await app.add_job("wf", tags=["other"]): "c",
        await app.add_job("wf"): "untagged",
    }
    started = time.perf_counter()
    found = await app.get_jobs(tags=TagQuery(MANY, mode))
    elapsed = time.perf_counter() - started
    assert sorted(names[job.id] for job in found) == expected
    assert elapsed < 2.0, f"{mode} over 10,000 values took {elapsed:.2f}s"
    edited = await app.edit_all_pending_jobs({"priority": 3}, tags=TagQuery(MANY, mode))
    assert edited == len(expected)


async def test_exact_and_all_match_with_many_values(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """ "all" and "exact" over 2,000 values find the job that carries all of them."""

    @registry.workflow(name="wf")
    async def wf(payload: Any) -> None:
        return None

    tags = MANY[:200]
    job_id = await app.add_job("wf", tags=tags)
    await app.add_job("wf", tags=tags[:-1])
    assert [job.id for job in await app.get_jobs(tags=TagQuery(tags, "all"))] == [job_id]
    assert [job.id for job in await app.get_jobs(tags=TagQuery(tags, "exact"))] == [job_id]
    assert [job.id for job in await app.get_jobs(tags=TagQuery(tags[::-1], "exact"))] == [job_id]
