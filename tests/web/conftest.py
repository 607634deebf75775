"""Browser fixtures: Debian's chromium driven by playwright (``playwright install`` is never run),
against the live service over corpus/ (``live_url``, shared with the service tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LIVE_ADMIN_KEY, LIVE_READ_KEY, REPO  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
# Tests that write use this collection only: others rely on "default" holding exactly corpus/.
WEB_COLLECTION = "web-test"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One chromium for the whole session; each test gets its own context (fresh sessionStorage)."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A playwright page that records script errors, so that a test fails on any of them."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def open(self, key: str | None) -> None:
        """Load the page and, when ``key`` is given, enter it in the key prompt."""
        page = self.page
        page.goto(self.base_url + "/")
        page.wait_for_selector("body[data-ready]")
        if key is None:
            return
        page.get_by_label("API key", exact=True).fill(key)
        page.get_by_label("API key", exact=True).press("Enter")
        page.wait_for_selector("body[data-ready=admin], body[data-ready=read]")

    def ask(self, question: str, *, collection: str = "default", generator: str = "extractive") -> None:
        """Ask with the keyboard (Enter submits) and wait for the verified answer."""
        page = self.page
        page.wait_for_selector(f"#collection option[value='{collection}']", state="attached")
        page.select_option("#collection", collection)
        page.select_option("#generator", generator)
        page.get_by_label("Question").fill(question)
        page.get_by_label("Question").press("Enter")
        page.wait_for_selector("#answer[data-state=done], #answer[data-state=error]", timeout=60_000)

    def upload(self, files: dict[str, str], collection: str = WEB_COLLECTION) -> None:
        """Upload ``{name: text}`` through the documents section and wait for the outcomes."""
        page = self.page
        page.fill("#docs-collection", collection)
        page.set_input_files(
            "#upload-files",
            files=[
                {"name": name, "mimeType": "text/markdown", "buffer": text.encode()}
                for name, text in files.items()
            ],
        )
        page.get_by_role("button", name="Upload", exact=True).click()
        page.wait_for_selector("#upload-outcomes li.outcome")


@pytest.fixture
def web(browser: Any, live_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = Page(context.new_page(), live_url)
    page.page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()
    assert not page.errors, f"script errors on the page: {page.errors}"
