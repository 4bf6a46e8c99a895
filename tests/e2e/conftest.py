"""Fixtures of the browser tests: the live stack and a headless Debian Chromium driven by Playwright.

No browser is ever downloaded: scripts/ensure-chromium.sh installs Debian's `chromium` package, and
Playwright launches /usr/bin/chromium. Screenshots go to test-artifacts/portal/ (not committed).
"""

from __future__ import annotations

import os
import re

import pytest

from tests.e2e.live import ARTIFACTS, LiveStack

CHROMIUM = os.environ.get("SOCORG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SHOTS = ARTIFACTS / "portal"


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (as root) to install Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def live(request, stack):
    """The live stack; tests marked `no_workers` (pages that need no events) skip the consumers' group joins."""
    if request.node.get_closest_marker("no_workers") is None:
        stack.start_workers()
    running = LiveStack(stack).start()
    yield running
    running.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "no_workers: the live stack runs without event workers")


class Person:
    """One signed-in user in their own browser context (cookies), with a page and screenshot helper."""

    def __init__(self, browser, live, *, role: str, name: str, lang: str = "zh_CN", org: str | None = None,
                 viewport=None):
        self.context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, locale="zh-CN")
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.live = live
        self.role, self.name = role, name
        self.goto(f"/lang/{lang}")
        self.sign_in(org)

    def goto(self, path: str):
        self.page.goto(self.live.url + path)
        return self.page

    def sign_in(self, org: str | None = None) -> None:
        page = self.goto("/signin")
        page.check(f"#role-{self.role}")
        page.fill("#f-sub", self.name)
        if org:
            page.fill("#f-org", org)
        page.locator("form.card button[type=submit]").click()
        page.wait_for_load_state()

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def people(browser, live):
    opened: list[Person] = []

    def open_as(role: str, name: str, **kw) -> Person:
        person = Person(browser, live, role=role, name=name, **kw)
        opened.append(person)
        return person

    yield open_as
    for person in opened:
        person.close()
