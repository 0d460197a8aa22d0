"""``flowq demo``: the headline in one run, printed as a timeline.

An onboarding workflow records two steps, sleeps durably, asks for an approval with
a token that a simulated human completes, then activates the account; a flaky API
call fails twice and is retried; a card that is always declined fails for good and
lands in a dead-letter workflow. A real worker runs them on SQLite, in a database
file of the demo's own that it deletes afterwards (or on ``--database-url``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec

from flowq.client import App
from flowq.context import Context
from flowq.errors import JobFailedError
from flowq.models import JobEvent, RetryPolicy, StepRecord
from flowq.registry import Registry
from flowq.steps import step

__all__ = [
    "APPROVAL_DELAY",
    "Signup",
    "activate",
    "charge_card",
    "create_account",
    "demo_registry",
    "flaky_api",
    "onboard",
    "refund",
    "run",
    "send_email",
]

demo_registry = Registry()
APPROVAL_DELAY = 0.3
"""Seconds the simulated human takes to approve."""


class Signup(msgspec.Struct):
    """The payload of the onboarding workflow."""

    user_id: int
    email: str


@step(name="demo.create_account")
async def create_account(signup: Signup) -> str:
    """Creates the account (a step: recorded, never run again on replay)."""
    return f"acct-{signup.user_id}"


@step(name="demo.send_email")
async def send_email(to: str, subject: str) -> str:
    """Sends an email."""
    return f"sent {subject!r} to {to}"


@step(name="demo.activate")
async def activate(account: str) -> str:
    """Activates the account."""
    return f"{account} active"


@demo_registry.workflow(name="demo.onboard")
async def onboard(signup: Signup, ctx: Context) -> str:
    """Account, welcome, a durable pause, an approval token, activation."""
    account = await create_account(signup)
    await send_email(signup.email, "welcome")
    await ctx.sleep("500ms")  # durable: the job parks, holding no worker slot
    token = await ctx.create_token(timeout="1h", tags=["approval"])
    await send_email("manager@example.com", f"approve {account}: token {token.id[:8]}...")
    decision = await ctx.wait_for_token(token)
    if not (decision.ok and decision.output["approved"]):
        return f"{account} rejected"
    return await activate(account)


@demo_registry.workflow(name="demo.flaky_api", max_attempts=4, retry=RetryPolicy("100ms"))
async def flaky_api(payload: dict[str, Any], ctx: Context) -> str:
    """Calls an API that fails twice before answering."""
    if ctx.job.attempt < 3:
        raise ConnectionError(f"API timeout on attempt {ctx.job.attempt}")
    return "answered"


@demo_registry.workflow(name="demo.charge_card", max_attempts=1, dead_letter="demo.refund")
def charge_card(payload: dict[str, Any]) -> None:
    """A sync handler (runs in a thread) whose card is always declined."""
    raise ValueError(f"card of order {payload['order']} declined")


@demo_registry.workflow(name="demo.refund")
async def refund(payload: dict[str, Any]) -> str:
    """Receives the jobs that failed for good."""
    return f"refunded order {payload['payload']['order']} after: {payload['error']['message']}"


@contextmanager
def _database(database_url: str | None) -> Iterator[str]:
    """The given URL, or a SQLite file in a temporary folder removed afterwards."""
    if database_url is not None:
        yield database_url
        return
    with tempfile.TemporaryDirectory(prefix="flowq-demo-") as folder:
        yield f"sqlite+aiosqlite:///{Path(folder) / 'demo.db'}"


async def run(database_url: str | None = None) -> None:
    """Run the demo and print its timeline."""
    with _database(database_url) as url:
        async with App(url, registry=demo_registry, auto_migrate=True) as app:
            await _tour(app, own_database=database_url is None)


async def _tour(app: App, *, own_database: bool) -> None:
    where = "a database of its own, deleted afterwards" if own_database else repr(app.store)
    print(f"flowq demo: a worker runs three workflows on {where}\n")
    started = app.clock.now()
    onboarding = await app.start(onboard, Signup(42, "ada@example.com"))
    flaky = await app.start(flaky_api, {"call": "geo"})
    charge = await app.start(charge_card, {"order": 7})
    worker = app.create_worker(concurrency=4, poll_interval="50ms")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        with anyio.fail_after(30):
            await _approve_like_a_human(app, onboarding)
            for job_id in (onboarding, flaky):
                await app.result(job_id)
            try:
                await app.result(charge)
            except JobFailedError:
                pass
            letter = (await app.get_job(charge)).dead_letter_job_id  # type: ignore[union-attr]
            if letter is not None:
                await app.result(letter)
        await worker.stop()
    jobs = [job for job in await app.get_jobs(limit=None) if job.created_at >= started]
    for job in sorted(jobs, key=lambda j: j.id):
        print(f"#{job.id} {job.workflow}: {job.status.value}, attempts {job.attempts}"
              + (f" -> {job.output!r}" if job.output is not None else ""))  # fmt: skip
        events = await app.get_job_events(job.id)
        steps = await app.get_job_steps(job.id)
        for line in _timeline(events, steps, started):
            print(f"    {line}")
        print()
    print("Each step's result is recorded: after the pause and the approval the handler ran")
    print("again and replayed them instead of running them twice. Read docs/concepts.md.")


async def _approve_like_a_human(app: App, job_id: int) -> None:
    """When the onboarding job parks on its token, approve it after a moment."""
    parked: list[anyio.Event] = [anyio.Event()]
    app.on("job:waiting", lambda event: parked[0].set() if event.job_id == job_id else None)
    while True:
        await parked[0].wait()
        parked[0] = anyio.Event()
        job = await app.get_job(job_id)
        if job is not None and job.wait_token_id is not None:
            await anyio.sleep(APPROVAL_DELAY)
            await app.complete_token(job.wait_token_id, {"approved": True})
            return


def _timeline(events: list[JobEvent], steps: list[StepRecord], started: datetime) -> list[str]:
    """The job's events and recorded steps, in time order, as lines."""
    lines: list[tuple[datetime, int, str]] = []
    for event in events:
        meta = event.metadata or {}
        detail = ""
        if event.event_type.value == "waiting":
            detail = " for a token" if meta.get("token_id") else f" until +{_until(meta, started)}"
        elif event.event_type.value == "failed":
            detail = f": {meta.get('error', meta.get('message', ''))}"
            detail += " (will retry)" if meta.get("will_retry") else " (gave up)"
        elif event.event_type.value == "processing" and meta.get("resumed"):
            detail = " (resumed: recorded steps replayed)"
        lines.append((event.at, 0, f"{event.event_type.value}{detail}"))
    for recorded in steps:
        if not recorded.name.startswith("@"):
            lines.append(
                (recorded.completed_at, 1, f"  step {recorded.name} -> {recorded.output!r}")
            )
    return [f"+{(at - started).total_seconds():6.3f}s {text}" for at, _, text in sorted(lines)]


def _until(meta: dict[str, Any], started: datetime) -> str:
    until = meta.get("until")
    if not until:
        return "?"
    return f"{(datetime.fromisoformat(until) - started).total_seconds():.3f}s"
