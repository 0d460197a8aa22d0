"""force_kill_on_timeout=True: the handler runs in a process of its own, killed at the
deadline (real processes, every store; those tests are in the slow tier)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

import flowq
from flowq import FailureReason, JobStatus
from flowq_testing import InMemoryStore
from tests.integration import isolated_workloads as work

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app(database_url: str | None) -> Any:
    """An App running the module-level workflows of isolated_workloads."""
    if database_url is None:
        app = flowq.App(store=InMemoryStore(), registry=work.registry)
    else:
        app = flowq.App(database_url, registry=work.registry, auto_migrate=True)
    async with app:
        yield app


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_a_blocked_handler_is_killed_at_its_deadline(app: flowq.App, tmp_path: Path) -> None:
    """A handler stuck in time.sleep fails by timeout, its process is killed, and an
    ordinary job beside it completes."""
    pid_file = tmp_path / "pid"
    blocked = await app.start(work.blocks, {"pid_file": str(pid_file)})
    quick = await app.start(work.quick, {})
    with anyio.fail_after(30):
        await app.create_worker(concurrency=2).run_until_idle()
    job = await app.get_job(blocked)
    assert job is not None
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, FailureReason.TIMEOUT)
    assert await app.result(quick, timeout=5) == "quick"
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    with anyio.fail_after(10):  # the killed process is gone (reaped) soon after
        while True:
            if not alive(pid):
                break
            await anyio.sleep(0.05)


@pytest.mark.slow
async def test_an_isolated_handler_gets_its_payload_and_returns_output(app: flowq.App) -> None:
    """Payload in, output out, through another process; ctx.job works there."""
    job_id = await app.start(work.answers, {"n": 7})
    with anyio.fail_after(30):
        await app.create_worker().run_until_idle()
    output = await app.result(job_id, timeout=5)
    assert output["echo"] == {"n": 7} and output["job"] == job_id
    assert output["pid"] != os.getpid()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workflow", "error_type", "named"),
    [
        (work.uses_a_step, "flowq.errors.ContextError", "step 'isolated.a_step' cannot run"),
        (work.sleeps_durably, "flowq.errors.ContextError", "ctx.sleep is not available"),
        (work.raises, "LookupError", "nothing here"),
    ],
)
async def test_errors_in_the_handlers_process_are_stored_by_type(
    app: flowq.App, workflow: flowq.Workflow[Any, Any], error_type: str, named: str
) -> None:
    """Steps and waits raise ContextError saying why; the handler's own errors keep
    their type."""
    job_id = await app.start(workflow, {})
    with anyio.fail_after(30):
        await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    error = job.error_history[-1]
    assert error.type == error_type and named in error.message
    if "ContextError" in error_type:
        assert "separate process" in error.message


async def test_a_handler_other_processes_cannot_import_is_refused_at_add(
    app: flowq.App,
) -> None:
    """A nested function with force_kill_on_timeout=True is refused when added."""
    registry = flowq.Registry()

    @registry.workflow(name="nested")
    async def nested(payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(flowq.ValidationError, match="defined inside a function"):
        await app.start(nested, {}, force_kill_on_timeout=True)
    assert await app.get_jobs() == []


@pytest.mark.slow
async def test_non_retryable_in_the_handlers_process_fails_for_good(app: flowq.App) -> None:
    """NonRetryableError raised in the handler's own process ends the job at once."""
    job_id = await app.start(work.gives_up, {})
    with anyio.fail_after(30):
        await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.next_attempt_at) == (JobStatus.FAILED, 1, None)
    assert job.error_history[-1].message == "no point in trying again"
