"""Regressions from review: markup in data-made labels, double saves, URL credentials."""

from __future__ import annotations

import sqlite3

from conftest import FIXED_NOW_MS, async_wait_until
from textual.widgets import Select

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
from pulse_tui.tui.screens.cohorts import CohortsScreen
from pulse_tui.tui.screens.live import LiveScreen
from tests.tui.tui_helpers import press_until


async def test_an_event_type_with_broken_markup_is_shown_literally(
        pulse_settings: Settings, conn: sqlite3.Connection) -> None:
    write_batch(conn, [NewEvent("e1", "acme", "sign[/up]", FIXED_NOW_MS, "s1", "u1"),
                       NewEvent("e2", "acme", "[reverse]x", FIXED_NOW_MS, "s1", "u1")],
                FIXED_NOW_MS)
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 30)) as pilot:
        live = app.screen
        assert isinstance(live, LiveScreen)
        await async_wait_until(lambda: len(live.kept) == 2, timeout=10)
        await pilot.press("t")  # opens the type filter: its labels come from the data
        await pilot.pause()
        select = live.query_one("#live-type", Select)
        await pilot.press("down", "enter")
        await async_wait_until(lambda: select.value in ("sign[/up]", "[reverse]x"), timeout=5)
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, LiveScreen)


async def test_saving_twice_quickly_creates_one_cohort(pulse_settings: Settings,
                                                       conn: sqlite3.Connection,
                                                       db_path, monkeypatch) -> None:
    import time

    from pulse_tui.store import cohorts as cohorts_sql

    real_create = cohorts_sql.create_cohort

    def slow_create(*args, **kwargs):  # a busy database: the save takes a moment
        time.sleep(0.4)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(cohorts_sql, "create_cohort", slow_create)
    write_batch(conn, [NewEvent("e1", "acme", "signup", FIXED_NOW_MS, "s1", "u1")], FIXED_NOW_MS)
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        await pilot.press("N")  # a static cohort needs no criteria: saving is immediate
        await press_until(pilot, CohortEditorScreen, timeout=5)
        await pilot.press(*"Dup", "ctrl+s")
        await pilot.pause(0.1)
        await pilot.press("ctrl+s", "ctrl+s")  # while the first save is still writing
        await press_until(pilot, CohortsScreen, timeout=10)
        await pilot.pause(0.3)
    rows = sqlite3.connect(db_path).execute("SELECT name FROM cohorts").fetchall()
    assert rows == [("Dup",)]


def test_connection_errors_never_show_url_credentials() -> None:
    import asyncio

    from pulse_tui.notify import delivery

    async def send() -> delivery.SendResult:
        async with delivery.make_client() as client:
            return await delivery.send_once(client, "msg_1",
                                            "http://alice:s3cr3tTOKEN@127.0.0.1:9/hook", "{}",
                                            "whsec_AAAA", {}, wall_clock=lambda: 0.0)

    result = asyncio.run(send())
    assert not result.ok
    assert "s3cr3t" not in (result.error or "") and "alice" not in (result.error or "")
    assert "127.0.0.1:9" in (result.error or "")
