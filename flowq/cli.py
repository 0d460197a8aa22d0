"""The ``flowq`` command: ``migrate``, ``worker``, ``demo``, ``jobs export``, ``replay``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowq.client import App
from flowq.errors import FlowqError, ValidationError
from flowq.registry import Workflow, default_registry

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowq", description="Durable workflows and jobs.")
    commands = parser.add_subparsers(dest="command", required=True)
    url_help = "database URL (default: $FLOWQ_DATABASE_URL, else sqlite+aiosqlite:///flowq.db)"
    migrate = commands.add_parser("migrate", help="create or upgrade flowq's tables")
    migrate.add_argument("--database-url", help=url_help)
    demo = commands.add_parser("demo", help="add a few example jobs and show what happened")
    demo.add_argument("--database-url", help=url_help)
    worker = commands.add_parser("worker", help="run the workflows of a module until stopped")
    worker.add_argument(
        "target",
        metavar="MODULE[:ATTR]",
        help="module defining the workflows; ATTR names a flowq.Registry or flowq.App in it "
        "(default: the workflows registered with @flowq.workflow)",
    )
    worker.add_argument("--database-url", help=url_help)
    worker.add_argument("--concurrency", type=int, default=10, help="jobs run at once (10)")
    worker.add_argument(
        "--drain-timeout", type=float, default=30.0,
        help="seconds running jobs get to finish after SIGINT/SIGTERM (30)",
    )  # fmt: skip
    worker.add_argument(
        "--heartbeat-interval", type=float, default=5.0,
        help="seconds between refreshes of running jobs' locks (5)",
    )  # fmt: skip
    worker.add_argument(
        "--lease-timeout", type=float, default=None,
        help="seconds after which a job whose lock was not refreshed is taken back from "
        "its (dead) worker (30, or 3 heartbeat intervals if longer; at least 2)",
    )  # fmt: skip
    worker.add_argument("--worker-id", help="name used in locks and events")
    worker.add_argument("--no-notify", action="store_true", help="poll only (no LISTEN/NOTIFY)")
    worker.add_argument(
        "--until-idle", action="store_true",
        help="run what is runnable now, then exit (scripts, cron, serverless)",
    )  # fmt: skip
    jobs = commands.add_parser("jobs", help="look at jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    export = jobs.add_parser("export", help="print a job's history as JSON (for flowq replay)")
    export.add_argument("job_id", type=int, metavar="ID")
    export.add_argument("--database-url", help=url_help)
    replay = commands.add_parser(
        "replay", help="re-run an exported job history against the current code"
    )
    replay.add_argument("file", metavar="FILE", help="a history from `flowq jobs export`")
    replay.add_argument(
        "--workflow", required=True, metavar="MODULE:NAME",
        help="the workflow object to replay it with (NAME: a variable or a workflow name)",
    )  # fmt: skip
    return parser


async def _export(job_id: int, database_url: str | None) -> None:
    async with App(database_url) as app:
        print(await app.export_job(job_id))


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc}") from None


async def _replay(history: bytes, target: str) -> None:
    from flowq.replayer import replay

    workflow = _load_workflow(target)
    result = await replay(history, workflow)
    print(
        f"job {result.job_id}: {result.replayed} recorded call(s) replayed against "
        f"{workflow.name!r}, no difference ({result.ended})"
    )


def _load_workflow(target: str) -> Workflow[Any, Any]:
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise ValidationError(f"--workflow takes MODULE:NAME, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(f"cannot import {module_name!r}: {exc}") from exc
    found = getattr(module, name, None)
    if isinstance(found, Workflow):
        return found
    registered = default_registry.get(name)
    if registered is not None:
        return registered
    raise ValidationError(f"{target!r} names no workflow (a @flowq.workflow object or name)")


async def _migrate(database_url: str | None) -> None:
    app = App(database_url)
    try:
        applied = await app.migrate()
    finally:
        await app.close()
    target = app.store
    if applied:
        print(f"applied {len(applied)} migration(s) to {target!r}: {', '.join(applied)}")
    else:
        print(f"{target!r} is up to date")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowq`` command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(args.database_url))
        elif args.command == "jobs":
            asyncio.run(_export(args.job_id, args.database_url))
        elif args.command == "replay":
            asyncio.run(_replay(_read(args.file), args.workflow))
        elif args.command == "worker":
            from flowq import worker_command

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
            asyncio.run(worker_command.run_worker(args))
        else:
            from flowq import demo

            asyncio.run(demo.run(args.database_url))
    except FlowqError as exc:
        print(f"flowq: error: {exc}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        matched, rest = group.split(FlowqError)
        if matched is None or rest is not None:
            raise
        print(f"flowq: error: {_first(matched)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _first(group: BaseExceptionGroup[FlowqError]) -> BaseException:
    """The first leaf of an exception group (task groups wrap errors in groups)."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


if __name__ == "__main__":
    sys.exit(main())
