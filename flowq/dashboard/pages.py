"""The dashboard's pages (GET) and actions (POST, confirmed, CSRF-checked)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from flowq.dashboard.metrics import render_metrics
from flowq.dashboard.summary import SAMPLE_SIZE, WORKERS_WINDOW, summarize
from flowq.dashboard.timeline import build_timeline, format_duration
from flowq.errors import ValidationError
from flowq.models import JobStatus, TagQuery
from flowq.store.report import EXACT_UP_TO

if TYPE_CHECKING:
    from flowq.dashboard.app import Dashboard

__all__ = [
    "ACTIONS",
    "NOTES",
    "PAGES",
    "PAGE_SIZE",
    "cancel",
    "complete_token",
    "enqueue_due",
    "fingerprint",
    "job",
    "jobs",
    "metrics",
    "overview",
    "priority",
    "retry",
    "schedules",
    "tokens",
]

PAGE_SIZE = 50
NOTES = {
    "retried": "The job will run again.",
    "not-retried": "Nothing changed: only a failed job can be retried.",
    "cancelled": "The job was cancelled.",
    "not-cancelled": "Nothing changed: the job had already finished.",
    "priority": "The priority was changed.",
    "not-priority": "Nothing changed: only a pending job's priority can be edited.",
    "completed": "The token was completed; its job resumes.",
    "paused": "The schedule is paused.",
    "resumed": "The schedule is active again.",
    "no-schedule": "There is no such schedule.",
    "enqueued": "Due ticks were enqueued.",
}
"""The notes an action leaves for the page it returns to (``?note=``): fixed texts,
so a link cannot put words on the page."""

_Handler = Callable[["Dashboard", Request], Awaitable[Response]]


def _note(request: Request) -> str | None:
    return NOTES.get(request.query_params.get("note", ""))


def _int(value: str | None, name: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationError(f"{name} must be a whole number, got {value!r}") from None


def _ages(now: datetime) -> Callable[[datetime | None], str]:
    def age(moment: datetime | None) -> str:
        return "" if moment is None else format_duration(now - moment)

    return age


async def overview(d: Dashboard, request: Request) -> Response:
    """Counts per status and workflow, the last hour, stuck jobs."""
    now = d.app.clock.now()
    summary = await summarize(d.app, now)
    peak = max([a + b for a, b in summary.per_minute] + [1])
    return d.render(
        request, "overview.html", title="Overview", page="overview", summary=summary,
        statuses=[s.value for s in JobStatus], peak=peak, sample_size=SAMPLE_SIZE,
        workers_window=f"{WORKERS_WINDOW.total_seconds() / 60:g} minutes",
        oldest=None if summary.counts.oldest_due_seconds is None
        else format_duration(timedelta(seconds=summary.counts.oldest_due_seconds)),
        age=_ages(now), note=_note(request),
    )  # fmt: skip


def _job_filters(query: QueryParams) -> dict[str, Any]:
    """``get_jobs`` keyword arguments from a jobs page's query string."""
    filters: dict[str, Any] = {}
    if query.get("status"):
        filters["status"] = query["status"]
    if query.get("workflow"):
        filters["workflow"] = query["workflow"]
    tags = [t.strip() for t in query.get("tags", "").split(",") if t.strip()]
    if tags:
        mode = query.get("tag_mode", "all")
        filters["tags"] = TagQuery(tags, mode)  # type: ignore[arg-type]
    return filters


async def jobs(d: Dashboard, request: Request) -> Response:
    """Jobs, newest first, filtered, a page at a time (keyset paging on the id)."""
    query = request.query_params
    search = query.get("q", "").strip()
    if search:
        found_id = await _search(d, search)
        if found_id is not None:
            return RedirectResponse(
                f"{request.scope.get('root_path', '').rstrip('/')}/jobs/{found_id}", 303
            )
    filters = _job_filters(query)
    cursor = _int(query.get("cursor"), "cursor")
    found = await d.app.get_jobs(**filters, limit=PAGE_SIZE, cursor=cursor)
    kept = {k: v for k, v in query.items() if k in ("status", "workflow", "tags", "tag_mode") and v}
    next_query = None
    if len(found) == PAGE_SIZE:
        next_query = "?" + urlencode({**kept, "cursor": str(found[-1].id)})
    live = {"view": "jobs", **kept, **({"cursor": str(cursor)} if cursor else {})}
    return d.render(
        request, "jobs.html", title="Jobs", page="jobs", jobs=found, filters=kept,
        statuses=[s.value for s in JobStatus], next_query=next_query, first_page=cursor is None,
        workflows=sorted(d.app.registry.names()), age=_ages(d.app.clock.now()),
        live=urlencode(live), search=search, not_found=bool(search),
    )  # fmt: skip


async def _search(d: Dashboard, search: str) -> int | None:
    """The job whose id (``123`` or ``#123``) or idempotency key (exactly) is ``search``.

    The key is looked up through its unique index, as a bound parameter."""
    digits = search.removeprefix("#")
    if digits.isdecimal() and len(digits) < 19:
        found = await d.app.get_job(int(digits))
        if found is not None:
            return found.id
    try:
        keyed = await d.app.get_job_by_key(search)
    except ValidationError:
        return None  # a NUL or lone surrogate: no key can hold it
    return None if keyed is None else keyed.id


async def job(d: Dashboard, request: Request) -> Response:
    """One job: its fields, timeline, steps, tokens and events."""
    job_id = int(request.path_params["job_id"])
    found = await d.app.get_job(job_id)
    if found is None:
        raise HTTPException(404, f"there is no job {job_id}")
    steps = await d.app.get_job_steps(job_id)
    now = d.app.clock.now()
    return d.render(
        request, "job.html", title=f"Job {job_id}", page="jobs", job=found, steps=steps,
        timeline=build_timeline(found, steps, now), events=await d.app.get_job_events(job_id),
        tokens=await d.app.get_tokens(job_id=job_id), note=_note(request), age=_ages(now),
        duration=format_duration, live=f"view=job&id={job_id}",
    )  # fmt: skip


async def tokens(d: Dashboard, request: Request) -> Response:
    """Waiting tokens, with a form to complete each."""
    waiting = await d.app.get_tokens(status="waiting", limit=200)
    return d.render(
        request, "tokens.html", title="Tokens", page="tokens", tokens=waiting,
        age=_ages(d.app.clock.now()), note=_note(request), live="view=tokens",
    )  # fmt: skip


async def schedules(d: Dashboard, request: Request) -> Response:
    """Cron schedules: next run, last job, paused or not."""
    return d.render(
        request, "schedules.html", title="Schedules", page="schedules",
        schedules=await d.app.list_cron_jobs(), note=_note(request),
    )  # fmt: skip


async def metrics(d: Dashboard, request: Request) -> Response:
    """Prometheus' text format."""
    now = d.app.clock.now()
    return PlainTextResponse(
        render_metrics(await summarize(d.app, now), now),
        media_type="text/plain; version=0.0.4",
    )


# -- actions ------------------------------------------------------------------------


async def retry(d: Dashboard, request: Request) -> Response:
    """Make a failed job run again now."""
    await d.form(request)
    job_id = int(request.path_params["job_id"])
    done = await d.app.retry_job(job_id)
    return d.back(request, f"/jobs/{job_id}", "retried" if done else "not-retried")


async def cancel(d: Dashboard, request: Request) -> Response:
    """Cancel a job that has not finished."""
    await d.form(request)
    job_id = int(request.path_params["job_id"])
    done = await d.app.cancel_job(job_id)
    return d.back(request, f"/jobs/{job_id}", "cancelled" if done else "not-cancelled")


async def priority(d: Dashboard, request: Request) -> Response:
    """Change a pending job's priority."""
    fields = await d.form(request)
    job_id = int(request.path_params["job_id"])
    value = _int(fields.get("priority"), "priority")
    if value is None:
        raise ValidationError("priority is missing")
    done = await d.app.edit_job(job_id, priority=value)
    return d.back(request, f"/jobs/{job_id}", "priority" if done else "not-priority")


async def complete_token(d: Dashboard, request: Request) -> Response:
    """Complete a waiting token with the JSON output typed in."""
    fields = await d.form(request)
    text = fields.get("output", "").strip() or "null"
    try:
        output = json.loads(text)
    except ValueError:
        raise ValidationError(f"the token's output must be JSON, got {text[:80]!r}") from None
    token = await d.app.complete_token(fields.get("token_id", ""), output)
    if fields.get("back") == "job" and token.job_id is not None:
        return d.back(request, f"/jobs/{token.job_id}", "completed")
    return d.back(request, "/tokens", "completed")


def _schedule_action(pause: bool) -> _Handler:
    async def change(d: Dashboard, request: Request) -> Response:
        await d.form(request)
        schedule_id = int(request.path_params["schedule_id"])
        verb = d.app.pause_cron_job if pause else d.app.resume_cron_job
        done = await verb(schedule_id)
        return d.back(
            request, "/schedules", ("paused" if pause else "resumed") if done else "no-schedule"
        )

    change.__doc__ = "Pause a schedule." if pause else "Resume a schedule."
    return change


async def enqueue_due(d: Dashboard, request: Request) -> Response:
    """Enqueue every schedule's due ticks now."""
    await d.form(request)
    await d.app.enqueue_due_cron_jobs()
    return d.back(request, "/schedules", "enqueued")


# -- live ---------------------------------------------------------------------------


async def fingerprint(d: Dashboard, query: Mapping[str, str]) -> Any:
    """A comparable summary of what a live page shows (``view`` names the page)."""
    view = query.get("view")
    if view == "job":
        found = await d.app.get_job(_int(query.get("id"), "id") or 0)
        if found is None:
            return None
        steps = await d.app.get_job_steps(found.id)
        return (found.status, found.attempts, found.progress, found.priority,
                found.wait_token_id, found.completed_at, len(steps))  # fmt: skip
    if view == "jobs":
        filters = _job_filters(QueryParams(dict(query)))
        page = await d.app.get_jobs(
            **filters, limit=PAGE_SIZE, cursor=_int(query.get("cursor"), "cursor")
        )
        return [(j.id, j.status, j.progress, j.priority) for j in page]
    if view == "tokens":
        return [t.id for t in await d.app.get_tokens(status="waiting", limit=200)]
    await d.app.open()
    counts = await d.app.store.count_jobs(timedelta(minutes=10), exact_up_to=EXACT_UP_TO)
    return sorted(counts.by_status.items())


PAGES: dict[str, _Handler] = {
    "/": overview,
    "/jobs": jobs,
    "/jobs/{job_id:int}": job,
    "/tokens": tokens,
    "/schedules": schedules,
}
ACTIONS: dict[str, _Handler] = {
    "/jobs/{job_id:int}/retry": retry,
    "/jobs/{job_id:int}/cancel": cancel,
    "/jobs/{job_id:int}/priority": priority,
    "/tokens/complete": complete_token,
    "/schedules/{schedule_id:int}/pause": _schedule_action(pause=True),
    "/schedules/{schedule_id:int}/resume": _schedule_action(pause=False),
    "/schedules/enqueue": enqueue_due,
}
