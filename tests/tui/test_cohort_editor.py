"""Cohort editor with keys only: the seed's example cohort, live count, save, invalid values."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import FIXED_NOW_MS, async_wait_until
from textual.widgets import Input, Select, Static, Tree

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
from pulse_tui.tui.screens.cohorts import CohortsScreen
from pulse_tui.tui.screens.condition_form import ConditionFormScreen
from tests.tui.tui_helpers import press_until

DAY = 86_400_000


def _seed(conn: sqlite3.Connection) -> None:
    events = []
    people = [("u1", "US", True), ("u2", "CA", True), ("u3", "DE", True), ("u4", "US", False)]
    for n, (user, country, signed_up) in enumerate(people):
        t = FIXED_NOW_MS - (n + 1) * DAY
        events.append(NewEvent(f"p{n}", "acme", "pageview", t, f"s{n}", user, "https://a/",
                               None, country, "desktop"))
        if signed_up:
            events.append(NewEvent(f"g{n}", "acme", "signup", t + 1000, f"s{n}", user,
                                   "https://a/signup", None, country, "desktop"))
    write_batch(conn, events, FIXED_NOW_MS)


async def _choose(pilot, select: Select, value: str) -> None:
    """Pick ``value`` in a Select with the keyboard: open it, arrow to the option, enter."""
    select.focus()
    await pilot.press("enter")
    await pilot.pause()
    values = [v for _, v in select._options]  # noqa: SLF001 - option order as shown
    current = values.index(select.value) if select.value in values else 0
    target = values.index(value)
    for _ in range(abs(target - current)):
        await pilot.press("down" if target > current else "up")
    await pilot.press("enter")
    await async_wait_until(lambda: select.value == value, timeout=5)


async def _add_condition(pilot, app, prop: str, op: str, value: str) -> None:
    await press_until(pilot, ConditionFormScreen, "a", timeout=5)
    form = app.screen
    await _choose(pilot, form.query_one("#cond-property", Select), prop)
    await _choose(pilot, form.query_one("#cond-operator", Select), op)
    form.query_one("#cond-value", Input).focus()
    await pilot.press(*value)
    await pilot.press("enter")


@pytest.fixture
def seeded(pulse_settings: Settings, conn: sqlite3.Connection) -> Settings:
    _seed(conn)
    return pulse_settings


async def test_build_the_seed_example_with_keys_only(seeded: Settings, db_path) -> None:
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        await press_until(pilot, CohortEditorScreen, "n", timeout=5)
        editor = app.screen
        await pilot.press(*"Signed up in NA")
        await pilot.press("tab", "tab")  # description, then the criteria tree
        assert isinstance(app.focused, Tree)
        await _add_condition(pilot, app, "event_type", "equals", "signup")
        await press_until(pilot, CohortEditorScreen, timeout=5)
        await _add_condition(pilot, app, "country", "in", "US, CA")
        await press_until(pilot, CohortEditorScreen, timeout=5)
        assert editor.criteria == {"type": "and", "conditions": [
            {"property": "event_type", "operator": "equals", "value": "signup"},
            {"property": "country", "operator": "in", "value": ["US", "CA"]},
        ]}
        # the live count: u1 (US) and u2 (CA) signed up; u3 is DE; u4 never signed up
        await async_wait_until(lambda: editor.preview_count == 2, timeout=10)
        assert "2 members" in str(editor.query_one("#preview-count", Static).render())
        await press_until(pilot, CohortsScreen, "ctrl+s", timeout=10)

    check = sqlite3.connect(db_path)
    (cohort_id, name, criteria, kind), = check.execute(
        "SELECT cohort_id, name, criteria, kind FROM cohorts").fetchall()
    assert name == "Signed up in NA" and kind == "criteria"
    assert json.loads(criteria)["conditions"][1]["value"] == ["US", "CA"]
    members = check.execute(
        "SELECT user_id FROM cohort_members WHERE cohort_id = ? AND is_active = 1 "
        "ORDER BY user_id", (cohort_id,)).fetchall()
    assert members == [("u1",), ("u2",)]


async def test_invalid_value_shows_an_error_and_saves_nothing(seeded: Settings,
                                                              db_path) -> None:
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        await press_until(pilot, CohortEditorScreen, "n", timeout=5)
        await pilot.press(*"Heavy users")
        await pilot.press("tab", "tab")
        # a number property with text where a number belongs
        await _add_condition(pilot, app, "event_count", "gt", "lots")
        form = app.screen
        assert isinstance(form, ConditionFormScreen)  # still open: the value was refused
        error = form.query_one("#cond-value-error", Static)
        await async_wait_until(lambda: error.message != "", timeout=5)
        await press_until(pilot, CohortEditorScreen, "escape", timeout=5)
        # an empty criteria group cannot be saved either
        await pilot.press("ctrl+s")
        editor = app.screen
        await async_wait_until(lambda: bool(editor.problems), timeout=5)
        assert isinstance(app.screen, CohortEditorScreen)
    check = sqlite3.connect(db_path)
    assert check.execute("SELECT count(*) FROM cohorts").fetchone() == (0,)


async def test_static_cohort_with_an_id_takes_member_imports(seeded: Settings, db_path,
                                                            tmp_path) -> None:
    from pulse_tui.ingest import import_file
    from pulse_tui.store.connection import connect

    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        await press_until(pilot, CohortEditorScreen, "N", timeout=5)
        await press_until(pilot, CohortsScreen, *"Beta testers", "tab", *"beta-testers", "ctrl+s", timeout=10)
    check = sqlite3.connect(db_path)
    assert check.execute("SELECT cohort_id, name, kind FROM cohorts").fetchall() == [
        ("beta-testers", "Beta testers", "static")]
    members = tmp_path / "members.csv"
    members.write_text("cohort_id,user_id\nbeta-testers,u1\nbeta-testers,u3\n")
    conn = connect(db_path)
    result = import_file(conn, members, kind="cohort_members", clock=Clock(FIXED_NOW_MS))
    conn.close()
    assert (result.status, result.processed, result.failed) == ("completed", 2, 0)


async def test_q_in_an_editor_with_changes_asks_before_quitting(seeded: Settings) -> None:
    from pulse_tui.tui.screens.confirm import ConfirmScreen

    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        await press_until(pilot, CohortEditorScreen, "n", timeout=5)
        await pilot.press(*"Unsaved", "tab", "tab")  # the tree has focus: q is not typed
        await press_until(pilot, ConfirmScreen, "q", timeout=5)
        await press_until(pilot, CohortEditorScreen, "n", timeout=5)
        assert app.is_running
