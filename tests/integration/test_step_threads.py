"""Sync step bodies with ``timeout=`` and ``retries=``: a thread that a timeout abandoned
still runs, so a retry waits for it (unless the step opts in to overlapping)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, NoReturn

import anyio
import anyio.from_thread
import pytest

import flowq
from flowq import JobStatus

pytestmark = pytest.mark.anyio

NO_DELAY = flowq.RetryPolicy("1ms", jitter=False)


class Log:
    """What the step bodies did, in order, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[str] = []

    def add(self, entry: str) -> None:
        """Append one entry."""
        with self.lock:
            self.entries.append(entry)

    def count(self, prefix: str) -> int:
        """How many entries start with ``prefix``."""
        with self.lock:
            return sum(entry.startswith(prefix) for entry in self.entries)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test, so that no step body outlives it."""
    event = threading.Event()
    yield event
    event.set()


def wait_until_cancelled() -> NoReturn:
    """Block the worker thread until its try is cancelled (its timeout fired).

    ``check_cancelled`` is how a sync body notices a timeout; it raises then.
    """
    never = threading.Event()
    while True:
        anyio.from_thread.check_cancelled()
        never.wait(0.005)


async def job_of(app: flowq.App, job_id: int) -> flowq.Job:
    """The job, which must exist."""
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def test_a_retry_waits_for_the_thread_of_the_timed_out_try(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """Try 1 times out and its thread lingers; try 2 starts only after it ended."""
    log = Log()
    retry_started = threading.Event()

    @flowq.step(name="lingers", retries=1, timeout="500ms", retry=NO_DELAY)
    def lingers() -> str:
        number = log.count("start") + 1
        log.add(f"start {number}")
        if number > 1:
            retry_started.set()
            return "second try"
        try:
            wait_until_cancelled()
        finally:
            # Past the timeout: a retry that overlaps this thread starts meanwhile.
            retry_started.wait(0.1)
            log.add("end 1")

    @registry.workflow(name="lingering", max_attempts=1)
    async def lingering(payload: dict[str, Any]) -> str:
        return await lingers()

    job_id = await app.start(lingering, {})
    with anyio.fail_after(10):
        await app.create_worker().run_until_idle()
    job = await job_of(app, job_id)
    assert job.status is JobStatus.COMPLETED and job.output == "second try"
    assert log.entries == ["start 1", "end 1", "start 2"]


async def test_a_thread_that_never_ends_fails_the_step_without_a_second_body(
    app: flowq.App, registry: flowq.Registry, release: threading.Event
) -> None:
    """A stuck thread: each retry times out waiting for it; the body ran once; the step
    fails with TimeoutError saying why, after its tries (it does not hang)."""
    log = Log()

    @flowq.step(name="stuck", retries=2, timeout="100ms", retry=NO_DELAY)
    def stuck() -> None:
        log.add("start")
        release.wait(30)

    @registry.workflow(name="stuck_flow", max_attempts=1)
    async def stuck_flow(payload: dict[str, Any]) -> None:
        await stuck()

    job_id = await app.start(stuck_flow, {})
    with anyio.fail_after(10):
        await app.create_worker().run_until_idle()
    job = await job_of(app, job_id)
    assert job.status is JobStatus.FAILED and log.entries == ["start"]
    error = job.error_history[0]
    assert error.type == "TimeoutError"
    assert "try 3 of step 'stuck' did not start" in error.message
    assert "the thread of try 1, which timed out, was still running" in error.message
    [recorded] = await app.get_job_steps(job_id)
    assert recorded.error is not None and recorded.error["type"] == "TimeoutError"


async def test_stopping_a_worker_does_not_wait_for_a_stuck_thread(
    app: flowq.App, registry: flowq.Registry, release: threading.Event
) -> None:
    """A retry waiting for a stuck thread is cancelled at shutdown: the worker stops
    and hands the job back; no second body started."""
    log = Log()
    timed_out = threading.Event()

    @flowq.step(name="hangs", retries=50, timeout="300ms", retry=NO_DELAY)
    def hangs() -> None:
        log.add("start")
        try:
            wait_until_cancelled()
        finally:
            timed_out.set()
            release.wait(30)  # ignores the timeout from now on

    @registry.workflow(name="hanging")
    async def hanging(payload: dict[str, Any]) -> None:
        await hangs()

    job_id = await app.start(hanging, {})
    worker = app.create_worker()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await anyio.to_thread.run_sync(timed_out.wait, 5)
            assert timed_out.is_set()
            # The step now waits for the stuck thread (50 tries of 300 ms at most).
            await worker.stop(drain_timeout="10ms")
    job = await job_of(app, job_id)
    assert job.status is JobStatus.PENDING and job.attempts == 0
    assert log.entries == ["start"]


async def test_overlap_retries_lets_a_retry_start_while_the_thread_runs(
    app: flowq.App, registry: flowq.Registry, release: threading.Event
) -> None:
    """With overlap_retries=True, try 2 runs while try 1's thread still runs."""
    log = Log()

    # The timeout bounds each try, so it must leave try 2 time to start a thread
    # on a loaded machine (100 ms did not once in CI).
    @flowq.step(name="overlaps", retries=1, timeout="1s", retry=NO_DELAY, overlap_retries=True)
    def overlaps() -> str:
        number = log.count("start") + 1
        log.add(f"start {number}")
        if number == 1:
            release.wait(30)  # until the test ends
            log.add("end 1")
            return "first try"
        return "second try"

    @registry.workflow(name="overlapping", max_attempts=1)
    async def overlapping(payload: dict[str, Any]) -> str:
        return await overlaps()

    job_id = await app.start(overlapping, {})
    with anyio.fail_after(10):
        await app.create_worker().run_until_idle()
    assert await app.result(job_id, timeout=10) == "second try"
    assert log.entries == ["start 1", "start 2"]  # try 1's thread still runs
