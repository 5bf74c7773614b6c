"""Jobs pane, exports part, keys only: create an export, run it now, see the file."""

from __future__ import annotations

import csv
import sqlite3

from conftest import FIXED_NOW_MS, async_wait_until
from textual.widgets import DataTable

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.export_form import ExportFormScreen
from pulse_tui.tui.screens.jobs import JobsScreen
from tests.tui.tui_helpers import press_until

DAY = 86_400_000


async def test_create_and_run_an_export_with_keys(pulse_settings: Settings,
                                                  conn: sqlite3.Connection, db_path) -> None:
    events = [NewEvent(f"e{i}", "acme", "pageview", FIXED_NOW_MS - (i % 5) * DAY, f"s{i}",
                       f"u{i % 3}", "=cmd()|x") for i in range(20)]
    write_batch(conn, events, FIXED_NOW_MS)
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await press_until(pilot, JobsScreen, "6", timeout=5)
        await press_until(pilot, ExportFormScreen, "n", timeout=5)
        await pilot.press(*"Daily numbers", "ctrl+s")  # type report, report daily, csv, daily
        await press_until(pilot, JobsScreen, timeout=5)
        table = app.screen.query_one("#exports-table", DataTable)
        await async_wait_until(lambda: table.row_count == 1, timeout=5)
        table.focus()
        await pilot.press("enter")  # run now
        check = sqlite3.connect(db_path)
        await async_wait_until(lambda: check.execute(
            "SELECT status FROM export_jobs").fetchone()[0] == "completed", timeout=10)
        (path,) = check.execute(
            "SELECT file_path FROM export_runs WHERE status = 'completed'").fetchone()
    rows = list(csv.reader(open(path, encoding="utf-8")))
    assert rows[0] == ["day", "events", "users", "sessions"]
    assert len(rows) == 1 + 30  # every day of the default 30-day range
    assert sum(int(r[1]) for r in rows[1:]) == 20


async def test_top_urls_export_neutralises_formulas(pulse_settings: Settings,
                                                    conn: sqlite3.Connection, db_path) -> None:
    from pulse_tui.exports import create_export, run_export

    write_batch(conn, [NewEvent("e1", "acme", "pageview", FIXED_NOW_MS, "s1", "u1", "=cmd()")],
                FIXED_NOW_MS)
    clock = Clock(FIXED_NOW_MS)
    export = create_export(conn, clock, site_id="acme", type="report", name="urls",
                           filters={"report": "top-urls", "days": 7})
    result = run_export(conn, export.id, pulse_settings, clock)
    assert result.ok, result.error
    text = open(result.file_path, encoding="utf-8").read()
    assert "'=cmd()" in text and "\n=cmd()" not in text
