"""Alerts pane with keys only: rules and webhook endpoints created, muted, deleted; secrets."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import FIXED_NOW_MS, async_wait_until
from textual.widgets import DataTable, Static

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.alert_editor import AlertEditorScreen
from pulse_tui.tui.screens.alerts import AlertsScreen
from pulse_tui.tui.screens.confirm import ConfirmScreen
from pulse_tui.tui.screens.webhooks import EndpointFormScreen, SecretScreen, WebhooksScreen
from tests.tui.tui_helpers import press_until


@pytest.fixture
def seeded(pulse_settings: Settings, conn: sqlite3.Connection) -> Settings:
    events = [NewEvent(f"e{i}", "acme", "pageview", FIXED_NOW_MS - 60_000 + i, f"s{i}", f"u{i}")
              for i in range(5)]
    write_batch(conn, events, FIXED_NOW_MS)
    return pulse_settings


def _screen_text(app) -> str:
    """Everything currently drawn: statics and table cells."""
    parts = [str(w.render()) for w in app.screen.query(Static)]
    for table in app.screen.query(DataTable):
        for row in range(table.row_count):
            parts.extend(getattr(c, "plain", str(c)) for c in table.get_row_at(row))
    return "\n".join(parts)


async def test_rule_create_mute_delete_with_keys(seeded: Settings, db_path) -> None:
    check = sqlite3.connect(db_path)
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await press_until(pilot, AlertsScreen, "5", timeout=5)
        await press_until(pilot, AlertEditorScreen, "n", timeout=5)
        await pilot.press(*"Any traffic")
        await pilot.press("tab", "tab", "tab", "tab")  # metric, window, comparison, threshold
        await pilot.press("3")  # threshold 3: five events in the window will fire it
        await press_until(pilot, AlertsScreen, "ctrl+s", timeout=10)
        row = check.execute("SELECT rule_id, name, condition, status FROM alert_rules").fetchone()
        assert row[1] == "Any traffic" and row[3] == "active"
        assert json.loads(row[2]) == {"metric": "events", "window_minutes": 5,
                                      "comparison": "gt", "threshold": 3}
        table = app.screen.query_one("#rules-table", DataTable)
        await async_wait_until(lambda: table.row_count == 1, timeout=5)
        await pilot.press("v")  # evaluate now: 5 events > 3
        await async_wait_until(lambda: check.execute(
            "SELECT state FROM alert_rules").fetchone()[0] == "firing", timeout=5)
        await async_wait_until(lambda: "FIRING" in table.get_row_at(0)[0].plain, timeout=5)
        await async_wait_until(lambda: app.firing_alerts == 1, timeout=5)
        await pilot.press("m")
        await async_wait_until(lambda: check.execute(
            "SELECT status FROM alert_rules").fetchone()[0] == "muted", timeout=5)
        await async_wait_until(lambda: "⊘" in table.get_row_at(0)[0].plain, timeout=5)
        await press_until(pilot, ConfirmScreen, "x", timeout=5)
        await pilot.press("y")
        await async_wait_until(lambda: check.execute(
            "SELECT count(*) FROM alert_rules").fetchone()[0] == 0, timeout=5)


async def test_bad_threshold_is_shown_and_nothing_saved(seeded: Settings, db_path) -> None:
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await press_until(pilot, AlertsScreen, "5", timeout=5)
        await press_until(pilot, AlertEditorScreen, "n", timeout=5)
        editor = app.screen
        await pilot.press(*"Broken")
        await pilot.press("tab", "tab", "tab", "tab", *"lots", "ctrl+s")
        error = editor.query_one("#alert-threshold-error")
        await async_wait_until(lambda: error.message != "", timeout=5)
        assert isinstance(app.screen, AlertEditorScreen)
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM alert_rules").fetchone() == (0,)


async def test_field_errors_read_without_colour(seeded: Settings) -> None:
    """With NO_COLOR a field's error must not rely on red: it is bold, and the preview does not
    send the user looking for red fields."""
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, AlertsScreen, "5", timeout=5)
        await press_until(pilot, AlertEditorScreen, "n", timeout=5)
        editor = app.screen
        await pilot.press("tab", "tab", "tab", "tab", *"lots", "tab")
        error = editor.query_one("#alert-threshold-error")
        await async_wait_until(lambda: error.message != "", timeout=5)
        assert "bold" in str(error.styles.text_style)
        preview = editor.query_one("#alert-preview", Static)
        await async_wait_until(lambda: "fix the fields" in str(preview.render()), timeout=5)
        assert "red" not in str(preview.render())


async def test_endpoint_create_secret_once_and_delete(seeded: Settings, db_path) -> None:
    check = sqlite3.connect(db_path)
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await press_until(pilot, AlertsScreen, "5", timeout=5)
        await press_until(pilot, WebhooksScreen, "w", timeout=5)
        await press_until(pilot, EndpointFormScreen, "n", timeout=5)
        await press_until(pilot, SecretScreen, *"http://127.0.0.1:9/hook", "ctrl+s", timeout=5)
        secret = check.execute("SELECT secret FROM webhook_endpoints").fetchone()[0]
        assert secret.startswith("whsec_")
        assert secret in _screen_text(app)  # shown once, in full
        await press_until(pilot, WebhooksScreen, "enter", timeout=5)
        table = app.screen.query_one("#endpoints-table", DataTable)
        await async_wait_until(lambda: table.row_count == 1, timeout=5)
        shown = _screen_text(app)
        assert "127.0.0.1:9/hook" in shown
        assert secret not in shown and secret[6:] not in shown  # masked from now on
        await press_until(pilot, ConfirmScreen, "x", timeout=5)
        await pilot.press("y")
        await async_wait_until(lambda: check.execute(
            "SELECT count(*) FROM webhook_endpoints").fetchone()[0] == 0, timeout=5)
    log = seeded.log_file.read_text() if seeded.log_file.exists() else ""
    assert secret not in log
