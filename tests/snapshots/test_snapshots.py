"""Snapshots of the live pane and the help screen at 80x24 and 160x48 on fixed data.

Everything on screen is fixed: event ids and timestamps, the clock, relative paths inside a
fixed folder name (no tmp path reaches the screen), no worker and no change watcher.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from pulse_tui.clock import Clock, parse_instant
from pulse_tui.config import Settings
from pulse_tui.store.connection import connect
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.help import HelpScreen
from pulse_tui.tui.screens.live import LiveScreen

NOW = parse_instant("2026-11-25T12:00:00Z")
SIZES = [(80, 24), (160, 48)]

SITES = ("acme-web", "acme-app", "shop")
TYPES = ("pageview", "pageview", "signup", "login", "pageview", "purchase", "click")
COUNTRIES = ("US", "DE", "FR", "GB", "JP", "BR")
DEVICES = ("desktop", "mobile", "tablet")
PATHS = ("/", "/pricing", "/features/cohorts", "/checkout/done",
         "/posts/why-we-left-the-cloud-and-moved-everything-to-one-sqlite-file")
N_EVENTS = 40


def fixed_rows() -> list[tuple]:
    rows = []
    for i in range(N_EVENTS):
        site = SITES[i % 3]
        ts = NOW - (N_EVENTS - i) * 7_000 - (86_400_000 if i < 4 else 0)  # a few yesterday
        rows.append((
            f"evt-{i:04d}", site, TYPES[i % len(TYPES)], ts, f"sess-{i // 4:03d}",
            None if i % 5 == 0 else f"user-{i % 9:02d}",
            f"https://{site}.example{PATHS[i % len(PATHS)]}",
            "https://www.google.com/" if i % 6 == 0 else None,
            COUNTRIES[i % len(COUNTRIES)], DEVICES[i % 3], ts,
        ))
    # data text is shown literally
    rows.append(("evt-markup", "shop", "pageview", NOW - 1_000, "sess-x", "[b]user[/b]",
                 "[bold red]x[/]", None, "US", "desktop", NOW - 1_000))
    return rows


@pytest.fixture
def snap_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    folder = Path("snapdb")
    folder.mkdir()
    db = folder / "pulse.db"
    conn = connect(db)
    conn.executemany("INSERT INTO sites (id, name, domain, created_at) VALUES (?, ?, NULL, ?)",
                     [(s, s, NOW) for s in SITES])
    conn.executemany(
        "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, user_id, "
        "url, referrer, country, device_type, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        fixed_rows())
    conn.close()
    return Settings(db=db, import_dir=folder / "import", export_dir=folder / "exports",
                    log_file=folder / "pulse-tui.log", config_file=folder / "config.toml")


async def wait_for(pilot, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("screen not ready")
        await pilot.pause()
        await asyncio.sleep(0.02)
    await pilot.pause()


def loaded(app) -> bool:
    screen = app.screen
    if not isinstance(screen, LiveScreen):
        return False
    return screen.query_one("#live-table", DataTable).row_count == N_EVENTS + 1


def build_app(settings: Settings):
    return make_app(settings, clock=Clock(NOW), worker=False, watch_changes=False)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_live_pane(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: loaded(app))

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: loaded(app))
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_fixed_data_is_what_the_snapshots_show(snap_settings: Settings) -> None:
    """Guards the fixture: the snapshots only mean something if the data is all there."""
    conn = sqlite3.connect(snap_settings.db)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == N_EVENTS + 1
    finally:
        conn.close()
