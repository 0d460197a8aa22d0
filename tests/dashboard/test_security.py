"""Authentication, mounting under a prefix, and errors that show no traceback."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

import flowq
from flowq.dashboard import basic_auth, create_app, is_loopback, token_auth
from flowq.dashboard.serve import auth_from_environment
from tests.dashboard.conftest import client_for, csrf_of
from tests.dashboard.workloads import Workloads

pytestmark = pytest.mark.anyio


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
async def test_token_auth(app: flowq.App) -> None:
    """Bearer token or basic auth with the token as password; anything else is 401."""
    async with client_for(create_app(app, auth=token_auth("s3cret-token"))) as client:
        assert (await client.get("/")).status_code == 401
        refused = await client.get("/", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
        ok = await client.get("/", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert (
            await client.get("/jobs", headers=_basic("anyone", "s3cret-token"))
        ).status_code == 200
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/live")).status_code == 401


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
async def test_basic_auth(app: flowq.App, caplog: pytest.LogCaptureFixture) -> None:
    """User and password must both match; refusals log no credentials."""
    caplog.set_level(logging.DEBUG)
    async with client_for(create_app(app, auth=basic_auth("ops", "pa55word"))) as client:
        assert (await client.get("/", headers=_basic("ops", "pa55word"))).status_code == 200
        for user, password in [("ops", "wrong"), ("other", "pa55word"), ("", "")]:
            assert (await client.get("/", headers=_basic(user, password))).status_code == 401
        bad = await client.get("/", headers={"Authorization": "Basic !!!"})
        assert bad.status_code == 401
    assert "pa55word" not in caplog.text


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
async def test_the_host_apps_own_auth_hook(app: flowq.App) -> None:
    """``auth`` may be any (async) check of the request, e.g. the host app's session."""

    async def check(request: Request) -> bool:
        return request.headers.get("x-user") == "admin"

    async with client_for(create_app(app, auth=check)) as client:
        assert (await client.get("/")).status_code == 401
        assert (await client.get("/", headers={"x-user": "admin"})).status_code == 200


def test_empty_credentials_are_refused() -> None:
    """An empty token, user or password is a mistake, not an open door."""
    with pytest.raises(ValueError, match="token"):
        token_auth("")
    with pytest.raises(ValueError, match="user and password"):
        basic_auth("ops", "")


def test_loopback_addresses() -> None:
    """Only addresses of this machine count as loopback."""
    assert all(is_loopback(h) for h in ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
    assert not any(is_loopback(h) for h in ["0.0.0.0", "::", "10.1.2.3", "example.com", ""])  # noqa: S104


def test_settings_decide_the_auth() -> None:
    """Loopback runs without credentials; any other address needs them; half a
    user/password pair is an error."""
    assert auth_from_environment("127.0.0.1", {}) is None
    with pytest.raises(flowq.ValidationError, match="FLOWQ_DASHBOARD_TOKEN"):
        auth_from_environment("0.0.0.0", {})  # noqa: S104
    assert auth_from_environment("0.0.0.0", {"FLOWQ_DASHBOARD_TOKEN": "t"}) is not None  # noqa: S104
    both = {"FLOWQ_DASHBOARD_USER": "u", "FLOWQ_DASHBOARD_PASSWORD": "p"}
    assert auth_from_environment("10.0.0.1", both) is not None
    with pytest.raises(flowq.ValidationError, match="both"):
        auth_from_environment("10.0.0.1", {"FLOWQ_DASHBOARD_USER": "u"})
    # Credentials apply on loopback too when set.
    assert auth_from_environment("127.0.0.1", {"FLOWQ_DASHBOARD_TOKEN": "t"}) is not None


@pytest.mark.parametrize("database_url", ["memory", "sqlite"], indirect=True)
async def test_mounted_under_a_prefix(app: flowq.App, workloads: Workloads) -> None:
    """Mounted at /ops/flowq in a host app, links, forms and redirects keep the prefix."""
    job_id = await app.start(workloads.broken, {})
    await app.create_worker().run_until_idle()
    host = Starlette(routes=[Mount("/ops/flowq", app=create_app(app))])
    async with client_for(host) as client:
        page = await client.get(f"/ops/flowq/jobs/{job_id}")
        assert page.status_code == 200
        assert 'href="/ops/flowq/jobs"' in page.text
        assert f'action="/ops/flowq/jobs/{job_id}/retry"' in page.text
        assert "path=/ops/flowq" in page.headers["set-cookie"].lower()
        csrf = await csrf_of(client, f"/ops/flowq/jobs/{job_id}")
        answer = await client.post(f"/ops/flowq/jobs/{job_id}/retry", data={"csrf": csrf})
        assert answer.headers["location"] == f"/ops/flowq/jobs/{job_id}?note=retried"


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
async def test_mounted_in_fastapi(app: flowq.App) -> None:
    """The dashboard mounts in a FastAPI app like any ASGI app."""
    import fastapi

    api = fastapi.FastAPI()
    api.mount("/flowq", create_app(app, read_only=True))
    async with client_for(api) as client:
        assert (await client.get("/flowq/")).status_code == 200
        assert (await client.get("/flowq/jobs")).status_code == 200


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
async def test_an_unexpected_error_shows_no_traceback(
    app: flowq.App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug behind a page: a plain 500 page; the details go to the log only."""

    async def broken(**_: object) -> list[flowq.Job]:
        raise RuntimeError("internal detail /srv/secret.py")

    monkeypatch.setattr(app, "get_jobs", broken)
    async with client_for(create_app(app)) as client:
        page = await client.get("/jobs")
    assert page.status_code == 500
    assert "Traceback" not in page.text and "secret.py" not in page.text
    assert "something went wrong" in page.text
    assert "internal detail" in caplog.text


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
async def test_metrics_can_be_turned_off(app: flowq.App) -> None:
    """``metrics=False`` serves no /metrics."""
    async with client_for(create_app(app, metrics=False)) as client:
        assert (await client.get("/metrics")).status_code == 404


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
async def test_bad_settings(app: flowq.App) -> None:
    """A non-positive poll interval is refused."""
    with pytest.raises(flowq.ValidationError, match="poll_seconds"):
        create_app(app, poll_seconds=0)


async def test_without_auth_pages_are_open(client: httpx.AsyncClient) -> None:
    """Without ``auth`` every page is open (the CLI only allows that on loopback)."""
    assert (await client.get("/")).status_code == 200
