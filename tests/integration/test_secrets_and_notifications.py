"""Passwords in database URLs are never printed; a stray NOTIFY logs one line."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import flowq
from flowq import cli
from flowq.store.sql.postgres import CHANNEL, PostgresDialect
from flowq.store.sql.urls import safe_url
from tests.pg_server import asyncpg_dsn

pytestmark = pytest.mark.anyio

SECRET = "s3cret-pw"


def _with_passwords(url: str) -> str:
    """``url`` with a password in the user part and in ``?password=``."""
    parsed = make_url(url).set(password=SECRET)
    return parsed.update_query_dict({"password": SECRET}).render_as_string(hide_password=False)


class _Signal(logging.Handler):
    """Sets ``event`` when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://u:{SECRET}@h/db?password={SECRET}&application_name=x",
        f"postgresql://u@h/db?sslpassword={SECRET}",
        f"postgresql://u:{SECRET}@h:not-a-port/db?PWD={SECRET}",
        f"mysql://u:{SECRET}@h/db",
    ],
)
def test_safe_url_hides_every_password(url: str) -> None:
    """safe_url hides the userinfo password and password-like query values, also in
    a URL that does not parse."""
    shown = safe_url(url)
    assert SECRET not in shown and "***" in shown


async def test_errors_and_reprs_hide_passwords(tmp_path: Any) -> None:
    """An unreachable PostgreSQL URL with passwords: the error, repr(App) and
    repr(store) show *** instead; an unsupported URL's error too."""
    url = f"postgresql+asyncpg://flowq:{SECRET}@127.0.0.1:1/db?password={SECRET}"
    app = flowq.App(url)
    assert SECRET not in repr(app) and SECRET not in repr(app.store) and "***" in repr(app)
    with pytest.raises(flowq.DatabaseUnavailableError) as raised:
        await app.open()
    assert SECRET not in str(raised.value) and "***" in str(raised.value)
    with pytest.raises(flowq.ValidationError) as refused:
        flowq.App(f"mysql://u:{SECRET}@h/db?password={SECRET}")
    assert SECRET not in str(refused.value)


@pytest.mark.postgres
def test_cli_output_hides_passwords(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`flowq migrate` names the database without its passwords (PostgreSQL accepts
    any password here: the server trusts local connections)."""
    assert cli.main(["migrate", "--database-url", _with_passwords(postgres_url)]) == 0
    out, err = capsys.readouterr()
    assert "up to date" in out
    assert SECRET not in out + err and "***" in out


async def test_listen_warnings_hide_passwords(caplog: pytest.LogCaptureFixture) -> None:
    """The LISTEN connection's "cannot connect" warning names the URL without passwords."""
    url = make_url(f"postgresql+asyncpg://flowq:{SECRET}@127.0.0.1:1/db?password={SECRET}")
    caplog.set_level(logging.WARNING, logger="flowq")
    warned = _Signal("cannot LISTEN")
    logging.getLogger("flowq").addHandler(warned)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(PostgresDialect().listen, url, lambda _hint: None)
                await warned.event.wait()
                tasks.cancel_scope.cancel()
    finally:
        logging.getLogger("flowq").removeHandler(warned)
    messages = [r.getMessage() for r in caplog.records if "cannot LISTEN" in r.getMessage()]
    assert messages and all(SECRET not in m and "***" in m for m in messages)


@pytest.mark.postgres
async def test_a_malformed_notification_logs_one_warning(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A NOTIFY on flowq's channel that flowq did not send ("cancel:abc") logs one
    WARNING line without a traceback; the worker keeps running jobs."""
    registry = flowq.Registry()

    @registry.workflow(name="wf")
    async def wf(payload: Any) -> str:
        return "done"

    caplog.set_level(logging.WARNING)
    dsn = asyncpg_dsn(postgres_url)
    async with flowq.App(postgres_url, registry=registry) as app:
        worker = app.create_worker(poll_interval=30)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            sender = await asyncpg.connect(dsn)
            try:
                with anyio.fail_after(10):
                    while not any("malformed" in r.getMessage() for r in caplog.records):
                        await sender.execute(f"NOTIFY {CHANNEL}, 'cancel:abc'")
                        await anyio.sleep(0.05)
            finally:
                await sender.close()
            job_id = await app.add_job("wf")
            assert await app.result(job_id, timeout=10) == "done"
            await worker.stop()
    noted = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert noted and all(r.levelno == logging.WARNING and r.exc_info is None for r in noted)
    assert "cancel:abc" in noted[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.postgres
@pytest.mark.parametrize("spelling", ["ssl", "sslmode"])
async def test_a_tls_mode_in_the_url_reaches_every_connection(
    postgres_url: str, spelling: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``?ssl=disable`` (the asyncpg dialect's spelling) and ``?sslmode=disable``
    (libpq's) both work for the pool and for the worker's LISTEN connection: a job
    another process adds wakes the worker at once (its poll is 60 s away), and no
    "cannot LISTEN" warning is logged."""
    registry = flowq.Registry()

    @registry.workflow(name="wf")
    async def wf(payload: Any) -> str:
        return "done"

    caplog.set_level(logging.WARNING)
    given = make_url(postgres_url).difference_update_query(["ssl", "sslmode"])
    url = given.update_query_dict({spelling: "disable"}).render_as_string(False)
    database = make_url(postgres_url).database
    async with flowq.App(url, registry=registry) as app, flowq.App(url) as other:
        worker = app.create_worker(poll_interval=60)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            with anyio.fail_after(10):  # until the worker's LISTEN connection is up
                while not await _listening(other, database):  # noqa: ASYNC110 (the server's view)
                    await anyio.sleep(0.02)
            job_id = await other.add_job("wf")
            assert await app.result(job_id, timeout=5) == "done"
            await worker.stop()
    assert not [r for r in caplog.records if "cannot LISTEN" in r.getMessage()]


async def _listening(app: flowq.App, database: str | None) -> bool:
    """Whether a session of ``database`` has run LISTEN (the worker's connection)."""
    store: Any = app.store
    async with store.engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = :database AND query LIKE 'LISTEN%'"
            ),
            {"database": database},
        )
        return bool(result.scalar())
