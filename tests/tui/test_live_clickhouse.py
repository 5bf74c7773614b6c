"""The live pane on a ClickHouse events store (chdb): rows another program inserts show up."""

from __future__ import annotations

from dataclasses import replace

import pytest
from textual.widgets import DataTable
from tui_helpers import until

from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.live import LiveScreen
from tests.backend.chdb_support import fresh_chdb_url


async def test_a_foreign_insert_into_clickhouse_shows_in_the_live_pane(
        pulse_settings: Settings, fixed_clock: Clock) -> None:
    pytest.importorskip("chdb")
    settings = replace(pulse_settings, events_store=fresh_chdb_url())
    now = fixed_clock.now_ms()
    seed = open_backends(settings.db, settings.events_store)
    seed.events.insert_events(  # type: ignore[attr-defined]
        [NewEvent(f"e{i}", "s1", "view", now - i * 1000, f"s{i}", f"u{i}", "/", None, "US",
                  "desktop") for i in range(3)], now)
    ch = seed.events.ch  # type: ignore[attr-defined]
    app = make_app(settings, clock=fixed_clock, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        table = app.screen.query_one("#live-table", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        # another program: a plain INSERT of the seed's columns, no PULSE code
        ch.command(f"INSERT INTO `{ch.database}`.events (event_id, site_id, event_type, "
                   "timestamp_ms, session_id, user_id, created_at) VALUES ('far', 's1', "
                   f"'signup', {now}, 'sf', 'newcomer', {now})")
        await until(pilot, lambda: table.row_count == 4)
        assert "newcomer" in str(table.get_row_at(0)[3])  # newest first
    seed.close()
