"""A polling worker behind PgBouncer in transaction pooling mode (PostgreSQL only)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import flowq
from tests.pg_server import on_the_server

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

registry = flowq.Registry()


@registry.workflow(name="pgbouncer.double")
async def double(payload: dict[str, int], ctx: flowq.Context) -> int:
    """Reports progress (a write from inside the handler) and doubles a number."""
    await ctx.set_progress(50)
    return payload["n"] * 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def pgbouncer(postgres_url: str) -> Iterator[str]:
    """A PgBouncer (transaction pooling) in front of the test database; its URL."""
    with _pgbouncer(postgres_url, ignored="extra_float_digits,options") as url:
        yield url


@pytest.fixture
def pgbouncer_ignoring_search_path(postgres_url: str) -> Iterator[str]:
    """A PgBouncer that drops the search_path startup parameter instead of refusing it."""
    with _pgbouncer(postgres_url, ignored="extra_float_digits,options,search_path") as url:
        yield url


@contextlib.contextmanager
def _pgbouncer(postgres_url: str, *, ignored: str) -> Iterator[str]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        reason = "pgbouncer is not installed (.ci/run installs it)"
        if os.environ.get("FLOWQ_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    url = make_url(postgres_url)
    port = _free_port()
    # A folder the postgres user can read (pytest's tmp_path is private to root).
    folder = Path(tempfile.mkdtemp(prefix="flowq-pgbouncer-"))
    folder.chmod(0o755)
    (folder / "users.txt").write_text(f'"{url.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={url.host} port={url.port or 5432}\n\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\npool_mode = transaction\n"
        f"default_pool_size = 10\nmax_client_conn = 100\n"
        f"ignore_startup_parameters = {ignored}\n"
    )
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "pgbouncer did not start listening"
            time.sleep(0.05)
        bounced = url.set(port=port).update_query_dict({"pgbouncer": "1"})
        yield bounced.render_as_string(hide_password=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if process.stdout is not None:
            process.stdout.close()
        if os.geteuid() == 0:
            subprocess.run(["pkill", "-f", str(folder / "pgbouncer.ini")], check=False)
        shutil.rmtree(folder, ignore_errors=True)


async def test_polling_worker_behind_transaction_pooling(pgbouncer: str) -> None:
    """With ?pgbouncer=1 and notify=False, jobs are added, run and completed through PgBouncer."""
    async with flowq.App(pgbouncer, registry=registry) as app:
        ids = await app.add_jobs([flowq.JobSpec(double, {"n": n}) for n in range(100)])
        ids += [await app.start(double, {"n": n}) for n in range(100, 120)]
        worker = app.create_worker(notify=False, concurrency=10)
        await worker.run_until_idle()
        jobs: list[Any] = [await app.get_job(job_id) for job_id in ids]
        assert [job.output for job in jobs] == [2 * n for n in range(120)]
        assert all(job.progress == 50 for job in jobs)


SCHEMA = "bounced_jobs"


async def test_a_schema_refused_by_pgbouncer_is_a_clear_error(pgbouncer: str) -> None:
    """PgBouncer (before 1.20, or without track_extra_parameters = search_path) refuses
    the search_path startup parameter: the App says so, it does not use public."""
    app = flowq.App(pgbouncer, schema=SCHEMA, registry=registry)
    with pytest.raises(flowq.DatabaseUnavailableError, match="search_path"):
        await app.open()


async def test_a_dropped_search_path_is_refused(
    pgbouncer_ignoring_search_path: str, postgres_url: str
) -> None:
    """A PgBouncer that ignores search_path would send flowq to public's tables: opening
    the App raises SchemaError naming the schema instead."""
    async with flowq.App(postgres_url, schema=SCHEMA, auto_migrate=True):
        pass
    try:
        app = flowq.App(pgbouncer_ignoring_search_path, schema=SCHEMA, registry=registry)
        with pytest.raises(flowq.SchemaError, match=SCHEMA):
            await app.open()
    finally:
        await on_the_server(postgres_url, f"DROP SCHEMA {SCHEMA} CASCADE")


async def test_a_schema_behind_pgbouncer_from_the_database_default(
    pgbouncer_ignoring_search_path: str, postgres_url: str
) -> None:
    """With the search_path set on the server (ALTER DATABASE/ROLE ... SET search_path)
    and ignored by PgBouncer, a polling worker runs jobs in the schema; public's tables
    stay empty."""
    async with flowq.App(postgres_url, schema=SCHEMA, auto_migrate=True):
        pass
    database = make_url(postgres_url).database
    await on_the_server(postgres_url, f'ALTER DATABASE "{database}" SET search_path = {SCHEMA}')
    try:
        async with flowq.App(
            pgbouncer_ignoring_search_path, schema=SCHEMA, registry=registry
        ) as app:
            ids = await app.add_jobs([flowq.JobSpec(double, {"n": n}) for n in range(20)])
            await app.create_worker(notify=False, concurrency=5).run_until_idle()
            assert [await app.result(job_id, timeout=5) for job_id in ids] == [
                2 * n for n in range(20)
            ]
        async with flowq.App(postgres_url, schema="public") as public:
            assert await public.get_jobs() == []
    finally:
        await on_the_server(
            postgres_url,
            f'ALTER DATABASE "{database}" RESET search_path',
            f"DROP SCHEMA {SCHEMA} CASCADE",
        )
