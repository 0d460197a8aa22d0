"""The dashboard in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against a real server and worker process.

Set ``FLOWQ_DASHBOARD_SCREENSHOTS=1`` to save the screenshots docs/dashboard.md shows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import flowq
from tests.dashboard.server import running_server
from tests.dashboard.workloads import Workloads, register

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parents[2] / "docs"
T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) and not shutil.which(
        "chromium"
    ):
        pytest.fail("Chromium is missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--disable-gpu"]:  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], T], what: str, timeout: float = 20) -> T:
    """``check()``'s first truthy value, looking again until ``timeout`` seconds pass.

    An element replaced while ``check`` reads it (a live update swapping the part of
    the page it belongs to: what these tests wait for) counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def with_app(url: str, action: Callable[[flowq.App, Workloads], Any]) -> Any:
    """Run ``action(app, workloads)`` on an App of the test database."""

    async def run() -> Any:
        registry = flowq.Registry()
        workloads = register(registry)
        async with flowq.App(url, registry=registry, auto_migrate=True) as app:
            return await action(app, workloads)

    return asyncio.run(run())


def job_status(url: str, job_id: int) -> str:
    async def read(app: flowq.App, _: Workloads) -> str:
        job = await app.get_job(job_id)
        return "" if job is None else job.status.value

    return str(with_app(url, read))


def text(browser: WebDriver, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def screenshot(browser: WebDriver, name: str) -> None:
    if os.environ.get("FLOWQ_DASHBOARD_SCREENSHOTS") == "1":
        browser.save_screenshot(str(DOCS / f"dashboard-{name}.png"))


def accept_confirm(browser: WebDriver) -> None:
    alert = wait_for(lambda: _alert(browser), "the confirmation dialog", 5)
    alert.accept()


def _alert(browser: WebDriver) -> Any:
    try:
        return browser.switch_to.alert
    except NoAlertPresentException:
        return None


def test_overview_filters_timeline_and_escaping(browser: WebDriver, postgres_url: str) -> None:
    """Overview counts and the worker seen, filtering the jobs list, a job's timeline
    with a step and a wait, and a hostile payload and its error's traceback shown as
    text (no script runs)."""

    async def seed(app: flowq.App, w: Workloads) -> dict[str, int]:
        ids = {"onboarding": await app.start(w.onboarding, {"user_id": 7}, tags=["signup"])}
        for n in range(3):
            await app.start(w.child, n, tags=["batch"])
        ids["evil"] = await app.start(w.child, 1, tags=["<b>x</b>"])
        ids["broken"] = await app.start(w.broken, {"message": "<script>alert(1)</script>"})
        ids["parent"] = await app.start(w.parent, 5)
        return ids

    ids = with_app(postgres_url, seed)
    with running_server(postgres_url) as base:
        wait_for(lambda: job_status(postgres_url, ids["broken"]) == "failed", "the failure")
        wait_for(lambda: job_status(postgres_url, ids["onboarding"]) == "waiting", "the wait")
        wait_for(lambda: job_status(postgres_url, ids["parent"]) == "completed", "the parent")
        browser.get(base + "/")
        assert text(browser, '[data-status="failed"]') == "1"
        assert "onboarding" in text(browser, "#per-workflow")
        assert text(browser, "#workers-count") == "1"  # the server's worker, seen
        assert "No worker seen" not in text(browser, "#workers")
        screenshot(browser, "overview")

        browser.get(base + "/jobs")
        Select(browser.find_element(By.NAME, "status")).select_by_value("failed")
        browser.find_element(By.ID, "apply").click()
        wait_for(lambda: "status=failed" in browser.current_url, "the filtered list")
        rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-job]")
        assert [r.get_attribute("data-job") for r in rows] == [str(ids["broken"])]
        browser.get(base + "/jobs")
        screenshot(browser, "jobs")

        browser.get(f"{base}/jobs/{ids['onboarding']}")
        kinds = [r.get_attribute("data-kind") for r in
                 browser.find_elements(By.CSS_SELECTOR, "#timeline .tl-row")]  # fmt: skip
        assert kinds[:2] == ["step", "wait"] and "fetch_user" in text(browser, "#timeline")
        assert "wakes at" in text(browser, "#timeline")
        screenshot(browser, "job")

        browser.get(f"{base}/jobs/{ids['parent']}")
        browser.find_element(By.PARTIAL_LINK_TEXT, "started child").click()
        wait_for(lambda: "· child" in text(browser, "h1"), "the child's page")

        browser.get(f"{base}/jobs/{ids['broken']}")
        assert _alert(browser) is None  # the payload's script did not run
        assert "<script>alert(1)</script>" in text(browser, "#payload")
        assert "<script>alert(1)</script>" in text(browser, "#errors")
        traceback = text(browser, "#errors details.traceback pre")  # the newest: unfolded
        assert "Traceback (most recent call last)" in traceback
        assert "RuntimeError: <script>alert(1)</script>" in traceback


def test_token_completion_updates_the_job_page_without_reload(
    browser: WebDriver, postgres_url: str
) -> None:
    """A job waiting on a token: its page shows the wait; completing the token from
    elsewhere makes the open page show the job completed, in place (the page's own
    JavaScript state survives). Then a token completed through the form resumes its job."""

    async def seed(app: flowq.App, w: Workloads) -> list[int]:
        return [await app.start(w.approval, {}), await app.start(w.approval, {})]

    first, second = with_app(postgres_url, seed)
    with running_server(postgres_url) as base:
        for job_id in (first, second):
            wait_for(lambda j=job_id: job_status(postgres_url, j) == "waiting", "the token wait")
        browser.get(f"{base}/jobs/{first}")
        assert "waiting" in text(browser, "h1")
        assert "token" in text(browser, "#timeline")
        browser.execute_script("window.__notReloaded = true;")

        async def complete(app: flowq.App, _: Workloads) -> None:
            [token] = await app.get_tokens(job_id=first, status="waiting")
            await app.complete_token(token.id, {"approved": True})

        with_app(postgres_url, complete)
        wait_for(lambda: "completed" in text(browser, "h1"), "the page to show completion")
        assert browser.execute_script("return window.__notReloaded === true;")
        assert '"approved": true' in text(browser, "#output")

        browser.get(base + "/tokens")
        screenshot(browser, "tokens")
        row = browser.find_element(By.CSS_SELECTOR, "tr[data-token]")
        row.find_element(By.NAME, "output").send_keys('"ok"')
        row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        accept_confirm(browser)
        wait_for(lambda: "note=completed" in browser.current_url, "the redirect")
        assert "The token was completed" in text(browser, "#note")
        wait_for(lambda: job_status(postgres_url, second) == "completed", "the job to resume")


def test_retry_a_failed_job_from_its_page(browser: WebDriver, postgres_url: str) -> None:
    """The Retry button (confirmed) makes the failed job run again."""

    async def seed(app: flowq.App, w: Workloads) -> int:
        return await app.start(w.broken, {})

    job_id = with_app(postgres_url, seed)
    with running_server(postgres_url) as base:
        wait_for(lambda: job_status(postgres_url, job_id) == "failed", "the failure")
        browser.get(f"{base}/jobs/{job_id}")
        browser.find_element(By.XPATH, "//button[text()='Retry']").click()
        accept_confirm(browser)
        wait_for(lambda: "note=retried" in browser.current_url, "the redirect")
        assert "will run again" in text(browser, "#note")

        async def attempts(app: flowq.App, _: Workloads) -> int:
            job = await app.get_job(job_id)
            return 0 if job is None else job.attempts

        wait_for(lambda: with_app(postgres_url, attempts) == 2, "the second attempt")


def test_read_only_and_auth_refuse(browser: WebDriver, postgres_url: str) -> None:
    """Read-only: no action buttons, and a forged POST from the page gets 403. With a
    token and no credentials: 401."""

    async def seed(app: flowq.App, w: Workloads) -> int:
        return await app.start(w.broken, {})

    job_id = with_app(postgres_url, seed)
    with running_server(postgres_url, "--read-only") as base:
        wait_for(lambda: job_status(postgres_url, job_id) == "failed", "the failure")
        browser.get(f"{base}/jobs/{job_id}")
        assert "read-only" in text(browser, "header")
        assert browser.find_elements(By.CSS_SELECTOR, "form[method=post]") == []
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"fetch('/jobs/{job_id}/retry', {{method: 'POST', body: 'csrf=x',"
            " headers: {'Content-Type': 'application/x-www-form-urlencoded'}})"
            ".then(r => done(r.status));"
        )
        assert status == 403
    assert job_status(postgres_url, job_id) == "failed"
    with running_server(postgres_url, "--token", "browser-secret") as base:
        browser.get(base + "/")  # the browser gets a 401 and asks for credentials
        assert "Overview" not in browser.page_source
        browser.get(base.replace("http://", "http://admin:browser-secret@") + "/")
        assert text(browser, "h1") == "Overview"
