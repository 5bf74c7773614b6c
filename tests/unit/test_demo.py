"""The demo's contents on a tiny build (the real demo has 90 days; tests never build it)."""

from __future__ import annotations

import sqlite3

from conftest import FIXED_NOW_MS

from pulse_tui.demo import build_history


def test_demo_seeds_every_pane(conn: sqlite3.Connection) -> None:
    build_history(conn, FIXED_NOW_MS, days=2)
    imports = conn.execute("SELECT file_name, status, failed_records FROM import_jobs "
                           "ORDER BY file_name").fetchall()
    assert imports == [("cohort_members.csv", "completed", 0), ("events.csv", "completed", 3),
                       ("users.csv", "completed", 0)]
    cohorts = dict(conn.execute(
        "SELECT c.name, (SELECT count(*) FROM cohort_members m WHERE m.cohort_id = c.cohort_id "
        "AND m.is_active = 1) FROM cohorts c").fetchall())
    assert cohorts["Beta testers"] == 12
    assert set(cohorts) == {"Beta testers", "Signed up in North America",
                            "Paying, active this week"}
    assert conn.execute("SELECT count(*) FROM alert_rules").fetchone() == (2,)
    assert conn.execute("SELECT count(DISTINCT site_id) FROM events").fetchone()[0] >= 4
