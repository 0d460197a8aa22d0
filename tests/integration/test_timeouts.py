"""Timeouts a handler steers: ctx.prolong and ctx.on_timeout, on every store.

Timeouts bound real time (the attempt's run), so these tests use short real timeouts
with wide margins: a handler that must time out blocks far longer than its timeout,
one that must not finishes far before its (moved) deadline.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import anyio
import pytest

import flowq
from flowq import FailureReason, JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio


async def run(app: flowq.App, workflow: flowq.Workflow[Any, Any], **options: Any) -> flowq.Job:
    """Start one job, run the worker until idle (bounded), return the job."""
    job_id = await app.start(workflow, {}, **options)
    with anyio.fail_after(20):
        await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def test_a_timeout_cancels_the_attempt_and_retries_by_the_policy(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """Past its timeout the handler is cancelled; the attempt fails with reason
    "timeout" and the job retries."""

    @registry.workflow(name="stuck", timeout="200ms", max_attempts=2)
    async def stuck(payload: dict[str, Any]) -> None:
        await anyio.sleep(30)

    job = await run(app, stuck)
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, FailureReason.TIMEOUT)
    assert job.next_attempt_at is not None
    assert "timeout of 0.2s" in job.error_history[-1].message


async def test_prolong_moves_the_deadline_and_records_it(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """ctx.prolong("5s") after 0.1 s of a 0.3 s timeout lets a 0.6 s run finish; it
    records a prolonged event."""

    @registry.workflow(name="long_import", timeout="300ms", max_attempts=1)
    async def long_import(payload: dict[str, Any], ctx: flowq.Context) -> str:
        await anyio.sleep(0.1)
        await ctx.prolong("5s")
        await anyio.sleep(0.5)
        return "imported"

    job = await run(app, long_import)
    assert (job.status, job.output) == (JobStatus.COMPLETED, "imported")
    events = await app.get_job_events(job.id)
    prolonged = [event for event in events if event.event_type is flowq.EventType.PROLONGED]
    assert [event.metadata for event in prolonged] == [{"seconds": 5.0}]


async def test_prolong_without_a_duration_restarts_the_jobs_own_timeout(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """ctx.prolong() gives the job's own timeout again from now: three 0.25 s chunks,
    each followed by a prolong, finish under a 0.5 s timeout."""

    @registry.workflow(name="chunks", timeout="500ms", max_attempts=1)
    async def chunks(payload: dict[str, Any], ctx: flowq.Context) -> int:
        for _ in range(3):
            await anyio.sleep(0.25)
            await ctx.prolong()
        return 3

    job = await run(app, chunks)
    assert (job.status, job.output) == (JobStatus.COMPLETED, 3)


async def test_prolong_refuses_a_non_positive_duration(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """ctx.prolong(0) raises ValidationError in the handler."""

    @registry.workflow(name="zero", timeout="5s", max_attempts=1)
    async def zero(payload: dict[str, Any], ctx: flowq.Context) -> None:
        await ctx.prolong(0)

    job = await run(app, zero)
    assert job.status is JobStatus.FAILED
    assert job.error_history[-1].type.endswith("ValidationError")


async def test_on_timeout_extends_until_it_returns_none(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A callback returning a duration extends the deadline and is asked again at the
    next one; None lets the timeout fire."""
    asked: list[int] = []

    @registry.workflow(name="asks", timeout="150ms", max_attempts=1)
    async def asks(payload: dict[str, Any], ctx: flowq.Context) -> None:
        def more_time() -> str | None:
            asked.append(len(asked) + 1)
            return "150ms" if len(asked) < 3 else None

        ctx.on_timeout(more_time)
        await anyio.sleep(30)

    job = await run(app, asks)
    assert asked == [1, 2, 3]
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, FailureReason.TIMEOUT)
    assert "(prolonged)" in job.error_history[-1].message


async def test_an_async_on_timeout_lets_the_handler_finish(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """An async callback's extension lets a handler that needs a little more time end."""

    @registry.workflow(name="nearly", timeout="200ms", max_attempts=1)
    async def nearly(payload: dict[str, Any], ctx: flowq.Context) -> str:
        async def a_bit_more() -> timedelta:
            return timedelta(seconds=5)

        ctx.on_timeout(a_bit_more)
        await anyio.sleep(0.5)
        return "done"

    job = await run(app, nearly)
    assert (job.status, job.output) == (JobStatus.COMPLETED, "done")


async def test_a_failing_on_timeout_is_logged_and_the_timeout_fires(
    app: flowq.App, registry: flowq.Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the callback is logged and the timeout fires."""

    @registry.workflow(name="broken_callback", timeout="150ms", max_attempts=1)
    async def broken_callback(payload: dict[str, Any], ctx: flowq.Context) -> None:
        def broken() -> None:
            raise RuntimeError("callback broke")

        ctx.on_timeout(broken)
        await anyio.sleep(30)

    with caplog.at_level(logging.ERROR, logger="flowq.worker"):
        job = await run(app, broken_callback)
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, FailureReason.TIMEOUT)
    assert "on_timeout callback failed" in caplog.text and "callback broke" in caplog.text


async def test_durable_waits_do_not_count_against_the_timeout(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """Each run gets the whole timeout: a 0.4 s step before and one after a one-hour
    durable sleep complete under a 0.7 s timeout (the replay skips the first step)."""

    @flowq.step(name="half")
    async def half(n: int) -> int:
        await anyio.sleep(0.4)
        return n

    @registry.workflow(name="two_halves", timeout="700ms", max_attempts=1)
    async def two_halves(payload: dict[str, Any], ctx: flowq.Context) -> str:
        await half(1)
        await ctx.sleep("1h")
        await half(2)
        return "both halves"

    job_id = await app.start(two_halves, {})
    with anyio.fail_after(20):
        await app.create_worker().run_until_idle()
        clock.advance(timedelta(hours=1))
        await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and (job.status, job.output) == (JobStatus.COMPLETED, "both halves")


async def test_errors_and_waits_pass_through_a_deadline_unwrapped(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A handler with a timeout that raises fails with its own error type and message."""

    @registry.workflow(name="raises", timeout="5s", max_attempts=1)
    async def raises(payload: dict[str, Any]) -> None:
        raise KeyError("missing")

    job = await run(app, raises)
    assert job.failure_reason is FailureReason.HANDLER_ERROR
    assert (job.error_history[-1].type, job.error_history[-1].message) == ("KeyError", "'missing'")
