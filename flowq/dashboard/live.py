"""Server-sent events that tell a page its data changed.

Each stream computes a small fingerprint of what its page shows (a job's state, the
first page of a job list, the counts of the overview) and sends ``change`` when it
differs. It looks again when the store hints that jobs moved (NOTIFY on PostgreSQL,
this process's writes elsewhere) and at least every ``poll_seconds``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from flowq.client import App
from flowq.errors import FlowqError

__all__ = ["LiveEvents"]

log = logging.getLogger("flowq.dashboard")

_Fingerprint = Callable[[Request], Awaitable[Any]]


class LiveEvents:
    """The ``/live`` endpoint (a raw ASGI app: it streams until the client leaves).

    Args:
        app: The flowq App whose store is watched.
        fingerprint: What the requesting page shows, reduced to a comparable value.
        poll_seconds: The longest time between two looks.
    """

    def __init__(self, app: App, fingerprint: _Fingerprint, poll_seconds: float = 2.0) -> None:
        self.app = app
        self.fingerprint = fingerprint
        self.poll_seconds = poll_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),
            ],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        hint = anyio.Event()
        woken = [hint]

        def on_wake(_hint: str) -> None:
            woken[0].set()

        async with anyio.create_task_group() as tasks:

            async def until_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tasks.cancel_scope.cancel()

            async def listen() -> None:
                try:
                    await self.app.store.listen(on_wake)
                except (FlowqError, OSError) as exc:  # polling still works
                    log.info("flowq dashboard: no wake-ups from the store (%s)", exc)

            tasks.start_soon(until_disconnect)
            tasks.start_soon(listen)
            last: Any = await self._look(request)
            while True:
                with anyio.move_on_after(self.poll_seconds):
                    await woken[0].wait()
                woken[0] = anyio.Event()
                current = await self._look(request)
                body = b": ping\n\n"
                if current != last:
                    last = current
                    body = b"event: change\ndata: {}\n\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _look(self, request: Request) -> Any:
        try:
            return await self.fingerprint(request)
        except FlowqError as exc:
            log.info("flowq dashboard: live look failed (%s)", exc)
            return math.nan  # never equal: the page reloads and shows the error
