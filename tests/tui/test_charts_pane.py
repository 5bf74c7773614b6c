"""Daily charts pane: site and range change the shown totals (keys only)."""

from __future__ import annotations

import sqlite3

from conftest import FIXED_NOW_MS, async_wait_until
from textual.widgets import Static

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.charts import ChartsScreen
from pulse_tui.tui.screens.range_picker import RangePickerScreen
from pulse_tui.tui.screens.site_picker import SitePickerScreen
from tests.tui.tui_helpers import press_until

DAY = 86_400_000


def _seed(conn: sqlite3.Connection) -> None:
    events = []
    # site "alpha": one event per day for 60 days (today included), users u0..u4
    for d in range(60):
        events.append(NewEvent(f"a{d}", "alpha", "pageview", FIXED_NOW_MS - d * DAY, f"sa{d}",
                               f"u{d % 5}"))
    # site "beta": 3 events today, 2 users, 1 session
    for i in range(3):
        events.append(NewEvent(f"b{i}", "beta", "signup", FIXED_NOW_MS - i, "sb", f"v{i % 2}"))
    write_batch(conn, events, FIXED_NOW_MS)


def _totals(app) -> str:
    return str(app.screen.query_one("#charts-totals", Static).render())


async def test_site_and_range_change_the_totals(pulse_settings: Settings,
                                                conn: sqlite3.Connection) -> None:
    _seed(conn)
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await press_until(pilot, ChartsScreen, "2", timeout=5)
        # all sites selected: the pane shows the first site, alpha; 30 days by default
        await async_wait_until(lambda: "events 30 " in _totals(app), timeout=10)
        assert _totals(app).startswith("alpha")
        assert "users 5 " in _totals(app) and "sessions 30 " in _totals(app)
        await pilot.press("right_square_bracket")  # 90 days
        await async_wait_until(lambda: "events 60 " in _totals(app), timeout=10)
        assert app.range_label == "90d"
        await pilot.press("left_square_bracket", "left_square_bracket")  # 30d, then 7d
        await async_wait_until(lambda: "events 7 " in _totals(app), timeout=10)
        assert "events 7 = 0.0%" in _totals(app)  # one a day, as in the 7 days before
        await pilot.press("left_square_bracket")  # today
        await async_wait_until(lambda: "events 1 " in _totals(app), timeout=10)
        # choose site beta with the keyboard
        await press_until(pilot, SitePickerScreen, "s", timeout=5)
        await pilot.press("down", "down", "enter")  # All sites, alpha, beta
        await async_wait_until(lambda: app.site_id == "beta", timeout=5)
        await async_wait_until(lambda: _totals(app).startswith("beta")
                               and "events 3 " in _totals(app), timeout=10)
        assert "users 2 " in _totals(app) and "sessions 1 " in _totals(app)
        # a custom range typed on the keyboard, validated
        await press_until(pilot, RangePickerScreen, "c", timeout=5)
        picker = app.screen
        await pilot.press("ctrl+a", *"2026-13-01", "enter")  # from: not a date
        await pilot.press("enter")
        await async_wait_until(lambda: picker.query_one("#range-from-error").message != "",
                               timeout=5)
        assert isinstance(app.screen, RangePickerScreen)
        picker.query_one("#range-from").value = "2026-11-01"
        picker.query_one("#range-to").value = "2026-11-24"
        picker.query_one("#range-to").focus()
        await pilot.press("enter")
        await async_wait_until(lambda: app.range_label == "2026-11-01..2026-11-24", timeout=5)
        await async_wait_until(lambda: "events 0 " in _totals(app), timeout=10)  # beta: none
