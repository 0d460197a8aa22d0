"""flowq.NonRetryableError: the job fails for good at once, on every store."""

from __future__ import annotations

from typing import Any

import pytest

import flowq
from flowq import FailureReason, JobStatus

pytestmark = pytest.mark.anyio


class CardDeclined(flowq.NonRetryableError):
    """A user's own non-retryable error."""


async def test_a_non_retryable_error_fails_the_job_without_its_remaining_attempts(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """Raised by the handler: failed for good after one attempt of five, no retry time,
    the type and message stored, job:failed says it will not retry."""
    will_retry: list[bool] = []
    app.on("job:failed", lambda event: will_retry.append(bool(event.will_retry)))

    @registry.workflow(name="pay", max_attempts=5, retry=flowq.RetryPolicy(1))
    async def pay(payload: dict[str, Any]) -> None:
        raise CardDeclined("card 4242 declined")

    job_id = await app.start(pay, {})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.next_attempt_at) == (JobStatus.FAILED, 1, None)
    assert job.failure_reason is FailureReason.HANDLER_ERROR
    error = job.error_history[-1]
    assert error.message == "card 4242 declined" and error.type.endswith("CardDeclined")
    assert will_retry == [False]


async def test_a_step_raising_it_is_not_retried_in_place(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A step with retries=3 that raises it runs once, and its job fails for good."""
    tries: list[int] = []

    @flowq.step(name="reserve", retries=3, retry=flowq.RetryPolicy(0.001))
    async def reserve() -> None:
        tries.append(1)
        raise flowq.NonRetryableError("out of stock")

    @registry.workflow(name="order", max_attempts=3)
    async def order(payload: dict[str, Any]) -> None:
        await reserve()

    job_id = await app.start(order, {})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and (job.status, job.next_attempt_at) == (JobStatus.FAILED, None)
    assert tries == [1]
    assert job.error_history[-1].message == "out of stock"
