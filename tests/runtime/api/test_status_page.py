"""The status page and the offline API docs in a real headless browser (Debian's chromium, driven by
Playwright, which never downloads a browser here), served by the real ``hubctl serve``.

Every request the browser makes is recorded; anything not addressed to the service is aborted and
fails the test, so "works offline" means the page needed nothing from outside."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.service import Service, make_token

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Browser:
    """One fresh browser profile; ``outside`` lists every request it tried to send off loopback."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.outside: list[str] = []
        self.page = context.new_page()
        context.route("**/*", self._only_loopback)

    def _only_loopback(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "about:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not (os.path.exists(CHROMIUM) and shutil.which("chromium")):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/setup.sh --system installs it")
        pytest.skip("chromium not installed (scripts/setup.sh --system)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            yield Browser(context)
        finally:
            context.close()


def test_status_page_in_a_browser(pg_service: Service, browser: Browser, tmp_path: Path) -> None:
    svc = pg_service
    job = svc.wait_job(svc.post("/api/v1/checkpoints", {"reason": "before <b>upgrade</b>"}).json()["id"])
    cp = job["result"]
    assert svc.post(f"/api/v1/checkpoints/{cp['uuid']}/protect").status_code == 200
    page = browser.page

    page.goto(svc.url + "/status")
    assert page.url == svc.url + "/status/login"  # not signed in: the form
    page.fill("#token", "hub_0123456789abcdef_" + "x" * 43)
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "unknown or revoked token"

    page.fill("#token", svc.token)
    page.click("button[type=submit]")
    page.wait_for_url(svc.url + "/status")
    page.screenshot(path=str(tmp_path / "status.png"), full_page=True)

    assert page.locator("#overall").inner_text() in ("healthy", "degraded", "critical")
    health = page.locator("#health").inner_text()
    assert "database" in health and "proxmox" in health
    row = page.locator("#checkpoints tbody tr", has_text=cp["uuid"])
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert {"manual", "completed", "protected", "before <b>upgrade</b>"} <= set(cells)  # escaped, shown
    jobs = page.locator("#jobs tbody tr", has_text="checkpoint.create").inner_text()
    assert "succeeded" in jobs and "api:tests" in jobs and "steps" in jobs
    audit = page.locator("#audit").inner_text()
    assert "checkpoint.protect" in audit and "job.submit" in audit
    assert browser.outside == []

    (cookie,) = [c for c in browser.context.cookies() if c["name"] == "hub_status_token"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/status"

    page.click("text=Sign out")
    page.wait_for_url(svc.url + "/status/login")
    page.goto(svc.url + "/status")
    assert page.url == svc.url + "/status/login"


def test_the_docs_work_offline(pg_service: Service, browser: Browser) -> None:
    page = browser.page
    page.goto(pg_service.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Hub API" in page.locator(".swagger-ui .info .title").inner_text()
    page.get_by_text("/api/v1/checkpoints/{uuid}/protect", exact=True).wait_for()
    assert page.locator(".opblock").count() >= 10
    assert browser.outside == []
    html = requests.get(pg_service.url + "/docs", timeout=10).text
    assert "http://" not in html and "https://" not in html and "//" not in html.replace("://", "")
    assert requests.get(pg_service.url + "/redoc", timeout=10).status_code == 404


def test_the_page_is_authenticated_like_the_api(pg_service: Service) -> None:
    svc = pg_service
    anonymous = requests.get(svc.url + "/status", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303 and anonymous.headers["Location"] == "/status/login"
    with_header = svc.get("/status")
    assert with_header.status_code == 200 and "text/html" in with_header.headers["Content-Type"]
    assert "default-src 'none'" in with_header.headers["Content-Security-Policy"]
    assert with_header.headers["Cache-Control"] == "no-store"

    login = requests.post(
        svc.url + "/status/login", data={"token": svc.token}, allow_redirects=False, timeout=10
    )
    assert login.status_code == 303
    cookie = login.cookies["hub_status_token"]
    jar = {"hub_status_token": cookie}
    assert requests.get(svc.url + "/status", cookies=jar, timeout=10).status_code == 200
    # The cookie opens the read-only page only: the API still wants the header.
    assert requests.get(svc.url + "/api/v1/jobs", cookies=jar, timeout=10).status_code == 401
    assert requests.post(svc.url + "/api/v1/checkpoints", json={}, cookies=jar, timeout=10).status_code == 401

    other = make_token(svc.env, "browser")
    assert svc.env.run("token", "revoke", "browser").returncode == 0
    revoked = requests.get(
        svc.url + "/status", cookies={"hub_status_token": other}, allow_redirects=False, timeout=10
    )
    assert revoked.status_code == 303
    bad = requests.post(svc.url + "/status/login", data={"token": other}, timeout=10)
    assert bad.status_code == 401 and "unknown or revoked token" in bad.text
