"""Retention pane: the grid from a known dataset, cell details, saving a cell, recompute."""

from __future__ import annotations

import sqlite3
from datetime import date

from conftest import async_wait_until
from textual.widgets import DataTable, Input

from pulse_tui.clock import Clock, day_start_ms
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.retention import RetentionScreen
from pulse_tui.tui.screens.retention_cell import RetentionCellScreen
from tests.tui.tui_helpers import press_until

DAY = 86_400_000
# Wednesday 2026-11-25 12:00 UTC; its ISO week starts Monday 2026-11-23
NOW = day_start_ms(date(2026, 11, 25)) + 12 * 3_600_000
MON_NOV_2 = day_start_ms(date(2026, 11, 2))


def _ev(n: int, user: str, t: int) -> NewEvent:
    return NewEvent(f"e{n}", "acme", "pageview", t, f"s-{user}-{t // DAY}", user, "https://a/")


def _seed(conn: sqlite3.Connection) -> None:
    # four users first seen in the week of Mon 2026-11-02; two come back in week 1, one in week 2
    events = [_ev(i, u, MON_NOV_2 + i * 3_600_000) for i, u in enumerate(["a", "b", "c", "d"])]
    events += [_ev(10, "a", MON_NOV_2 + 8 * DAY), _ev(11, "b", MON_NOV_2 + 9 * DAY),
               _ev(12, "a", MON_NOV_2 + 15 * DAY)]
    write_batch(conn, events, NOW)


def _row_cells(table: DataTable, row: int) -> list[str]:
    return [cell.plain.strip() for cell in table.get_row_at(row)]


async def test_grid_cell_details_save_and_recompute(pulse_settings: Settings,
                                                    conn: sqlite3.Connection,
                                                    db_path) -> None:
    _seed(conn)
    app = make_app(pulse_settings, clock=Clock(NOW), worker=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await press_until(pilot, RetentionScreen, "4", timeout=5)
        screen = app.screen
        table = screen.query_one("#retention-table", DataTable)
        await async_wait_until(lambda: table.row_count >= 1, timeout=10)
        first = _row_cells(table, 0)
        assert first[0] == "2026-11-02" and first[1] == "4"
        assert first[2].endswith("100%") and first[3].endswith("50%")
        assert first[4].endswith("25%")
        assert first[5] == "…"  # week 3 (Nov 23 .. 29) has not ended on Nov 25
        # week 1 of the first row: open it with enter
        table.focus()
        table.cursor_coordinate = table.cursor_coordinate._replace(row=0, column=3)
        await press_until(pilot, RetentionCellScreen, "enter", timeout=5)
        details = app.screen
        assert details.cell.returning == 2 and details.cell.base == 4
        await pilot.press("s")
        name = details.query_one("#cell-cohort-name", Input)
        await async_wait_until(lambda: name.has_focus, timeout=5)
        name.value = ""
        await press_until(pilot, RetentionScreen, *"Came back in week 1", "enter", timeout=5)
        check = sqlite3.connect(db_path)
        await async_wait_until(lambda: check.execute(
            "SELECT count(*) FROM cohorts WHERE kind = 'static'").fetchone()[0] == 1, timeout=5)
        members = check.execute(
            "SELECT m.user_id FROM cohort_members m JOIN cohorts c USING (cohort_id) "
            "WHERE c.name = 'Came back in week 1' ORDER BY 1").fetchall()
        assert members == [("a",), ("b",)]
        # a late return in week 2 shows once recomputed (r), the grid reading snapshots
        write_batch(conn, [_ev(20, "d", MON_NOV_2 + 16 * DAY)], NOW)
        await pilot.press("r")

        def week2() -> str:
            rows = [_row_cells(table, i) for i in range(table.row_count)]
            return next((r[4] for r in rows if r[0] == "2026-11-02"), "")

        await async_wait_until(lambda: week2().endswith("50%"), timeout=10)
