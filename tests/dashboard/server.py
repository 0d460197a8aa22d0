"""A dashboard served by uvicorn with a worker beside it, in a process of its own:
``python -m tests.dashboard.server URL PORT [--read-only] [--token TOKEN]``.

Prints ``ready`` once it listens. The browser and live-update tests drive it."""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import uvicorn

import flowq
from flowq.dashboard import create_app, token_auth
from tests.dashboard.workloads import register


async def _serve(url: str, port: int, read_only: bool, token: str | None) -> None:
    registry = flowq.Registry()
    register(registry)
    async with flowq.App(url, registry=registry, auto_migrate=True) as app:
        dashboard = create_app(
            app, read_only=read_only, auth=token_auth(token) if token else None, poll_seconds=0.5
        )
        config = uvicorn.Config(
            dashboard,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        worker = app.create_worker(poll_interval=0.2)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)

            async def announce() -> None:
                while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag
                    await anyio.sleep(0.02)
                print("ready", flush=True)

            tasks.start_soon(announce)
            await server.serve()
            await worker.stop()


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(url: str, *options: str) -> Iterator[str]:
    """Start this module in a subprocess; yield the dashboard's base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.dashboard.server", url, str(port), *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        line = process.stdout.readline()
        if line.strip() != "ready" or time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard server did not start (said {line!r})")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("port", type=int)
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--token")
    args = parser.parse_args()
    asyncio.run(_serve(args.url, args.port, args.read_only, args.token))


if __name__ == "__main__":
    main()
