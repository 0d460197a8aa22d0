"""Enqueue from a service that does not import the workflows: by name, by
``flowq.workflow_ref``, in batches and from cron; the worker that knows the workflow
applies what it declares (options given at enqueue win). On every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import msgspec
import pytest

import flowq
from flowq import EventType, FailureReason, JobStatus
from flowq_testing import FakeClock

pytestmark = pytest.mark.anyio


class Signup(msgspec.Struct):
    """The payload the workers' code declares."""

    email: str


@pytest.fixture
async def producer(
    app: flowq.App, database_url: str | None, clock: FakeClock
) -> AsyncIterator[flowq.App]:
    """An App of another service: same database, an empty registry."""
    if database_url is None:  # the memory store lives in this process: share it
        yield flowq.App(store=app.store, registry=flowq.Registry(), clock=clock)
        return
    async with flowq.App(database_url, registry=flowq.Registry(), clock=clock) as other:
        yield other


def declare_onboard(registry: flowq.Registry, fails: int) -> list[int]:
    """The workers' ``signup.onboard``: 5 attempts, a fixed 2 s retry, a 30 s timeout
    and a dead letter; it fails its first ``fails`` attempts. Returns the attempts seen."""
    attempts: list[int] = []

    @registry.workflow(name="signup.dead")
    async def dead(payload: dict[str, Any]) -> None:
        """The dead letter."""

    @registry.workflow(
        name="signup.onboard",
        max_attempts=5,
        retry=flowq.RetryPolicy(2, backoff=False),
        timeout="30s",
        dead_letter="signup.dead",
    )
    async def onboard(payload: Signup, ctx: flowq.Context) -> str:
        attempts.append(ctx.job.attempt)
        if len(attempts) <= fails:
            raise RuntimeError(f"attempt {len(attempts)} fails")
        return payload.email

    return attempts


async def test_a_job_added_where_its_workflow_is_unknown_runs_with_what_it_declares(
    app: flowq.App, producer: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """The producer stores flowq's defaults and leaves the declared options open; the
    worker's first run writes the declaration (an ``edited`` event says so) and uses
    it: the retry comes 2 s later (not flowq's default backoff), within 5 attempts."""
    attempts = declare_onboard(registry, fails=1)
    job_id = await producer.add_job("signup.onboard", {"email": "ada@example.com"})
    added = await app.get_job(job_id)
    assert added is not None and added.max_attempts == 3 and added.timeout is None
    assert "retry" in added.unresolved_options

    await app.create_worker().run_until_idle()
    failed = await app.get_job(job_id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert (failed.max_attempts, failed.timeout, failed.dead_letter) == (
        5,
        timedelta(seconds=30),
        "signup.dead",
    )
    assert failed.retry == flowq.RetryPolicy(2, backoff=False)
    assert failed.unresolved_options == ()
    assert failed.last_failed_at is not None
    assert failed.next_attempt_at == failed.last_failed_at + timedelta(seconds=2)
    resolved = [e for e in await app.get_job_events(job_id) if e.event_type is EventType.EDITED]
    assert len(resolved) == 1 and resolved[0].metadata["resolved_by"]

    clock.advance(timedelta(seconds=2))
    await app.create_worker().run_until_idle()
    assert await app.result(job_id) == "ada@example.com"
    assert attempts == [1, 2]
    events = await app.get_job_events(job_id)
    assert [e.event_type for e in events].count(EventType.EDITED) == 1  # resolved once


async def test_options_given_at_enqueue_win_over_the_declaration(
    app: flowq.App, producer: flowq.App, registry: flowq.Registry
) -> None:
    """max_attempts=1 from the producer: the job fails for good after one attempt, and
    the declared dead letter (an option it did not give) receives it."""
    declare_onboard(registry, fails=10)
    job_id = await producer.add_job("signup.onboard", {"email": "a@b.c"}, max_attempts=1)
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert (job.attempts, job.max_attempts, job.next_attempt_at) == (1, 1, None)
    assert job.dead_letter_job_id is not None
    letter = await app.get_job(job.dead_letter_job_id)
    assert letter is not None and letter.workflow == "signup.dead"


async def test_the_declared_timeout_is_enforced(
    app: flowq.App, producer: flowq.App, registry: flowq.Registry
) -> None:
    """A workflow declaring timeout=0.2 s and one attempt: a job added by name that
    hangs fails with a timeout instead of running forever."""

    @registry.workflow(name="hangs", timeout=0.2, max_attempts=1)
    async def hangs(payload: None) -> None:
        await anyio.sleep(60)

    job_id = await producer.add_job("hangs")
    with anyio.fail_after(30):
        await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.failure_reason is FailureReason.TIMEOUT and job.next_attempt_at is None


async def test_a_payload_is_only_encoded_where_the_workflow_is_unknown(
    app: flowq.App, producer: flowq.App, registry: flowq.Registry
) -> None:
    """The producer cannot check the payload: the worker refuses it for good (no retry);
    where the workflow is registered, the same payload is refused at enqueue."""
    declare_onboard(registry, fails=0)
    job_id = await producer.add_job("signup.onboard", {"email": 42})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and (job.status, job.next_attempt_at) == (JobStatus.FAILED, None)
    assert job.error_history[-1].type == "PayloadError"
    with pytest.raises(flowq.PayloadError, match=r"signup\.onboard"):
        await app.add_job("signup.onboard", {"email": 42})


async def test_a_workflow_ref_checks_payloads_without_the_implementation(
    app: flowq.App, producer: flowq.App, registry: flowq.Registry
) -> None:
    """start(workflow_ref(name, Signup), ...) checks the payload against the declared
    type (nothing written on a bad one) and the job runs like one added by name."""
    declare_onboard(registry, fails=0)
    onboard = flowq.workflow_ref("signup.onboard", Signup, str)
    with pytest.raises(flowq.PayloadError):
        await producer.start(onboard, {"email": 42})  # type: ignore[arg-type]
    assert await app.get_jobs() == []
    job_id = await producer.start(onboard, Signup(email="grace@example.com"), priority=3)
    await app.create_worker().run_until_idle()
    assert await app.result(job_id) == "grace@example.com"
    job = await app.get_job(job_id)
    assert job is not None and job.priority == 3 and job.max_attempts == 5


async def test_add_jobs_mixes_known_and_unknown_workflows(
    app: flowq.App, producer: flowq.App, registry: flowq.Registry
) -> None:
    """A batch of names (one unknown to the producer, one it knows) and a dependency
    inside the batch: all run; only the unknown one's options were left open."""
    declare_onboard(registry, fails=0)

    @producer.registry.workflow(name="audit")
    async def audit_stub(payload: dict[str, Any]) -> None:
        """The producer's own workflow (the worker has its own under that name)."""

    @registry.workflow(name="audit")
    async def audit(payload: dict[str, Any]) -> str:
        return "audited"

    onboard_id, audit_id = await producer.add_jobs(
        [
            {"workflow": "signup.onboard", "payload": {"email": "x@y.z"}},
            flowq.JobSpec("audit", {}, depends_on=[flowq.batch_dep_ref(0)]),
        ]
    )
    assert (await app.get_job(onboard_id)).unresolved_options  # type: ignore[union-attr]
    assert (await app.get_job(audit_id)).unresolved_options == ()  # type: ignore[union-attr]
    await app.create_worker().run_until_idle()
    assert await app.result(onboard_id) == "x@y.z"
    assert await app.result(audit_id) == "audited"


async def test_a_cron_job_of_an_unknown_workflow_takes_the_declaration_per_tick(
    app: flowq.App, producer: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """add_cron_job by name where the workflow is unknown: stored; each tick's job
    leaves the declared options to the worker, which applies them."""
    declare_onboard(registry, fails=0)
    schedule_id = await producer.add_cron_job(
        "nightly-onboard", "@hourly", "signup.onboard", {"email": "cron@example.com"}, priority=2
    )
    schedule = await producer.get_cron_job(schedule_id)
    assert schedule is not None and "max_attempts" not in schedule.job_options
    assert schedule.job_options["priority"] == 2
    clock.advance(timedelta(hours=1))
    assert await producer.enqueue_due_cron_jobs() == 1
    [job] = await app.get_jobs(workflow="signup.onboard")
    assert job.priority == 2 and "max_attempts" in job.unresolved_options
    await app.create_worker().run_until_idle()
    done = await app.get_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert (done.max_attempts, done.timeout) == (5, timedelta(seconds=30))


async def test_an_unknown_name_that_is_not_a_name_is_refused(producer: flowq.App) -> None:
    """add_job(5) and add_job("") say what is wrong; nothing is written."""
    for bad in (5, "", "x" * 300):
        with pytest.raises(flowq.ValidationError, match="workflow name"):
            await producer.add_job(bad)  # type: ignore[arg-type]
    with pytest.raises(flowq.ScheduleError, match="workflow name"):
        await producer.add_cron_job("s", "@daily", "")
    assert await producer.get_jobs() == []
