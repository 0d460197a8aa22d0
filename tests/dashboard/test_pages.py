"""Every page of the dashboard on every store: what it shows, and that user data is
escaped."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

import flowq
from flowq_testing import FakeClock
from tests.dashboard.workloads import Workloads

pytestmark = pytest.mark.anyio


async def test_overview_counts_jobs_per_status_and_workflow(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """The overview shows exact counts per status, per workflow, and the last hour."""
    await app.start(workloads.child, 1)
    await app.start(workloads.child, 2)
    await app.start(workloads.broken, {})
    await app.create_worker().run_until_idle()
    await app.start(workloads.child, 3)
    page = await client.get("/")
    assert page.status_code == 200
    assert re.search(r'data-status="completed">2<', page.text)
    assert re.search(r'data-status="failed">1<', page.text)
    assert re.search(r'data-status="pending">1<', page.text)
    assert 'id="completed-hour">2<' in page.text and 'id="failed-hour">1<' in page.text
    assert "/jobs?workflow=child&amp;status=completed" in page.text


async def test_overview_lists_stuck_jobs(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads, clock: FakeClock
) -> None:
    """A job locked for more than ten minutes is listed as stuck."""
    job_id = await app.start(workloads.child, 1)
    await app.store.claim_jobs("gone-worker", 1, ["child"])
    clock.advance(timedelta(minutes=11))
    page = await client.get("/")
    stuck = page.text.split('id="stuck"')[1].split("</table>")[0]
    assert f"#{job_id}" in stuck and "gone-worker" in stuck


async def test_jobs_list_filters_and_pages(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """Filters by status, workflow and tags (with their mode); keyset pages of 50."""
    ids = [await app.start(workloads.child, n, tags=["bulk"]) for n in range(55)]
    tagged = await app.start(workloads.broken, {}, tags=["red", "blue"])
    page = await client.get("/jobs", params={"workflow": "child"})
    shown = [int(i) for i in re.findall(r'data-job="(\d+)"', page.text)]
    assert shown == sorted(ids, reverse=True)[:50]
    next_link = re.search(r'id="next" href="([^"]+)"', page.text)
    assert next_link is not None
    second = await client.get(next_link.group(1).replace("&amp;", "&"))
    rest = [int(i) for i in re.findall(r'data-job="(\d+)"', second.text)]
    assert rest == sorted(ids, reverse=True)[50:]
    for query, expected in [
        ({"tags": "red", "tag_mode": "all"}, [tagged]),
        ({"tags": "red,green", "tag_mode": "any"}, [tagged]),
        ({"tags": "red", "tag_mode": "exact"}, []),
        ({"tags": "red,blue", "tag_mode": "exact"}, [tagged]),
        ({"status": "pending", "workflow": "broken"}, [tagged]),
        ({"status": "completed"}, []),
    ]:
        found = await client.get("/jobs", params=query)
        assert [int(i) for i in re.findall(r'data-job="(\d+)"', found.text)] == expected, query
    none_mode = await client.get("/jobs", params={"tags": "bulk", "tag_mode": "none"})
    assert re.findall(r'data-job="(\d+)"', none_mode.text) == [str(tagged)]


async def test_search_opens_a_job_by_id_or_idempotency_key(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """The search box opens a job by its id (``12`` or ``#12``) or its idempotency key
    (exactly, any characters); anything else leaves the list with an escaped note."""
    by_id = await app.start(workloads.child, 1)
    odd_key = "<b>order</b>' OR '1'='1"
    keyed = await app.start(workloads.child, 2, idempotency_key=odd_key)
    numeric_key = await app.start(workloads.child, 3, idempotency_key="9000001")
    for query, expected in [
        (str(by_id), by_id),
        (f"#{by_id}", by_id),
        (odd_key, keyed),
        (f"  {odd_key} ", keyed),
        ("9000001", numeric_key),  # no job has that id: the key is looked up
    ]:
        moved = await client.get("/jobs", params={"q": query})
        assert moved.status_code == 303, query
        assert moved.headers["location"] == f"/jobs/{expected}", query
    for query in ["<b>order</b>", "#", "99999999999999999999", "key\x00"]:
        missed = await client.get("/jobs", params={"q": query})
        assert missed.status_code == 200, query
        assert 'id="not-found"' in missed.text, query
    missed = await client.get("/jobs", params={"q": "<b>order</b>"})
    assert "&lt;b&gt;order&lt;/b&gt;" in missed.text and "<b>order</b>" not in missed.text


async def test_job_page_shows_steps_a_wait_and_the_timeline(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads, clock: FakeClock
) -> None:
    """A job with a step, a durable wait and another step: each is a timeline bar; the
    wait shows its wake time; once done, the output and events are there."""
    job_id = await app.start(workloads.onboarding, {"user_id": 7})
    await app.create_worker().run_until_idle()
    waiting = await client.get(f"/jobs/{job_id}")
    timeline = waiting.text.split('id="timeline"')[1].split('id="payload"')[0]
    assert 'data-kind="step"' in timeline and "fetch_user" in timeline
    assert 'data-kind="wait"' in timeline and "wakes at" in timeline
    wake = (clock.now() + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    assert wake in timeline
    clock.advance(timedelta(hours=1, seconds=1))
    await app.create_worker().run_until_idle()
    done = await client.get(f"/jobs/{job_id}")
    assert "completed" in done.text and "sent to user 7" in done.text
    timeline = done.text.split('id="timeline"')[1].split('id="payload"')[0]
    assert timeline.count('class="tl-row"') == 3 and "send_mail" in timeline
    events = done.text.split('id="events"')[1]
    assert events.count("processing") == 2 and "waiting" in events


async def test_job_page_links_children_and_shows_errors(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """A parent's timeline links its child; a failed job shows its error history."""
    parent = await app.start(workloads.parent, 4)
    broken = await app.start(workloads.broken, {"message": "disk full"})
    await app.create_worker().run_until_idle()
    page = await client.get(f"/jobs/{parent}")
    child = re.search(r'href="/jobs/(\d+)">started child child #\d+', page.text)
    assert child is not None
    child_page = await client.get(f"/jobs/{child.group(1)}")
    assert "completed" in child_page.text
    failed = await client.get(f"/jobs/{broken}")
    errors = failed.text.split('id="errors"')[1]
    assert "RuntimeError" in errors and "disk full" in errors


async def test_failed_jobs_say_whether_they_retry(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads, clock: FakeClock
) -> None:
    """A failed job shows when it retries, or that it gave up, in the list and on its page."""
    retrying = await app.start(
        workloads.broken, {}, max_attempts=2, retry_delay="10m", retry_backoff=False
    )
    gave_up = await app.start(workloads.broken, {})
    await app.create_worker().run_until_idle()
    retry_at = (clock.now() + timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S UTC")
    listed = await client.get("/jobs", params={"status": "failed"})
    rows = {
        int(job_id): row
        for job_id, row in re.findall(r'<tr data-job="(\d+)">(.*?)</tr>', listed.text, re.S)
    }
    assert f"retries {retry_at}" in rows[retrying] and "gave up" not in rows[retrying]
    assert "gave up" in rows[gave_up] and "retries" not in rows[gave_up]
    page = await client.get(f"/jobs/{retrying}")
    heading = page.text.split("<h1>")[1].split("</h1>")[0]
    assert f"retries {retry_at}" in heading
    page = await client.get(f"/jobs/{gave_up}")
    assert "gave up" in page.text.split("<h1>")[1].split("</h1>")[0]


async def test_unknown_job_is_a_404_page(client: httpx.AsyncClient) -> None:
    """A missing job answers 404 with a page, not a traceback."""
    page = await client.get("/jobs/999999")
    assert page.status_code == 404 and "there is no job 999999" in page.text


async def test_tokens_page_lists_waiting_tokens(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """A job waiting on a token: the token is listed with its job and a form."""
    job_id = await app.start(workloads.approval, {})
    await app.create_worker().run_until_idle()
    [token] = await app.get_tokens(status="waiting")
    page = await client.get("/tokens")
    assert f'data-token="{token.id}"' in page.text and f"/jobs/{job_id}" in page.text
    assert 'name="output"' in page.text


async def test_schedules_page(
    app: flowq.App, client: httpx.AsyncClient, workloads: Workloads
) -> None:
    """A cron schedule is listed with its expression and a pause button."""
    schedule_id = await app.add_cron_job("nightly", "0 3 * * *", workloads.child, 5)
    page = await client.get("/schedules")
    assert f'data-schedule="{schedule_id}"' in page.text and "0 3 * * *" in page.text
    assert f"/schedules/{schedule_id}/pause" in page.text


async def test_user_data_is_escaped_everywhere(
    app: flowq.App, client: httpx.AsyncClient, registry: flowq.Registry
) -> None:
    """A workflow name, payload, tag and error text with markup render as text."""
    evil = "<script>alert(1)</script>"

    @registry.workflow(name="x<b>y</b>", max_attempts=1)
    async def hostile(payload: dict[str, str]) -> None:
        raise ValueError(payload["text"])

    job_id = await app.start(hostile, {"text": evil}, tags=["<i>tag</i>"])
    await app.create_worker().run_until_idle()
    for path in ["/", "/jobs", f"/jobs/{job_id}"]:
        page = await client.get(path)
        assert page.status_code == 200
        assert evil not in page.text and "<b>y</b>" not in page.text and "<i>tag" not in page.text
    detail = (await client.get(f"/jobs/{job_id}")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail and "x&lt;b&gt;y&lt;/b&gt;" in detail
    metrics = await client.get("/metrics")  # plain text, never HTML
    assert metrics.headers["content-type"].startswith("text/plain")


async def test_pages_carry_security_headers(client: httpx.AsyncClient) -> None:
    """Pages may not be framed or sniffed, and set an HttpOnly SameSite CSRF cookie."""
    page = await client.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    cookie = page.headers["set-cookie"].lower()
    assert "flowq_csrf=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
