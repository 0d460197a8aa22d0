"""The ``flowq`` command line.

``migrate``, ``worker``, ``demo``, ``jobs list|show|events|steps|retry|cancel|export``,
``tokens complete``, ``supervisor``, ``reclaim``, ``cleanup``, ``replay``, ``dashboard``,
``--version``.
Every option can also come from a ``FLOWQ_<OPTION>`` environment variable (``--drain-timeout``:
``FLOWQ_DRAIN_TIMEOUT``); the command line wins. Commands that use a database need
its URL (``--database-url`` or ``FLOWQ_DATABASE_URL``), or ``--embedded`` for the
embedded SQLite default ``./flowq.db``: none is chosen silently. On PostgreSQL,
``--schema`` (``FLOWQ_SCHEMA``) names the schema that holds flowq's tables.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from flowq.client import DEFAULT_DATABASE_URL, App
from flowq.errors import FlowqError, ValidationError
from flowq.registry import Workflow, default_registry

__all__ = ["main"]

_NO_URL = (
    "no database URL: pass --database-url or set FLOWQ_DATABASE_URL "
    f"(or --embedded for the embedded SQLite database {DEFAULT_DATABASE_URL})"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowq", description="Durable workflows and jobs.")
    parser.add_argument("--version", action="version", version=f"flowq {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    migrate = _database_command(commands, "migrate", "create or upgrade flowq's tables")
    migrate.add_argument(
        "--sql", action="store_true",
        help="print the SQL of every migration instead of applying it (the URL's "
        "database kind; nothing is connected to)",
    )  # fmt: skip
    demo = commands.add_parser("demo", help="add example jobs, run a worker, print what happened")
    demo.add_argument(
        "--database-url", dest="demo_database_url",
        help="where (default: a SQLite file of its own, deleted afterwards)",
    )  # fmt: skip
    _worker_parser(commands)

    jobs = commands.add_parser("jobs", help="look at and manage jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    listing = _database_command(jobs, "list", "jobs, newest first", json=True)
    listing.add_argument("--status", help="pending, processing, waiting, completed, ...")
    retrying = listing.add_mutually_exclusive_group()
    retrying.add_argument(
        "--retrying", action="store_true", help="only failed jobs with a next attempt scheduled"
    )
    retrying.add_argument(
        "--gave-up", action="store_true", help="only failed jobs that will not run again"
    )
    listing.add_argument("--workflow", help="a workflow name")
    listing.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    listing.add_argument("--tag-mode", default="all", choices=["all", "any", "exact", "none"])
    listing.add_argument("--limit", type=int, default=20, help="page size (20)")
    listing.add_argument("--cursor", type=int, help="the last id of the previous page")
    for name, text in [
        ("show", "every field of a job"),
        ("events", "a job's event log"),
        ("steps", "a job's recorded steps and waits"),
        ("retry", "make a failed job run again now"),
        ("cancel", "cancel a job that has not finished"),
        ("export", "print a job's history as JSON (for flowq replay)"),
    ]:
        one = _database_command(jobs, name, text, json=name != "export")
        one.add_argument("job_id", type=int, metavar="ID")

    tokens = commands.add_parser("tokens", help="human-in-the-loop tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    token_list = _database_command(tokens, "list", "tokens, newest first", json=True)
    token_list.add_argument("--job", type=int, metavar="ID", help="the tokens of one job")
    token_list.add_argument("--status", help="waiting, completed or timed_out")
    token_list.add_argument("--limit", type=int, default=20, help="at most (20)")
    complete = _database_command(tokens, "complete", "complete a waiting token", json=True)
    complete.add_argument("token_id", metavar="ID")
    complete.add_argument("--output", default="null", help="the token's output, as JSON")

    cron = commands.add_parser("cron", help="cron schedules").add_subparsers(
        dest="cron_command", required=True
    )
    cron_list = _database_command(cron, "list", "every schedule, by name", json=True)
    cron_list.add_argument("--status", help="active or paused")
    _database_command(cron, "enqueue", "enqueue every due tick now", json=True)
    for name, text in [
        ("show", "every field of a schedule"),
        ("pause", "stop enqueuing a schedule's ticks"),
        ("resume", "enqueue a paused schedule's ticks again, from its next tick"),
        ("remove", "delete a schedule (its jobs stay)"),
    ]:
        one = _database_command(cron, name, text, json=True)
        one.add_argument("schedule", metavar="ID|NAME")
    doctor = _database_command(
        commands, "doctor", "the database's state and what looks wrong", json=True
    )
    doctor.add_argument(
        "--stuck-minutes", type=float, default=10.0,
        help="a job locked longer than this counts as stuck (10)",
    )  # fmt: skip

    supervisor = _database_command(
        commands, "supervisor", "run maintenance every --interval until stopped", json=True
    )
    _supervisor_options(supervisor)
    supervisor.add_argument("--once", action="store_true", help="one round, print it, exit")
    reclaim = _database_command(commands, "reclaim", "take back stuck jobs", json=True)
    reclaim.add_argument("--minutes", type=float, default=10, help="locked longer than (10)")
    cleanup = _database_command(commands, "cleanup", "delete old finished jobs", json=True)
    cleanup.add_argument("--days", type=float, default=30, help="finished before (30)")
    cleanup.add_argument("--events-days", type=float, help="events older than (--days)")

    dashboard = _database_command(commands, "dashboard", "serve the web dashboard")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8000, help="port (8000)")
    dashboard.add_argument("--read-only", action="store_true", help="refuse every action")

    replay = commands.add_parser(
        "replay", help="re-run an exported job history against the current code"
    )
    replay.add_argument("file", metavar="FILE", help="a history from `flowq jobs export`")
    replay.add_argument(
        "--workflow", required=True, metavar="MODULE:NAME",
        help="the workflow object to replay it with (NAME: a variable or a workflow name)",
    )  # fmt: skip
    return parser


def _database_command(
    commands: Any, name: str, text: str, *, json: bool = False
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=text)
    command.add_argument("--database-url", help="the database (default: $FLOWQ_DATABASE_URL)")
    command.add_argument(
        "--schema",
        help="PostgreSQL: the schema holding flowq's tables (default: $FLOWQ_SCHEMA, else "
        "the connection's search_path, usually public)",
    )
    command.add_argument(
        "--embedded", action="store_true",
        help=f"use the embedded SQLite database {DEFAULT_DATABASE_URL} when no URL is given",
    )  # fmt: skip
    if json:
        command.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    return command


def _supervisor_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--interval", type=float, default=60.0, help="seconds between rounds")
    command.add_argument(
        "--stuck-jobs-timeout", type=float, default=600.0,
        help="seconds a job may stay locked before it is taken back (600)",
    )  # fmt: skip
    command.add_argument(
        "--keep-jobs-days", type=float, default=30.0, help="days finished jobs are kept (30)"
    )
    command.add_argument(
        "--keep-events-days", type=float, default=30.0, help="days events are kept (30)"
    )


def _worker_parser(commands: Any) -> None:
    worker = _database_command(commands, "worker", "run the workflows of a module until stopped")
    worker.add_argument(
        "target",
        metavar="MODULE[:ATTR]",
        help="module defining the workflows; ATTR names a flowq.Registry or flowq.App in it "
        "(default: the workflows registered with @flowq.workflow)",
    )
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
    worker.add_argument("--log-level", default="INFO", help="logging level (INFO)")
    worker.add_argument(
        "--supervise", action="store_true",
        help="also run the supervisor's maintenance in this process (see flowq supervisor)",
    )  # fmt: skip
    _supervisor_options(worker)


def _environment_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option of every command defaults to ``FLOWQ_<OPTION>`` when set."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _environment_defaults(sub)
            continue
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        raw = os.environ.get(f"FLOWQ_{action.dest.upper()}")
        if raw is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            action.default = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            try:
                action.default = action.type(raw) if callable(action.type) else raw
            except ValueError:
                raise ValidationError(
                    f"FLOWQ_{action.dest.upper()}={raw!r} is not a valid {action.dest}"
                ) from None


def _database_url(args: argparse.Namespace) -> str:
    """The URL a database command uses; a bare path or nothing at all is refused."""
    url: str | None = args.database_url
    if not url:
        if not args.embedded:
            raise ValidationError(_NO_URL)
        return DEFAULT_DATABASE_URL
    if "://" not in url:
        raise ValidationError(
            f"{url!r} is not a database URL; write sqlite+aiosqlite:///{url} for a SQLite "
            "file, or postgresql+asyncpg://user@host/db"
        )
    return url


def _version() -> str:
    from flowq import __version__

    return __version__


async def _run_database_command(args: argparse.Namespace, url: str) -> str | None:
    from flowq import cli_jobs, cli_ops, codec

    async with App(url, schema=args.schema or None) as app:
        if args.command == "supervisor":
            return await _supervise(app, args)
        if args.command == "jobs":
            return await cli_jobs.run_jobs_command(app, args)
        if args.command == "cron":
            return await cli_ops.run_cron_command(app, args)
        if args.command == "doctor":
            return await cli_ops.run_doctor(app, args)
        if args.command == "tokens" and args.tokens_command == "list":
            return await cli_ops.run_tokens_list(app, args)
        if args.command == "tokens":
            output = codec.decode(args.output)
            token = await app.complete_token(args.token_id, output)
            return codec.encode(token, what="token") if args.json else f"token {token.id} completed"
        return await cli_jobs.run_maintenance(app, args)


async def _supervise(app: App, args: argparse.Namespace) -> str | None:
    from flowq.worker_command import supervisor_of

    supervisor = supervisor_of(app, args)
    if args.once:
        result = await supervisor.run_once()
        if args.json:
            from flowq import codec

            return codec.encode(result, what="supervisor result")
        return ", ".join(
            f"{name.replace('_', ' ')}: {count}" for name, count in asdict(result).items()
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("flowq").info("flowq: supervisor on %r every %gs", app.store, args.interval)
    async with anyio.create_task_group() as tasks:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for received in signals:
                    logging.getLogger("flowq").info(
                        "flowq: %s received; supervisor stops", signal.Signals(received).name
                    )
                    tasks.cancel_scope.cancel()
                    return

        tasks.start_soon(stop_on_signal)
        await supervisor.run()
    return None


async def _migrate(url: str, schema: str | None) -> str:
    app = App(url, schema=schema)
    try:
        applied = await app.migrate()
    finally:
        await app.close()
    if applied:
        return f"applied {len(applied)} migration(s) to {app.store!r}: {', '.join(applied)}"
    return f"{app.store!r} is up to date"


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc}") from None


async def _replay(history: bytes, target: str) -> str:
    from flowq.replayer import replay

    workflow = _load_workflow(target)
    result = await replay(history, workflow)
    return (
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


def _dispatch(args: argparse.Namespace) -> str | None:
    """Run the command; return what to print on stdout."""
    if args.command == "demo":
        from flowq import demo

        asyncio.run(demo.run(args.demo_database_url))
        return None
    if args.command == "replay":
        return asyncio.run(_replay(_read(args.file), args.workflow))
    if args.command == "migrate" and args.sql:
        from flowq.cli_jobs import migrate_sql

        url = args.database_url or (DEFAULT_DATABASE_URL if args.embedded else None)
        if url is None:
            raise ValidationError(f"{_NO_URL}; --sql needs it to know the kind of database")
        kind = "postgresql" if url.startswith("postgres") else "sqlite"
        return migrate_sql(kind, args.schema or None)
    if args.command == "worker":
        from flowq import worker_command

        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
        if args.database_url or args.embedded:
            args.database_url = _database_url(args)
        elif not worker_command.names_an_app(args.target):
            raise ValidationError(f"{_NO_URL}, or name a flowq.App as MODULE:ATTR")
        asyncio.run(worker_command.run_worker(args))
        return None
    url = _database_url(args)
    if args.command == "dashboard":
        try:
            from flowq.dashboard.serve import serve
        except ImportError as exc:
            raise ValidationError(str(exc)) from None
        schema = args.schema or None
        asyncio.run(
            serve(url, host=args.host, port=args.port, read_only=args.read_only, schema=schema)
        )
        return None
    if args.command == "migrate":
        return asyncio.run(_migrate(url, args.schema or None))
    return asyncio.run(_run_database_command(args, url))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowq`` command line; return the exit status (0 done, 1 a flowq
    error printed as one line on stderr, 2 a usage error, 130 interrupted)."""
    parser = _parser()
    try:
        _environment_defaults(parser)
        args = parser.parse_args(argv)
        printed = _dispatch(args)
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
    if printed is not None:
        print(printed)
    return 0


def _first(group: BaseExceptionGroup[FlowqError]) -> BaseException:
    """The first leaf of an exception group (task groups wrap errors in groups)."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


if __name__ == "__main__":
    sys.exit(main())
