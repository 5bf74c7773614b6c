"""A real headless Chromium drives ``pulse-tui serve``: the page loads, the terminal shows the
app, keys typed in the browser switch panes and create a cohort that lands in the database."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import FIXED_NOW_MS

from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store.connection import connect
from tests.serve.serve_helpers import running_serve

CHROMIUM = Path(os.environ.get("PULSE_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ANSI = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|.)")

pytestmark = pytest.mark.slow


def _playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (it is in the test extra)")
    return sync_playwright


class Screen:
    """What the browser's terminal received over the websocket, as plain text."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def on_frame(self, payload: bytes | str) -> None:
        if isinstance(payload, bytes):
            self.chunks.append(payload)

    def text(self, since: int = 0) -> str:
        raw = b"".join(self.chunks[since:]).decode("utf-8", "replace")
        return ANSI.sub("", raw)


def _seed_site(db: Path) -> None:
    conn = connect(db)
    write_batch(conn, [NewEvent("e1", "acme", "pageview", FIXED_NOW_MS, "s1", "u1",
                                "https://acme.test/", None, "US", "desktop")], FIXED_NOW_MS)
    conn.close()


def _cohort_names(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM cohorts")]
    finally:
        conn.close()


@contextmanager
def browsing(served, token: str):
    """A headless Chromium on the served page; a screenshot is kept when the body fails."""
    sync_playwright = _playwright()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 720})
        screen = Screen()
        page.on("websocket", lambda ws: ws.on("framereceived", screen.on_frame))

        def until(predicate, what: str, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}")
                page.wait_for_timeout(50)  # lets Playwright deliver websocket frames

        try:
            response = page.goto(f"{served.base}/?token={token}")
            assert response is not None and response.status == 200
            assert "token" not in page.url  # traded for a cookie, out of the address bar
            page.wait_for_selector("body.-first-byte", timeout=30_000)
            until(lambda: "1 Live" in screen.text(), "the app in the terminal")
            page.click(".xterm-screen")
            yield page, screen, until
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / f"serve-browser-{int(time.time())}.png"
            page.screenshot(path=str(shot))
            print(f"screenshot of the page: {shot}")
            print(f"terminal text seen:\n{screen.text()[-2000:]}")
            print(f"serve output:\n{served.output()}")
            raise
        finally:
            browser.close()


def test_browser_switches_panes_and_creates_a_cohort(pulse_settings: Settings) -> None:
    _playwright()
    _seed_site(pulse_settings.db)
    token = "browser-test-token-0123456789"
    with running_serve(pulse_settings, "--token", token) as served, \
            browsing(served, token) as (page, screen, until):
        mark = len(screen.chunks)
        page.keyboard.press("3")
        until(lambda: "cohort(s)" in screen.text(mark), "the Cohorts pane")
        mark = len(screen.chunks)
        page.keyboard.press("N")  # a static cohort: a name is all it needs
        until(lambda: "Name" in screen.text(mark), "the cohort editor")
        page.keyboard.type("Launch watchers")
        page.keyboard.press("Control+s")
        until(lambda: "Launch watchers" in _cohort_names(pulse_settings.db),
              "the cohort in the database")
    log_text = pulse_settings.log_file.read_text(encoding="utf-8")
    assert re.search(r"session \d+ opened", log_text)
    assert re.search(r"session \d+ closed", log_text)
    assert token not in log_text


def test_browser_read_only_session_shows_but_does_not_write(pulse_settings: Settings) -> None:
    _playwright()
    _seed_site(pulse_settings.db)
    token = "browser-test-token-read-only"
    with running_serve(pulse_settings, "--token", token, "--read-only") as served, \
            browsing(served, token) as (page, screen, until):
        until(lambda: "read-only" in screen.text(), "the read-only mark in the header")
        mark = len(screen.chunks)
        page.keyboard.press("3")
        until(lambda: "cohort(s)" in screen.text(mark), "the Cohorts pane")
        assert "New static" not in screen.text(mark)  # not offered in the footer
        mark = len(screen.chunks)
        page.keyboard.press("N")
        until(lambda: "Read-only session" in screen.text(mark), "the refusal")
    assert _cohort_names(pulse_settings.db) == []
