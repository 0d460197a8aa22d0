"""Fixtures for the dashboard: the test workflows, and an HTTP client that talks
in-process to the dashboard on ``app`` (an App on every kind of store, from
``tests/conftest.py``)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

import flowq
from flowq.dashboard import create_app
from tests.dashboard.workloads import Workloads, register


@pytest.fixture
def workloads(registry: flowq.Registry) -> Workloads:
    """The test workflows, registered."""
    return register(registry)


def client_for(dashboard: object) -> httpx.AsyncClient:
    """An HTTP client that calls the ASGI app in this event loop."""
    transport = httpx.ASGITransport(app=dashboard)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: flowq.App) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the dashboard (read-write, no auth)."""
    async with client_for(create_app(app)) as http:
        yield http


async def csrf_of(client: httpx.AsyncClient, path: str = "/") -> str:
    """The CSRF token a page's forms carry (the page sets the cookie)."""
    page = await client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    if found is None:
        assert client.cookies.get("flowq_csrf"), "the page set no CSRF cookie"
        return str(client.cookies["flowq_csrf"])
    return found.group(1)
