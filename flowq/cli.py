"""The ``flowq`` command: ``flowq migrate``, ``flowq demo``."""

from __future__ import annotations

import argparse
import asyncio
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
        else:
            from flowq import demo

            asyncio.run(demo.run(args.database_url))
    except FlowqError as exc:
        print(f"flowq: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
