"""Rows another program wrote that cannot be used are listed in their pane with the reason and
can be deleted with keys, next to the good ones (Pilot, real SQLite)."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import FIXED_NOW_MS, async_wait_until

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import alerts as rules
from pulse_tui.store import cohorts
from pulse_tui.store import webhooks as hooks
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.alert_editor import AlertEditorScreen
from pulse_tui.tui.screens.alerts import AlertsScreen
from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
from pulse_tui.tui.screens.cohorts import CohortsScreen
from pulse_tui.tui.screens.confirm import ConfirmScreen
from pulse_tui.tui.screens.jobs import JobsScreen
from pulse_tui.tui.screens.webhooks import WebhooksScreen
from pulse_tui.tui.widgets.columns import FittedTable
from tests.tui.tui_helpers import press_until

SITE = "acme"
DEEP = ('{"metric":"events","window_minutes":5,"comparison":"gt","threshold":1,"filter":'
        + '{"type":"and","conditions":[' * 1_000
        + '{"property":"country","operator":"equals","value":"US"}' + "]}" * 1_000 + "}")


@pytest.fixture
def seeded(pulse_settings: Settings, conn: sqlite3.Connection) -> Settings:
    write_batch(conn, [NewEvent(f"e{i}", SITE, "pageview", FIXED_NOW_MS - 60_000 + i,
                                f"s{i}", f"u{i}") for i in range(5)], FIXED_NOW_MS)
    return pulse_settings


def row_texts(table: FittedTable) -> dict[str, str]:
    """{row key: the row's cells joined}."""
    out = {}
    for i in range(table.row_count):
        key = table.coordinate_to_cell_key((i, 0)).row_key.value
        out[str(key)] = " | ".join(getattr(c, "plain", str(c)) for c in table.get_row_at(i))
    return out


async def select_row(pilot, table: FittedTable, key: str) -> None:
    for _ in range(table.row_count + 1):
        if table.selected_key() == key:
            return
        await pilot.press("down")
    raise AssertionError(f"row {key!r} not reachable")


async def delete_selected(pilot, table: FittedTable, key: str) -> None:
    await select_row(pilot, table, key)
    await press_until(pilot, ConfirmScreen, "x", timeout=5)
    await pilot.press("y")


async def test_alerts_pane_lists_a_1000_deep_foreign_rule_and_deletes_it(
        seeded: Settings, conn: sqlite3.Connection) -> None:
    good = rules.create_rule(conn, site_id=SITE, name="good", condition={
        "metric": "events", "window_minutes": 5, "comparison": "gt", "threshold": 3},
        now_ms=FIXED_NOW_MS)
    conn.execute("INSERT INTO alert_rules (rule_id, site_id, name, condition, "
                 "notification_type, notification_config, created_at, updated_at) "
                 "VALUES ('bad', ?, 'bad one', ?, 'log', '{}', ?, ?)",
                 (SITE, DEEP, FIXED_NOW_MS, FIXED_NOW_MS))
    conn.commit()
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(120, 34)) as pilot:
        await press_until(pilot, AlertsScreen, "5", timeout=5)
        table = app.screen.query_one("#rules-table", FittedTable)
        await async_wait_until(lambda: table.row_count == 2, timeout=5)
        rows = row_texts(table)
        assert "invalid condition" in rows["bad"] and "invalid" not in rows[good.rule_id]
        # evaluate now (v) on the bad one: it goes to error with the reason, the app lives on
        await select_row(pilot, table, "bad")
        history = app.screen.query_one("#history-title")
        await async_wait_until(lambda: "nested too deeply" in str(history.render()), timeout=5)
        await pilot.press("v")
        await async_wait_until(lambda: conn.execute(
            "SELECT state FROM alert_rules WHERE rule_id = 'bad'").fetchone()[0] == "error",
            timeout=5)
        await async_wait_until(lambda: "error" in row_texts(table).get("bad", ""), timeout=5)
        # it opens in the editor (with defaults: the stored condition is unusable)
        await press_until(pilot, AlertEditorScreen, "e", timeout=5)
        await press_until(pilot, AlertsScreen, "escape", timeout=5)
        await delete_selected(pilot, table, "bad")
        await async_wait_until(lambda: conn.execute(
            "SELECT rule_id FROM alert_rules").fetchall() == [(good.rule_id,)], timeout=5)
        await async_wait_until(lambda: list(row_texts(table)) == [good.rule_id], timeout=5)


async def test_cohorts_pane_flags_an_unusable_foreign_cohort_and_deletes_it(
        seeded: Settings, conn: sqlite3.Connection) -> None:
    good = cohorts.create_cohort(conn, Clock(FIXED_NOW_MS), site_id=SITE, name="good",
                                 criteria={"type": "and", "conditions": [
                                     {"property": "event_type", "operator": "equals",
                                      "value": "pageview"}]})
    conn.execute("INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, "
                 "updated_at) VALUES ('bad', ?, 'bad one', ?, ?, ?)",
                 (SITE, '{"type":"and","conditions":[' * 1_000 + "]}" * 1_000,
                  FIXED_NOW_MS, FIXED_NOW_MS))
    conn.commit()
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(120, 34)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        table = app.screen.query_one("#cohorts-table", FittedTable)
        await async_wait_until(lambda: table.row_count == 2, timeout=5)
        rows = row_texts(table)
        assert "invalid" in rows["bad"] and "invalid" not in rows[good.cohort_id]
        title = str(app.screen.query_one("#cohorts-title").render())
        assert "1 invalid" in title and "nested too deeply" in title
        await select_row(pilot, table, "bad")
        await press_until(pilot, CohortEditorScreen, "e", timeout=5)
        await press_until(pilot, CohortsScreen, "escape", timeout=5)
        await delete_selected(pilot, table, "bad")
        await async_wait_until(lambda: conn.execute(
            "SELECT cohort_id FROM cohorts").fetchall() == [(good.cohort_id,)], timeout=5)


async def test_webhooks_screen_shows_a_broken_endpoint_and_deletes_it(
        seeded: Settings, conn: sqlite3.Connection) -> None:
    good = hooks.create_endpoint(conn, site_id=SITE, url="https://good.example/hook",
                                 events=["alert.firing"], now_ms=FIXED_NOW_MS).endpoint
    bad = hooks.create_endpoint(conn, site_id=SITE, url="https://bad.example/hook",
                                events=["alert.firing"], now_ms=FIXED_NOW_MS).endpoint
    conn.execute("UPDATE webhook_endpoints SET events = 'alert.firing' WHERE id = ?", (bad.id,))
    conn.commit()
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(140, 34)) as pilot:
        await press_until(pilot, AlertsScreen, "5", timeout=5)
        await press_until(pilot, WebhooksScreen, "w", timeout=5)
        table = app.screen.query_one("#endpoints-table", FittedTable)
        await async_wait_until(lambda: table.row_count == 2, timeout=5)
        rows = row_texts(table)
        assert "broken" in rows[bad.id] and "events: not valid JSON" in rows[bad.id]
        assert "broken" not in rows[good.id] and "alert.firing" in rows[good.id]
        assert "1 broken" in str(app.screen.query_one("#webhooks-title").render())
        await delete_selected(pilot, table, bad.id)
        await async_wait_until(lambda: conn.execute(
            "SELECT id FROM webhook_endpoints").fetchall() == [(good.id,)], timeout=5)


async def test_jobs_pane_shows_why_a_foreign_export_definition_is_unusable(
        seeded: Settings, conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO export_jobs (id, site_id, type, name, format, filters, status, "
                 "scheduled, created_at) VALUES ('bad', ?, 'metrics', 'bad one', 'csv', "
                 "'{\"days\": 7}', 'pending', '{\"frequency\": ', ?)", (SITE, FIXED_NOW_MS))
    conn.commit()
    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(200, 40)) as pilot:
        await press_until(pilot, JobsScreen, "6", timeout=5)
        table = app.screen.query_one("#exports-table", FittedTable)
        await async_wait_until(lambda: table.row_count == 1, timeout=5)
        assert "invalid definition" in row_texts(table)["bad"]
        title = str(app.screen.query_one("#jobs-exports-title").render())
        assert "bad one: invalid definition: scheduled: not valid JSON" in title



@pytest.mark.parametrize(("depth", "message"), [(33, "groups nest deeper than 32 levels"),
                                                (1_000, "nested too deeply")])
async def test_cohort_editor_json_view_refuses_deep_criteria(
        seeded: Settings, depth: int, message: str) -> None:
    from textual.widgets import TextArea

    app = make_app(seeded, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(120, 34)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        editor = await press_until(pilot, CohortEditorScreen, "n", timeout=5)
        await pilot.press("ctrl+e")
        area = editor.query_one("#criteria-json", TextArea)
        await async_wait_until(lambda: area.display, timeout=5)
        area.text = ('{"type":"and","conditions":[' * depth
                     + '{"property":"plan","operator":"is_set"}' + "]}" * depth)
        await pilot.press("ctrl+e")
        error = editor.query_one("#criteria-json-error")
        await async_wait_until(lambda: message in error.message, timeout=5)
        assert area.display  # still in the JSON view, nothing replaced the tree
