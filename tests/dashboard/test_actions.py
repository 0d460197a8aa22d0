"""The dashboard's actions: POST only, CSRF-checked, refused when read-only."""

from __future__ import annotations

import httpx
import pytest

import flowq
from flowq import JobStatus
from flowq.dashboard import create_app
from tests.dashboard.conftest import client_for, csrf_of
from tests.dashboard.workloads import Workloads

pytestmark = pytest.mark.anyio


async def _status(app: flowq.App, job_id: int) -> JobStatus:
    job = await app.get_job(job_id)
    assert job is not None
    return job.status


async def test_retry_a_failed_job(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """Retry makes a failed job pending and returns to its page with a note."""
    job_id = await app.start(workloads.broken, {})
    await app.create_worker().run_until_idle()
    page = await client.get(f"/jobs/{job_id}")
    assert f'action="/jobs/{job_id}/retry"' in page.text
    token = await csrf_of(client, f"/jobs/{job_id}")
    answer = await client.post(f"/jobs/{job_id}/retry", data={"csrf": token})
    assert (
        answer.status_code == 303 and answer.headers["location"] == f"/jobs/{job_id}?note=retried"
    )
    assert await _status(app, job_id) is JobStatus.PENDING
    again = await client.post(f"/jobs/{job_id}/retry", data={"csrf": token})
    assert again.headers["location"].endswith("note=not-retried")
    shown = await client.get(again.headers["location"])
    assert "only a failed job can be retried" in shown.text


async def test_cancel_and_edit_priority(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """Priority changes on a pending job; cancel cancels it."""
    job_id = await app.start(workloads.child, 1)
    token = await csrf_of(client, f"/jobs/{job_id}")
    answer = await client.post(f"/jobs/{job_id}/priority", data={"csrf": token, "priority": "7"})
    assert answer.headers["location"].endswith("note=priority")
    job = await app.get_job(job_id)
    assert job is not None and job.priority == 7
    bad = await client.post(f"/jobs/{job_id}/priority", data={"csrf": token, "priority": "high"})
    assert bad.status_code == 400 and "priority must be a whole number" in bad.text
    answer = await client.post(f"/jobs/{job_id}/cancel", data={"csrf": token})
    assert answer.headers["location"].endswith("note=cancelled")
    assert await _status(app, job_id) is JobStatus.CANCELLED


async def test_complete_a_token_resumes_its_job(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """The token form completes the token with JSON output; the job then finishes."""
    job_id = await app.start(workloads.approval, {})
    await app.create_worker().run_until_idle()
    [token] = await app.get_tokens(status="waiting")
    csrf = await csrf_of(client, "/tokens")
    bad = await client.post(
        "/tokens/complete", data={"csrf": csrf, "token_id": token.id, "output": "{nope"}
    )
    assert bad.status_code == 400 and "must be JSON" in bad.text
    answer = await client.post(
        "/tokens/complete",
        data={"csrf": csrf, "token_id": token.id, "output": '{"ok": true}', "back": "job"},
    )
    assert answer.headers["location"] == f"/jobs/{job_id}?note=completed"
    await app.create_worker().run_until_idle()
    assert await app.result(job_id, timeout=5) == {"approved": {"ok": True}}
    twice = await client.post("/tokens/complete", data={"csrf": csrf, "token_id": token.id})
    assert twice.status_code == 400 and token.id in twice.text


async def test_pause_resume_and_enqueue_schedules(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """Pause and resume change the schedule's status; enqueue runs due ticks."""
    schedule_id = await app.add_cron_job("often", "* * * * *", workloads.child, 1)
    csrf = await csrf_of(client, "/schedules")
    answer = await client.post(f"/schedules/{schedule_id}/pause", data={"csrf": csrf})
    assert answer.headers["location"].endswith("note=paused")
    schedule = await app.get_cron_job(schedule_id)
    assert schedule is not None and schedule.status.value == "paused"
    assert f"/schedules/{schedule_id}/resume" in (await client.get("/schedules")).text
    answer = await client.post(f"/schedules/{schedule_id}/resume", data={"csrf": csrf})
    assert answer.headers["location"].endswith("note=resumed")
    schedule = await app.get_cron_job(schedule_id)
    assert schedule is not None and schedule.status.value == "active"
    missing = await client.post("/schedules/999/pause", data={"csrf": csrf})
    assert missing.headers["location"].endswith("note=no-schedule")
    answer = await client.post("/schedules/enqueue", data={"csrf": csrf})
    assert answer.headers["location"].endswith("note=enqueued")


async def test_actions_need_the_session_csrf_token(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """No token, a wrong token, or no cookie: 403 and nothing changes."""
    job_id = await app.start(workloads.child, 1)
    token = await csrf_of(client, "/")
    refused = [
        await client.post(f"/jobs/{job_id}/cancel"),
        await client.post(f"/jobs/{job_id}/cancel", data={"csrf": "x" * 43}),
        await client.post(f"/jobs/{job_id}/cancel", data={"csrf": token[:-1]}),
    ]
    async with client_for(create_app(app)) as stranger:  # no cookie of this session
        refused.append(await stranger.post(f"/jobs/{job_id}/cancel", data={"csrf": token}))
    assert [r.status_code for r in refused] == [403] * 4
    assert "CSRF" in refused[0].text
    assert await _status(app, job_id) is JobStatus.PENDING


async def test_actions_are_post_only(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """A GET on an action's URL changes nothing (405)."""
    job_id = await app.start(workloads.child, 1)
    answer = await client.get(f"/jobs/{job_id}/cancel")
    assert answer.status_code == 405
    assert await _status(app, job_id) is JobStatus.PENDING


async def test_read_only_hides_and_refuses_actions(app: flowq.App, workloads: Workloads) -> None:
    """Read-only: no action forms, and every action answers 403 even with a token."""
    failed = await app.start(workloads.broken, {})
    await app.create_worker().run_until_idle()
    async with client_for(create_app(app, read_only=True)) as client:
        page = await client.get(f"/jobs/{failed}")
        assert "read-only" in page.text and 'method="post"' not in page.text
        csrf = str(client.cookies["flowq_csrf"])
        for path in [f"/jobs/{failed}/retry", f"/jobs/{failed}/cancel", "/tokens/complete",
                     "/schedules/1/pause", "/schedules/enqueue"]:  # fmt: skip
            answer = await client.post(path, data={"csrf": csrf})
            assert answer.status_code == 403 and "read-only" in answer.text
    assert await _status(app, failed) is JobStatus.FAILED
