"""``flowq demo``: a short tour on the embedded SQLite default.

It adds a few example jobs (priorities, tags, an idempotency key, a dependency chain,
a delayed job), inspects them, edits and cancels some, and prints every step. It uses
its own registry and a database named by ``--database-url`` /
``FLOWQ_DATABASE_URL`` (default ``sqlite+aiosqlite:///flowq.db``), migrating it if
needed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from flowq.client import App
from flowq.models import DependsOn, Job, TagQuery, batch_dep_ref
from flowq.options import JobSpec
from flowq.registry import Registry

__all__ = ["demo_registry", "run"]

demo_registry = Registry()


class Signup(msgspec.Struct):
    """The payload of the onboarding workflow."""

    user_id: int
    email: str


@demo_registry.workflow(name="demo.send_welcome", tags=["email"])
async def send_welcome(payload: Signup) -> str:
    """Sends a welcome email."""
    return f"welcome sent to {payload.email}"


@demo_registry.workflow(name="demo.resize_image", max_attempts=5)
async def resize_image(payload: dict[str, Any]) -> None:
    """Resizes an uploaded image."""


@demo_registry.workflow(name="demo.publish_report")
async def publish_report(payload: dict[str, Any]) -> None:
    """Publishes a report once the images are ready."""


def _line(job: Job) -> str:
    tags = ",".join(job.tags) or "-"
    deps = ",".join(map(str, job.depends_on)) or "-"
    return (
        f"  #{job.id:<4} {job.workflow:<20} {job.status.value:<10} prio={job.priority:<3} "
        f"tags={tags:<12} depends_on={deps}"
    )


async def run(database_url: str | None = None) -> None:
    """Run the tour and print what happens."""
    async with App(database_url, registry=demo_registry, auto_migrate=True) as app:
        print(f"flowq demo on {app.store!r}\n")
        welcome = await app.start(
            send_welcome, Signup(42, "ada@example.com"), idempotency_key="welcome-42"
        )
        again = await app.start(
            send_welcome, Signup(42, "ada@example.com"), idempotency_key="welcome-42"
        )
        print(
            f"1. started send_welcome as job #{welcome}; the same idempotency key again "
            f"returned #{again} (no duplicate)"
        )
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
        print(f"2. added a batch in one transaction: {batch}; the report waits for both images")
        later = await app.start(resize_image, {"image": "bird.png"}, delay=timedelta(hours=1))
        print(f"3. scheduled job #{later} to run in an hour")
        edited = await app.edit_job(later, priority=9)
        print(f"4. raised its priority while pending: {edited}")
        images = await app.get_jobs(tags=TagQuery(["images"], "any"))
        print(f"5. jobs tagged 'images': {[job.id for job in images]}")
        cancelled = await app.cancel_job(batch[1])
        print(f"6. cancelled #{batch[1]} ({cancelled}); its dependant #{batch[2]} is cancelled too")
        print("\nJobs now (newest first):")
        for job in await app.get_jobs(limit=10):
            print(_line(job))
        print(f"\nEvent log of #{batch[2]}:")
        for event in await app.get_job_events(batch[2]):
            print(f"  {event.at:%H:%M:%S} {event.event_type.value:<10} {event.metadata or ''}")
        print("\nNext: run a worker to execute these jobs (coming with the worker release).")
