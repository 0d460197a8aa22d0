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
                    lines = stream.aiter_lines()
                    async for line in lines:  # a ping: the stream has looked once
                        if line.startswith(": ping"):
                            break
                    await app.complete_token(token.id, "yes")
                    event = await _next_event(lines, time.monotonic() + 20)
                    assert event == "change"
            assert await app.result(job_id, timeout=20) == {"approved": "yes"}


def test_the_dashboard_command_serves_and_stops(sqlite_url: str) -> None:
    """``flowq dashboard`` serves the pages (behind its token when one is set) and
    stops on SIGTERM even with a live stream open."""
    import os
    import signal
    import subprocess
    import sys

    from tests.dashboard.server import free_port

    port = free_port()
    env = {**os.environ, "FLOWQ_DASHBOARD_TOKEN": "cli-secret"}
    migrate = [sys.executable, "-m", "flowq.cli", "migrate", "--database-url", sqlite_url]
    subprocess.run(migrate, check=True, capture_output=True, timeout=60)
    command = [sys.executable, "-m", "flowq.cli", "dashboard", "--database-url", sqlite_url,
               "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                refused = httpx.get(base + "/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        assert refused.status_code == 401
        headers = {"Authorization": "Bearer cli-secret"}
        assert httpx.get(base + "/jobs", headers=headers, timeout=5).status_code == 200
        with httpx.stream("GET", base + "/live?view=jobs", headers=headers, timeout=5) as live:
            assert live.status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) is not None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        logged = process.stderr.read()
        process.stderr.close()
    assert "cli-secret" not in logged
