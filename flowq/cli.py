"""The ``flowq`` command: ``flowq migrate``, ``flowq worker``, ``flowq demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from flowq.client import App
from flowq.errors import FlowqError

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
    return parser


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
