"""``flowq demo``: a short tour on the embedded SQLite default.

It adds example jobs (an idempotency key, priorities, tags, a dependency chain, a
flaky job that retries, one that fails for good into a dead-letter workflow, a
delayed job), runs a worker until they are done, and prints what happened. It uses
its own registry and the database named by ``--database-url`` /
``FLOWQ_DATABASE_URL`` (default ``sqlite+aiosqlite:///flowq.db``), migrating it if
needed. Each run uses fresh idempotency keys, so it can be run again and again.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import anyio
import msgspec

from flowq.client import App
from flowq.context import Context
from flowq.errors import JobFailedError
from flowq.models import DependsOn, Job, RetryPolicy, batch_dep_ref
from flowq.options import JobSpec
from flowq.registry import Registry

__all__ = [
    "Signup",
    "charge_card",
    "demo_registry",
    "flaky_api",
    "publish_report",
    "refund",
    "resize_image",
    "run",
    "send_welcome",
]

demo_registry = Registry()
_attempts: Counter[str] = Counter()


class Signup(msgspec.Struct):
    """The payload of the onboarding workflow."""

    user_id: int
    email: str


@demo_registry.workflow(name="demo.send_welcome", tags=["email"])
async def send_welcome(payload: Signup) -> str:
    """Sends a welcome email."""
    return f"welcome sent to {payload.email}"


@demo_registry.workflow(name="demo.resize_image")
async def resize_image(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Resizes an uploaded image, reporting progress."""
    await ctx.set_progress(50)
    return {"image": payload["image"], "size": "800x600"}


@demo_registry.workflow(name="demo.publish_report")
async def publish_report(payload: dict[str, Any]) -> str:
    """Publishes a report once the images are ready."""
    return f"report {payload['title']!r} published"


@demo_registry.workflow(name="demo.flaky_api", max_attempts=4, retry=RetryPolicy("50ms"))
async def flaky_api(payload: dict[str, Any], ctx: Context) -> str:
    """Calls an API that fails twice before answering."""
    _attempts[payload["call"]] += 1
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


def _line(job: Job) -> str:
    output = "" if job.output is None else f" -> {job.output}"
    return (
        f"  #{job.id:<4} {job.workflow:<20} {job.status.value:<10} attempts={job.attempts}{output}"
    )


async def run(database_url: str | None = None) -> None:
    """Run the tour and print what happens."""
    run_id = uuid.uuid4().hex[:8]
    async with App(database_url, registry=demo_registry, auto_migrate=True) as app:
        print(f"flowq demo on {app.store!r}\n")
        failures: list[str] = []
        app.on(
            "job:failed",
            lambda e: failures.append(f"#{e.job_id} attempt {e.attempt} (retry: {e.will_retry})"),
        )
        key = f"welcome-42-{run_id}"
        welcome = await app.start(send_welcome, Signup(42, "ada@example.com"), idempotency_key=key)
        again = await app.start(send_welcome, Signup(42, "ada@example.com"), idempotency_key=key)
        print(f"1. started send_welcome as #{welcome}; the same idempotency key returned #{again}")
        batch = await app.add_jobs(
            [
                JobSpec(resize_image, {"image": "cat.png"}, tags=["images"], priority=5),
                JobSpec(resize_image, {"image": "dog.png"}, tags=["images"]),
                JobSpec(
                    publish_report,
                    {"title": "pets"},
                    depends_on=DependsOn([batch_dep_ref(0), batch_dep_ref(1)]),
                ),
            ]
        )
        print(f"2. added {batch} in one transaction; #{batch[2]} waits for both images")
        flaky = await app.start(flaky_api, {"call": run_id})
        charge = await app.start(charge_card, {"order": 7})
        later = await app.start(resize_image, {"image": "bird.png"}, delay=3600)
        print(
            f"3. #{flaky} fails twice then succeeds; #{charge} fails for good; #{later} runs in 1h"
        )

        worker = app.create_worker(concurrency=4)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            with anyio.fail_after(30):
                for job_id in (welcome, *batch, flaky):
                    await app.result(job_id)
                try:
                    await app.result(charge)
                except JobFailedError as exc:
                    print(f"4. as expected: {exc}")
                letter = (await app.get_job(charge)).dead_letter_job_id  # type: ignore[union-attr]
                if letter is not None:
                    print(f"5. dead letter #{letter}: {await app.result(letter)}")
            await worker.stop()

        print("\nFailed attempts seen by the hook:", "; ".join(failures))
        report_events = [e.event_type.value for e in await app.get_job_events(batch[2])]
        print(f"Events of #{batch[2]}: {', '.join(report_events)}")
        print("\nJobs of this run (newest first):")
        for job in await app.get_jobs(limit=None, cursor=later + 1):
            if job.id >= welcome:
                print(_line(job))
        print(f"\n#{later} is still pending until its run time; run `flowq demo` again any time.")
