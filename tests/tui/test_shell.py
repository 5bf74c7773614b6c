"""The TUI shell: number keys switch panes, help, command palette, site picker, quit."""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, OptionList
from tui_helpers import event, init_db, insert_events, until

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.tui.app import make_app, pane_classes
from pulse_tui.tui.screens.help import HelpScreen
from pulse_tui.tui.screens.site_picker import SitePickerScreen

KEYS = [("1", "live"), ("2", "charts"), ("3", "cohorts"), ("4", "retention"), ("5", "alerts"),
        ("6", "jobs")]


@pytest.fixture
def two_sites(pulse_settings: Settings) -> dict[str, int]:
    init_db(pulse_settings.db)
    rows = [event(i, site="acme-web" if i % 3 else "shop") for i in range(12)]
    insert_events(pulse_settings.db, rows)
    return {"acme-web": sum(1 for r in rows if r["site_id"] == "acme-web"),
            "shop": sum(1 for r in rows if r["site_id"] == "shop")}


async def test_number_keys_switch_panes(pulse_settings: Settings, fixed_clock: Clock) -> None:
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.current_mode == "live")
        for key, mode in KEYS[1:] + KEYS[:1]:
            await pilot.press(key)
            await until(pilot, lambda mode=mode: app.current_mode == mode)
            assert app.screen.PANE == mode


async def test_help_lists_keys_and_closes(pulse_settings: Settings, fixed_clock: Clock) -> None:
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.current_mode == "live")
        await pilot.press("question_mark")
        help_screen = await until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen)
        sections = dict(help_screen.sections)
        everywhere = dict(sections["Everywhere"])
        for key, _ in KEYS:
            assert key in everywhere
        for key in ("s", "?", "ctrl+p", "q"):
            assert key in everywhere
        live_keys = dict(sections["Live events"])
        assert {"p", "slash", "t", "escape"} <= set(live_keys)
        assert dict(help_screen.paths)["database"] == str(pulse_settings.db)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        assert app.current_mode == "live"


async def test_command_palette_switches_pane(pulse_settings: Settings, fixed_clock: Clock
                                             ) -> None:
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.current_mode == "live")
        await pilot.press("ctrl+p")
        palette = await until(pilot, lambda: isinstance(app.screen, CommandPalette)
                              and app.screen)
        await pilot.press(*f"go to {pane_classes()['retention'].TITLE.lower()}")
        commands = palette.query_one(CommandList)
        await until(pilot, lambda: commands.option_count > 0)
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.current_mode == "retention")
        assert not isinstance(app.screen, CommandPalette)


async def test_site_picker_narrows_live_table(pulse_settings: Settings, fixed_clock: Clock,
                                              two_sites: dict[str, int]) -> None:
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#live-table", DataTable)
        total = sum(two_sites.values())
        await until(pilot, lambda: table.row_count == total)
        await pilot.press("s")
        picker = await until(pilot, lambda: isinstance(app.screen, SitePickerScreen)
                             and app.screen)
        options = picker.query_one(OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert ids[1:] == ["acme-web", "shop"]
        assert options.highlighted == 0  # "All sites" is current
        await pilot.press("down", "down", "enter")  # -> shop
        await until(pilot, lambda: app.site_id == "shop")
        assert app.screen.query_one("#live-table", DataTable) is table
        await until(pilot, lambda: table.row_count == two_sites["shop"])
        sites = {str(table.get_row_at(i)[1]).strip() for i in range(table.row_count)}
        assert sites == {"shop"}
        # back to all sites
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SitePickerScreen))
        await pilot.press("home", "enter")
        await until(pilot, lambda: app.site_id is None)
        await until(pilot, lambda: table.row_count == total)


async def test_site_picker_escape_keeps_site(pulse_settings: Settings, fixed_clock: Clock,
                                             two_sites: dict[str, int]) -> None:
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SitePickerScreen))
        await pilot.press("down", "escape")
        await until(pilot, lambda: not isinstance(app.screen, SitePickerScreen))
        assert app.site_id is None


async def test_q_quits(pulse_settings: Settings, fixed_clock: Clock) -> None:
    app = make_app(pulse_settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.current_mode == "live")
        assert app.return_code is None
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0
