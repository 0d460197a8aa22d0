"""Live updates through a real server: the event stream says ``change`` when a job
moves (NOTIFY on PostgreSQL, polling on SQLite)."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

import flowq
from tests.dashboard.server import running_server
from tests.dashboard.workloads import register

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_url(request: pytest.FixtureRequest) -> str:
    """A database another process serves: a SQLite file or a fresh PostgreSQL database."""
    return str(request.getfixturevalue(f"{request.param}_url"))


async def _next_event(lines: object, deadline: float) -> str:
    async for line in lines:  # type: ignore[attr-defined]
        if line.startswith("event: "):
            return str(line[7:])
        if time.monotonic() > deadline:
            break
    raise AssertionError("no event before the deadline")


async def test_a_job_page_stream_reports_the_job_finishing(server_url: str) -> None:
    """Completing the token a job waits on makes the job's stream say ``change``."""
    registry = flowq.Registry()
    workloads = register(registry)
    async with flowq.App(server_url, registry=registry, auto_migrate=True) as app:
        job_id = await app.start(workloads.approval, {})
        with running_server(server_url) as base:
            with anyio.fail_after(30):
                while (job := await app.get_job(job_id)) is None or job.status.value != "waiting":  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            [token] = await app.get_tokens(job_id=job_id, status="waiting")
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                query = {"view": "job", "id": str(job_id)}
                async with client.stream("GET", "/live", params=query) as stream:
                    assert stream.headers["content-type"].startswith("text/event-stream")
                    await app.complete_token(token.id, "yes")
                    event = await _next_event(stream.aiter_lines(), time.monotonic() + 20)
                    assert event == "change"
            assert await app.result(job_id, timeout=20) == {"approved": "yes"}
