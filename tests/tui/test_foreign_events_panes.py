"""Issue 15 in the TUI (no worker): rows another program writes straight into ``events``.

The Live pane never crashes or blanks on a wrong-typed row and lists only usable rows; the
Charts pane counts rows nobody folded yet; the Jobs pane says how many rows cannot be used and
the line goes away once they are deleted.
"""

from __future__ import annotations

import sqlite3

from conftest import FIXED_NOW_MS, async_wait_until
from textual.widgets import DataTable, Static
from tui_helpers import event, init_db, insert_events, until

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.charts import ChartsScreen
from pulse_tui.tui.screens.jobs import JobsScreen
from pulse_tui.tui.screens.live import LiveScreen
from tests.tui.tui_helpers import press_until

COLUMNS = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id", "url",
           "referrer", "country", "device_type", "created_at")

# one wrong-typed row of each kind another program can store
BAD = [
    {"timestamp_ms": "yesterday"},
    {"timestamp_ms": "2026-11-25T11:00:00Z"},
    {"timestamp_ms": b"\x00\x01\x02"},
    {"timestamp_ms": 2**63 - 1},
    {"timestamp_ms": -(2**63)},
    {"timestamp_ms": FIXED_NOW_MS - 0.5},
    {"timestamp_ms": float("-inf")},
    {"event_id": None},
    {"site_id": b"acme-web"},
    {"event_type": b"\xff\xfe"},
    {"session_id": b"s"},
    {"user_id": b"\x00"},
    {"url": b"\x1b[31m"},
    {"referrer": b"r"},
    {"device_type": b"d"},
    {"created_at": "now"},  # not a number PULSE shows: the row stays usable
]


def write_bad(path, rows: list[dict]) -> None:
    other = sqlite3.connect(path, timeout=10)
    try:
        for n, change in enumerate(rows):
            row = {**event(900 + n), "created_at": FIXED_NOW_MS, **change}
            other.execute(f"INSERT INTO events ({', '.join(COLUMNS)}) "
                          f"VALUES ({', '.join('?' * len(COLUMNS))})",
                          [row[c] for c in COLUMNS])
        other.commit()
    finally:
        other.close()


def delete_bad(path) -> None:
    other = sqlite3.connect(path, timeout=10)
    other.execute("DELETE FROM events WHERE NOT (typeof(timestamp_ms) = 'integer' "
                  "AND timestamp_ms BETWEEN 946684800000 AND 4102444800000) "
                  "OR typeof(event_id) != 'text' OR typeof(site_id) != 'text' "
                  "OR typeof(event_type) != 'text' OR typeof(session_id) != 'text' "
                  "OR typeof(user_id) = 'blob' OR typeof(url) = 'blob' "
                  "OR typeof(referrer) = 'blob' OR typeof(device_type) = 'blob'")
    other.commit()
    other.close()


async def test_live_pane_survives_wrong_typed_rows(pulse_settings: Settings) -> None:
    init_db(pulse_settings.db)
    insert_events(pulse_settings.db, [event(i) for i in range(3)])
    write_bad(pulse_settings.db, BAD)
    insert_events(pulse_settings.db, [event(i) for i in range(3, 5)])
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        table = app.screen.query_one("#live-table", DataTable)
        # the 5 good rows and the usable one with an odd created_at; nothing else
        await until(pilot, lambda: table.row_count == 6)
        write_bad(pulse_settings.db, [{**b, "event_id": f"late{n}"} if "event_id" not in b
                                      else {"site_id": b"x", "event_id": f"late{n}"}
                                      for n, b in enumerate(BAD[:-1])])
        insert_events(pulse_settings.db, [event(50, etype="signup", user="after-bad")])
        await until(pilot, lambda: table.row_count == 7)
        assert "after-bad" in str(table.get_row_at(0))
        assert app.is_running
        assert app.return_code is None


def _totals(app) -> str:
    return str(app.screen.query_one("#charts-totals", Static).render())


async def test_charts_pane_counts_rows_no_worker_folded(pulse_settings: Settings) -> None:
    init_db(pulse_settings.db)
    conn = sqlite3.connect(pulse_settings.db)  # the app's own rows folded, then foreign ones
    conn.close()
    from pulse_tui.models import NewEvent
    from pulse_tui.simulate import write_batch
    from pulse_tui.store.connection import connect
    pulse = connect(pulse_settings.db)
    write_batch(pulse, [NewEvent(f"own{i}", "acme-web", "pageview", FIXED_NOW_MS - 3_600_000 + i,
                                 f"os{i}", f"u{i}") for i in range(8)], FIXED_NOW_MS)
    pulse.close()
    insert_events(pulse_settings.db, [event(i, user=f"f{i % 4}") for i in range(50)])
    write_bad(pulse_settings.db, BAD[:4])
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await press_until(pilot, ChartsScreen, "2", timeout=5)
        await async_wait_until(lambda: "events 58 " in _totals(app), timeout=10)
        assert "users 12 " in _totals(app)  # u0..u7 and f0..f3


async def test_jobs_pane_shows_unusable_rows_until_deleted(pulse_settings: Settings) -> None:
    init_db(pulse_settings.db)
    insert_events(pulse_settings.db, [event(i) for i in range(3)])
    write_bad(pulse_settings.db, BAD[:3])
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await press_until(pilot, JobsScreen, "6", timeout=5)
        line = app.screen.query_one("#jobs-unusable", Static)
        await until(pilot, lambda: line.display and "3 rows of events" in str(line.render()))
        assert "timestamp_ms 3" in str(line.render())
        delete_bad(pulse_settings.db)
        await until(pilot, lambda: not line.display)
