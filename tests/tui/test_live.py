"""Live events pane: tails other writers, pause/resume, filters, literal text, bounded memory."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Select
from tui_helpers import event, init_db, insert_events, until

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.live import MAX_KEPT, LiveScreen

URL_COL = 4  # time, site, type, user, url, ... at 80 columns


def cell_text(table: DataTable, row: int, col: int) -> str:
    value = table.get_row_at(row)[col]
    assert isinstance(value, Text), "cells must be Text (never markup strings)"
    return value.plain


def all_cells(table: DataTable) -> list[str]:
    return [cell_text(table, r, c) for r in range(table.row_count)
            for c in range(len(table.columns))]


@pytest.fixture
def seeded(pulse_settings: Settings) -> int:
    init_db(pulse_settings.db)
    return insert_events(pulse_settings.db, [event(i) for i in range(5)])


def live_parts(app) -> tuple[LiveScreen, DataTable]:
    screen = app.screen
    assert isinstance(screen, LiveScreen)
    return screen, screen.query_one("#live-table", DataTable)


async def test_event_from_another_connection_appears(pulse_settings: Settings,
                                                     fixed_clock: Clock, seeded: int) -> None:
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        screen, table = live_parts(app)
        await until(pilot, lambda: table.row_count == seeded)
        insert_events(pulse_settings.db, [event(100, etype="signup", user="newcomer")])
        await until(pilot, lambda: table.row_count == seeded + 1)
        # newest first
        assert "newcomer" in cell_text(table, 0, 3)
        assert "signup" in cell_text(table, 0, 2)


async def test_pause_stops_updates_and_resume_catches_up(pulse_settings: Settings,
                                                         fixed_clock: Clock, seeded: int
                                                         ) -> None:
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        screen, table = live_parts(app)
        await until(pilot, lambda: table.row_count == seeded)
        await pilot.press("p")
        await until(pilot, lambda: screen.paused)
        insert_events(pulse_settings.db, [event(200), event(201)])
        # the change watcher saw the write and counted it, but the table did not move
        await until(pilot, lambda: screen.missed == 2)
        assert table.row_count == seeded
        assert len(screen.kept) == seeded
        await pilot.press("p")
        await until(pilot, lambda: table.row_count == seeded + 2)
        assert not screen.paused
        assert screen.missed == 0


async def test_text_filter_narrows_and_escape_clears(pulse_settings: Settings,
                                                     fixed_clock: Clock) -> None:
    init_db(pulse_settings.db)
    rows = [event(i, url=f"/{'pricing' if i % 4 == 0 else 'home'}")
            for i in range(12)]
    insert_events(pulse_settings.db, rows)
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        screen, table = live_parts(app)
        await until(pilot, lambda: table.row_count == 12)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.focused, Input))
        await pilot.press(*"PRICING")  # case-insensitive
        await until(pilot, lambda: table.row_count == 3)
        assert all("pricing" in cell_text(table, r, URL_COL) for r in range(3))
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 12)
        assert screen.query_one("#live-text", Input).value == ""


async def test_type_select_narrows(pulse_settings: Settings, fixed_clock: Clock) -> None:
    init_db(pulse_settings.db)
    types = ["pageview", "signup", "purchase", "pageview", "login", "pageview", "signup"]
    insert_events(pulse_settings.db, [event(i, etype=t) for i, t in enumerate(types)])
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        screen, table = live_parts(app)
        await until(pilot, lambda: table.row_count == len(types))
        select = screen.query_one("#live-type", Select)
        await pilot.press("t")  # focuses AND opens the list: the key shows what it did
        # options: all, login, pageview, purchase, signup
        await until(pilot, lambda: select.expanded)
        await pilot.press("down", "down", "down", "down", "enter")
        await until(pilot, lambda: select.value == "signup")
        await until(pilot, lambda: table.row_count == 2)
        assert all(cell_text(table, r, 2).strip() == "signup" for r in range(2))
        # new events of other types stay out while the filter holds
        insert_events(pulse_settings.db, [event(50, etype="pageview"), event(51, etype="signup")])
        await until(pilot, lambda: len(screen.kept) == len(types) + 2)
        await until(pilot, lambda: table.row_count == 3)
        table.focus()
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == len(types) + 2)


async def test_markup_and_control_characters_shown_literally(pulse_settings: Settings,
                                                             fixed_clock: Clock) -> None:
    init_db(pulse_settings.db)
    insert_events(pulse_settings.db, [
        event(1, url="[bold red]x[/]"),
        event(2, url="https://e.example/\x1b[2Jboom", user="[link=x]u[/]"),
    ])
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        screen, table = live_parts(app)
        await until(pilot, lambda: table.row_count == 2)
        newest, older = cell_text(table, 0, URL_COL), cell_text(table, 1, URL_COL)
        assert "[bold red]x[/]" in older
        assert "\\e" in newest or "\\x1b" in newest
        assert "[link=x]u[/]" in cell_text(table, 0, 3)
        for text in all_cells(table):
            assert "\x1b" not in text
        for r in range(2):
            for c in table.get_row_at(r):
                assert not c.spans or all("link" not in str(s.style) for s in c.spans)


async def test_memory_is_bounded(pulse_settings: Settings, fixed_clock: Clock) -> None:
    init_db(pulse_settings.db)
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        screen, table = live_parts(app)
        total = MAX_KEPT + 250
        for start in range(0, total, 400):  # several commits, each seen by the pane
            end = min(total, start + 400)
            insert_events(pulse_settings.db, [event(i) for i in range(start, end)])
            await until(pilot, lambda end=end: screen.last_seq == end, timeout=20)
        await until(pilot, lambda: table.row_count > 0)
        assert len(screen.kept) <= MAX_KEPT
        assert screen.kept[0].event_id == f"evt-{total - 1:05d}"
        assert table.row_count <= MAX_KEPT
