"""The demo on a ClickHouse events store (chdb, a tiny build): the history, users and sample
imports land in ClickHouse, the demo's file keeps the control data, every pane has data, and
the live traffic goes to ClickHouse too."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from textual.widgets import DataTable
from tui_helpers import until

from pulse_tui.cli.tui import prepare_demo
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.report_models import DateRange
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.alerts import AlertsScreen
from pulse_tui.tui.screens.charts import ChartsScreen
from pulse_tui.tui.screens.cohorts import CohortsScreen
from pulse_tui.tui.screens.jobs import JobsScreen
from pulse_tui.tui.screens.live import LiveScreen
from pulse_tui.tui.screens.retention import RetentionScreen
from tests.backend.chdb_support import fresh_chdb_url


def _file_counts(settings: Settings) -> dict[str, int]:
    conn = sqlite3.connect(settings.db)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("events", "users", "cohorts", "alert_rules", "import_jobs", "sites")}
    finally:
        conn.close()


async def test_the_demo_builds_into_clickhouse_and_every_pane_shows_it(
        pulse_settings: Settings, fixed_clock: Clock) -> None:
    pytest.importorskip("chdb")
    store = fresh_chdb_url()
    settings = replace(pulse_settings, events_store=store).with_demo()
    assert "events-" in str(settings.db)  # a demo file of its own for this store
    settings.db.parent.mkdir(parents=True, exist_ok=True)
    assert prepare_demo(settings, fixed_clock, days=3) is True
    assert prepare_demo(settings, fixed_clock, days=3) is False  # built once
    counts = _file_counts(settings)
    # control data in the file, no events or users there
    assert counts["events"] == 0 and counts["users"] == 0
    assert counts["cohorts"] == 3 and counts["alert_rules"] == 2 and counts["sites"] >= 4
    assert counts["import_jobs"] == 3

    app = make_app(settings, clock=fixed_clock, demo=True, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        live = app.screen.query_one("#live-table", DataTable)
        await until(pilot, lambda: live.row_count > 0)
        today = fixed_clock.today()
        rng = DateRange(today - timedelta(days=3), today)
        daily = await app.store.read(lambda d: d.events.daily("acme-web", rng))
        assert sum(r.events for r in daily) > 0 and sum(r.users for r in daily) > 0
        ev = await app.store.read(lambda d: d.events)
        assert type(ev).__name__ == "ClickHouseEvents"
        beta = await app.store.read(lambda d: d.events.cohort_members("beta-testers"))
        assert len(beta) == 12
        users = await app.store.read(lambda d: d.events.users_rows(
            "acme-web", [m.user_id for m in beta]))
        assert users  # the sample users file went to ClickHouse
        for key, pane in (("2", ChartsScreen), ("3", CohortsScreen), ("4", RetentionScreen),
                          ("5", AlertsScreen), ("6", JobsScreen)):
            await pilot.press(key)
            await until(pilot, lambda pane=pane: isinstance(app.screen, pane))
            if pane in (CohortsScreen, AlertsScreen, JobsScreen):
                table = app.screen.query(DataTable).first()
                await until(pilot, lambda table=table: table.row_count > 0)
        # the simulated live traffic is written into ClickHouse as well (polled, deadline)
        async def stored() -> int:
            page = await app.store.read(lambda d: d.events.tail(limit=100_000))
            return len(page.events)

        before = await stored()
        deadline = time.monotonic() + 15
        while (now := await stored()) <= before and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert now > before
    assert _file_counts(settings)["events"] == 0
