"""Findings of the 80x24 walkthrough: keys that belong to the panes stay there, footers name the
keys that work, and lines of the header, the criteria tree and the retention grid fit 80 columns."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from conftest import FIXED_NOW_MS, async_wait_until
from textual.widgets import DataTable, Static, TextArea

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.alert_editor import AlertEditorScreen
from pulse_tui.tui.screens.alerts import AlertsScreen
from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
from pulse_tui.tui.screens.cohorts import CohortsScreen
from pulse_tui.tui.screens.live import LiveScreen
from pulse_tui.tui.screens.retention import RetentionScreen
from pulse_tui.tui.screens.site_picker import SitePickerScreen
from pulse_tui.tui.widgets.criteria_tree import CriteriaTree
from pulse_tui.tui.widgets.footer import PulseFooter
from pulse_tui.tui.widgets.header import fit_status, shorten_path
from tests.tui.tui_helpers import press_until

DAY = 86_400_000


@pytest.fixture
def two_sites(pulse_settings: Settings, conn: sqlite3.Connection) -> Settings:
    write_batch(conn, [NewEvent(f"e{i}", ("acme", "beta")[i % 2], "pageview",
                                FIXED_NOW_MS - 60_000 + i, f"s{i}", f"u{i}") for i in range(6)],
                FIXED_NOW_MS)
    return pulse_settings


def footer_keys(app) -> list[str]:
    footer = app.screen.query_one(PulseFooter)
    return [str(k.description) for k in footer.query("FooterKey")]


async def never(pilot, predicate, seconds: float = 0.5) -> None:
    """Let the app run for ``seconds`` and fail if ``predicate`` ever holds (what must NOT
    happen cannot be awaited: a bounded watch instead)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await pilot.pause()
        assert not predicate()
        await asyncio.sleep(0.02)


async def test_s_in_the_alert_editor_leaves_the_site_alone(two_sites: Settings) -> None:
    app = make_app(two_sites, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, AlertsScreen, "5", timeout=5)
        await press_until(pilot, SitePickerScreen, "n", timeout=5)  # the rule's site
        await press_until(pilot, AlertEditorScreen, "enter", timeout=5)
        await pilot.press("tab")  # off the name field: the metric select
        assert "s" not in app.screen.active_bindings  # neither offered nor run
        await pilot.press("s")
        await never(pilot, lambda: not isinstance(app.screen, AlertEditorScreen))
        assert app.site_id is None
        # on a pane, s still chooses the site
        await press_until(pilot, AlertsScreen, "escape", timeout=5)
        assert app.screen.active_bindings["s"].binding.action == "pick_site"
        await press_until(pilot, SitePickerScreen, "s", timeout=5)


async def test_the_site_picker_footer_shows_its_own_keys(two_sites: Settings) -> None:
    app = make_app(two_sites, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, LiveScreen, timeout=5)
        assert "Pause/resume" in footer_keys(app)
        await press_until(pilot, SitePickerScreen, "s", timeout=5)
        await pilot.pause()
        keys = footer_keys(app)
        assert "Cancel" in keys and "Pause/resume" not in keys and "Site" not in keys
        await pilot.press("s")  # no second picker over the first
        await never(pilot, lambda: len(app.screen_stack) > 2)


async def test_the_json_view_footer_names_the_way_back(two_sites: Settings) -> None:
    app = make_app(two_sites, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        await press_until(pilot, SitePickerScreen, "n", timeout=5)
        await press_until(pilot, CohortEditorScreen, "enter", timeout=5)
        editor = app.screen
        area = editor.query_one("#criteria-json", TextArea)
        assert "JSON view" in footer_keys(app) and "Tree view" not in footer_keys(app)
        await pilot.press("ctrl+e")
        await async_wait_until(lambda: area.display, timeout=5)
        await async_wait_until(lambda: "Tree view" in footer_keys(app), timeout=5)
        assert "JSON view" not in footer_keys(app)
        await pilot.press("ctrl+e")  # the key named there leads back
        await async_wait_until(lambda: editor.query_one(CriteriaTree).display, timeout=5)
        # the tree's own keys fill the footer now; ctrl+e is offered as the JSON view again
        await async_wait_until(
            lambda: editor.active_bindings["ctrl+e"].binding.description == "JSON view",
            timeout=5)


async def test_the_empty_group_warning_fits_80_columns(two_sites: Settings) -> None:
    app = make_app(two_sites, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        await press_until(pilot, SitePickerScreen, "n", timeout=5)
        await press_until(pilot, CohortEditorScreen, "enter", timeout=5)
        tree = app.screen.query_one(CriteriaTree)
        tree.focus()
        labels = [(str(tree.root.label), 2)]  # the empty root, then a nested empty group
        await pilot.press("g")
        await async_wait_until(lambda: len(tree.root.children) == 1, timeout=5)
        labels.append((str(tree.root.children[0].label), 5))
        for label, indent in labels:
            assert "⚠ empty: press a to add a condition" in label
            assert label.count("add a condition") == 1  # not the hint and the warning
            assert indent + len(label) <= tree.content_region.width <= 80


async def test_the_retention_grid_fits_80_columns_and_shows_a_dash_without_users(
        pulse_settings: Settings, conn: sqlite3.Connection) -> None:
    # users only in the newest week: the older weeks of the range have none
    write_batch(conn, [NewEvent(f"e{i}", "acme", "pageview", FIXED_NOW_MS - i * 60_000,
                                f"s{i}", f"u{i}") for i in range(5)], FIXED_NOW_MS)
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, RetentionScreen, "4", timeout=5)
        table = app.screen.query_one("#retention-table", DataTable)
        await async_wait_until(lambda: table.row_count >= 4, timeout=10)
        await pilot.pause()
        cells = {str(table.get_row_at(r)[0]).strip(): [str(c).strip()
                                                       for c in table.get_row_at(r)[2:]]
                 for r in range(table.row_count)}
        empty_week = next(label for label, row in cells.items()
                          if str(table.get_row_at(list(cells).index(label))[1]).strip() == "0")
        assert cells[empty_week][0] == "–" and "0%" not in cells[empty_week]
        newest = max(cells)
        assert cells[newest][0].endswith("100%")
        # every column that holds something is on screen: no horizontal scrolling
        assert table.virtual_size.width <= table.content_region.width
        assert not table.show_horizontal_scrollbar


def test_header_fit_status() -> None:
    standby = "standby: lease held by pid 4161 on host vm"
    db = "production-databases/pulse-operations.db"
    # room on an 80-column header after " site all  range 30d  worker " and "  db "
    assert fit_status(standby, db, 80 - 29 - 5) == ("standby: pid 4161 on vm",
                                                    "pr…/pulse-operations.db")
    assert fit_status("running", "snapdb/pulse.db", 46) == ("running", "snapdb/pulse.db")
    # narrow: the label keeps MIN_PATH cells of its end, the state gives way
    assert fit_status(standby, db, 30) == ("standby: …", "…pulse-operations.db")
    assert shorten_path("a/b.db", 10) == "a/b.db"
    assert shorten_path("folder/name.db", 10) == "f…/name.db"
    assert shorten_path("folder/name.db", 5) == "…e.db"


async def test_header_keeps_the_database_name_beside_a_standby_worker(
        two_sites: Settings) -> None:
    app = make_app(two_sites, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, LiveScreen, timeout=5)
        app.db_label = "production-databases/pulse-operations.db"
        app.worker_state = "standby: lease held by pid 4161 on host vm"
        status = app.screen.query_one("#header-status", Static)
        await async_wait_until(lambda: "pid 4161" in str(status.render()), timeout=5)
        line = str(status.render())
        assert line.rstrip().endswith("/pulse-operations.db")
        assert len(line.rstrip()) <= 80
