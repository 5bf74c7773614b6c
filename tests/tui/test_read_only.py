"""A read-only app (``--read-only``, ``serve --read-only``): every pane shows its data, no write
action is offered in the footer, help or palette, and one reached anyway is refused."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import FIXED_NOW_MS
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable
from tui_helpers import event, init_db, insert_events, until

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.errors import ReadOnlyError
from pulse_tui.exports import create_export
from pulse_tui.store import cohorts as cohorts_sql
from pulse_tui.store.connection import connect
from pulse_tui.tui.app import PulseApp, make_app
from pulse_tui.tui.guards import declared_write
from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
from pulse_tui.tui.screens.help import HelpScreen

# pane -> the actions bound to keys there that change data
WRITE_ACTIONS = {
    "cohorts": {"new", "new_static", "edit", "duplicate", "archive", "delete"},
    "retention": {"recompute"},
    "alerts": {"new", "edit", "mute", "evaluate", "delete"},
    "jobs": {"retry", "new_export", "edit_export", "delete_export"},
}


@pytest.fixture
def seeded(pulse_settings: Settings) -> Settings:
    init_db(pulse_settings.db)
    insert_events(pulse_settings.db, [event(i, ts=FIXED_NOW_MS - i * 86_400_000)
                                      for i in range(20)])
    conn = connect(pulse_settings.db)
    cohorts_sql.create_cohort(conn, Clock(FIXED_NOW_MS), site_id="acme-web", name="Keepers",
                              kind="static")
    create_export(conn, Clock(FIXED_NOW_MS), site_id="acme-web", type="report", name="daily",
                  filters={"report": "daily", "days": 7})
    conn.close()
    return pulse_settings


def _count(db, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def _notes(app: PulseApp) -> list[str]:
    return [str(n.message) for n in app._notifications]  # noqa: SLF001


async def _go(pilot, app: PulseApp, key: str, pane: str) -> None:
    await pilot.press(key)
    await until(pilot, lambda: app.current_mode == pane and app.screen.PANE == pane)


@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
async def test_write_actions_are_not_offered(seeded: Settings, read_only: bool) -> None:
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False, read_only=read_only)
    async with app.run_test(size=(120, 32)) as pilot:
        for key, pane in (("3", "cohorts"), ("4", "retention"), ("5", "alerts"),
                          ("6", "jobs")):
            await _go(pilot, app, key, pane)
            screen = app.screen
            offered = {b.binding.action for b in screen.active_bindings.values()
                       if b.node is screen and declared_write(screen, b.binding.action)}
            assert offered == (set() if read_only else WRITE_ACTIONS[pane]), pane
            titles = [c.title for c in app.get_system_commands(screen)]
            assert any(t.startswith(f"{screen.TITLE}: ") for t in titles) or read_only
            writes = [t for t in titles if t.startswith(f"{screen.TITLE}: ")
                      and any(t == f"{screen.TITLE}: {b.description}"
                              for b in type(screen).BINDINGS
                              if declared_write(screen, b.action))]
            assert bool(writes) is not read_only, (pane, writes)
        await pilot.press("question_mark")
        help_screen = await until(pilot, lambda: isinstance(app.screen, HelpScreen)
                                  and app.screen)
        sections = dict(help_screen.sections)
        cohort_keys = dict(sections.get("Cohorts", []))
        assert ("n" in cohort_keys) is not read_only
        assert ("m" in dict(sections["Alerts"])) is not read_only
        assert ("w" in dict(sections["Alerts"]))  # webhooks can still be looked at


async def test_read_only_refuses_a_write_reached_by_key_or_palette(seeded: Settings) -> None:
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False, read_only=True)
    async with app.run_test(size=(120, 32)) as pilot:
        await _go(pilot, app, "3", "cohorts")
        screen = app.screen
        # the palette has no "Cohorts: Delete" to offer
        await pilot.press("ctrl+p")
        palette = await until(pilot, lambda: isinstance(app.screen, CommandPalette)
                              and app.screen)
        await pilot.press(*"cohorts: delete")
        commands = palette.query_one(CommandList)
        await pilot.pause()
        shown = [str(commands.get_option_at_index(i).prompt)
                 for i in range(commands.option_count)]
        assert not any("Cohorts: Delete" in s for s in shown), shown
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        # a command that reaches the write anyway (as a palette entry runs it) is refused
        app.read_only = False
        stale = next(c for c in app.get_system_commands(screen)
                     if c.title == "Cohorts: Delete")
        app.read_only = True
        result = stale.callback()
        if hasattr(result, "__await__"):
            await result
        await until(pilot, lambda: any("Read-only session: deleting a cohort" in n
                                       for n in _notes(app)))
        # and so is the key
        await pilot.press("N")
        await until(pilot, lambda: any("creating a cohort" in n for n in _notes(app)))
        await pilot.pause()
        assert not isinstance(app.screen, CohortEditorScreen)
        assert _count(seeded.db, "SELECT COUNT(*) FROM cohorts") == 1
        # the Store refuses a write itself, before anything runs
        check = sqlite3.connect(seeded.db)
        (cohort_id,) = check.execute("SELECT cohort_id FROM cohorts").fetchone()
        check.close()
        with pytest.raises(ReadOnlyError, match="read-only session"):
            await app.store.write(lambda d: d.control.delete_cohort(cohort_id))
        assert _count(seeded.db, "SELECT COUNT(*) FROM cohorts") == 1


async def test_read_only_refuses_running_an_export_with_enter(seeded: Settings) -> None:
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await _go(pilot, app, "6", "jobs")
        table = app.screen.query_one("#exports-table", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("enter")  # "run now" in a writable app
        await until(pilot, lambda: any("Read-only session: running an export" in n
                                       for n in _notes(app)))
    assert _count(seeded.db, "SELECT COUNT(*) FROM export_runs") == 0


async def test_read_only_retention_shows_the_grid_without_storing_it(seeded: Settings) -> None:
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False, read_only=True)
    async with app.run_test(size=(120, 32)) as pilot:
        await _go(pilot, app, "4", "retention")
        await until(pilot, lambda: app.screen.grid is not None, timeout=15)
        assert app.screen.grid.acquisition
    assert _count(seeded.db, "SELECT COUNT(*) FROM acquisition_retention") == 0
