"""Retention cleanup on a fixed clock: events by event time, sessions, rollups, exports."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from pulse_tui.clock import DAY_MS, Clock, parse_instant
from pulse_tui.config import Settings
from pulse_tui.exports import create_export, get_export, recent_runs, run_export
from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange
from pulse_tui.simulate import write_batch
from pulse_tui.store import reports
from pulse_tui.store.cleanup import rollup_tables, run_cleanup
from pulse_tui.worker.jobs import cleanup_job
from pulse_tui.worker.scheduler import JobContext

T0 = parse_instant("2026-11-25T12:00:00Z")
CUTOFF = T0 - 90 * DAY_MS
SITES = ("acme", "beta")
ROLLUP_RETENTION = 100


def _events() -> list[NewEvent]:
    """120 days of events on two sites; some sessions straddle the 90-day cutoff, some lie
    wholly before it; timestamps hit the cutoff exactly and one ms either side."""
    out: list[NewEvent] = []
    n = 0
    for day in range(120, -1, -1):
        for k in range(6):
            site = SITES[k % 2]
            ts = T0 - day * DAY_MS + k * 3_600_000
            session = f"{site}-s{day // 2}-{k % 3}"  # two days per session: straddles
            out.append(NewEvent(f"e{n}", site, ("pageview", "signup")[k % 2], ts, session,
                                f"u{(day + k) % 9}" if k != 5 else None, f"/p{k}",
                                None, "US" if day > 95 else "DE", "desktop"))
            n += 1
    for delta in (-1, 0, 1):
        out.append(NewEvent(f"edge{delta}", "acme", "pageview", CUTOFF + delta, "edge-session",
                            "u1", "/edge"))
    # the last inserted (largest rowid) is recent, see the cleanup module docstring
    out.sort(key=lambda e: e.timestamp_ms)
    return out


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    events = _events()
    for i in range(0, len(events), 200):
        write_batch(conn, events[i:i + 200], T0)
    return conn


@pytest.fixture
def settings(pulse_settings: Settings) -> Settings:
    return replace(pulse_settings, events_retention_days=90,
                   rollup_retention_days=ROLLUP_RETENTION, exports_retention_days=30)


def _sessions(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT session_id, first_event_at, last_event_at, event_count "
                        "FROM sessions ORDER BY session_id").fetchall()


def _sessions_from_events(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT session_id, min(timestamp_ms), max(timestamp_ms), count(*) "
                        "FROM events GROUP BY session_id ORDER BY session_id").fetchall()


def _rollups(conn: sqlite3.Connection, from_day: int) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table, col in rollup_tables(conn):
        bound = from_day if col == "day" else from_day * 24
        out[table] = conn.execute(f"SELECT * FROM {table} WHERE {col} >= ? ORDER BY 1, 2, 3",
                                  (bound,)).fetchall()
    return out


def _report_snapshot(conn: sqlite3.Connection, rng: DateRange) -> list[object]:
    out: list[object] = []
    for site in SITES:
        for name in ("daily", "breakdown", "top-urls", "top-countries"):
            out.append(reports.run_report(conn, name, site, rng, now_ms=T0))
        out.append(reports.totals(conn, site, rng))
    return out


@pytest.mark.parametrize("batch", [7, 5000])
def test_cleanup_deletes_exactly_the_old_events_and_keeps_sessions_consistent(
        db: sqlite3.Connection, settings: Settings, fixed_clock: Clock, batch: int) -> None:
    keep = {r[0] for r in db.execute("SELECT event_id FROM events WHERE timestamp_ms >= ?",
                                     (CUTOFF,))}
    total = db.execute("SELECT count(*) FROM events").fetchone()[0]
    assert 0 < len(keep) < total and "edge0" in keep and "edge-1" not in keep
    first_seen = db.execute("SELECT * FROM user_first_seen ORDER BY 1, 2").fetchall()
    sessions_before = {r[0] for r in _sessions(db)}
    straddling = {r[0] for r in db.execute(
        "SELECT session_id FROM events GROUP BY session_id "
        "HAVING min(timestamp_ms) < ? AND max(timestamp_ms) >= ?", (CUTOFF, CUTOFF))}
    assert straddling  # the scenario cuts sessions in two

    result = run_cleanup(db, settings, fixed_clock, batch=batch)

    assert {r[0] for r in db.execute("SELECT event_id FROM events")} == keep
    assert result.events == total - len(keep) and result.events_cutoff_ms == CUTOFF
    assert _sessions(db) == _sessions_from_events(db)
    assert result.sessions_deleted == len(sessions_before) - len(_sessions(db)) > 0
    assert result.sessions_updated >= len(straddling - {"edge-session"})
    assert db.execute("SELECT * FROM user_first_seen ORDER BY 1, 2").fetchall() == first_seen
    # a second pass finds nothing more
    again = run_cleanup(db, settings, fixed_clock, batch=batch)
    assert (again.events, again.sessions_deleted, again.rollup_rows) == (0, 0, 0)


def test_rollups_within_retention_and_reports_are_unchanged(
        db: sqlite3.Connection, settings: Settings, fixed_clock: Clock) -> None:
    rollup_cut = (T0 - ROLLUP_RETENTION * DAY_MS) // DAY_MS
    tables = {t for t, _ in rollup_tables(db)}
    assert {"rollup_daily", "rollup_hourly", "rollup_daily_users", "rollup_daily_sessions",
            "rollup_daily_dims"} <= tables
    kept = _rollups(db, rollup_cut)
    inside = DateRange(fixed_clock.today().replace(day=1), fixed_clock.today())
    recent = reports.make_range(fixed_clock, "2026-09-01", "2026-11-25")
    # older than the raw events, still within the rollups: served by the rollups
    old = reports.make_range(fixed_clock, "2026-08-20", "2026-08-26")
    before = [_report_snapshot(db, r) for r in (inside, recent, old)]
    assert sum(r.events for r in reports.daily(db, "acme", old)) > 0
    acquisition = db.execute("SELECT count(*) FROM acquisition_retention").fetchone()[0]

    result = run_cleanup(db, settings, fixed_clock)

    assert result.rollup_cutoff_day == rollup_cut and result.rollup_rows > 0
    assert _rollups(db, rollup_cut) == kept
    for table, col in rollup_tables(db):
        bound = rollup_cut if col == "day" else rollup_cut * 24
        assert db.execute(f"SELECT count(*) FROM {table} WHERE {col} < ?",
                          (bound,)).fetchone()[0] == 0, table
    assert [_report_snapshot(db, r) for r in (inside, recent, old)] == before
    assert db.execute("SELECT count(*) FROM acquisition_retention").fetchone()[0] == acquisition


def test_cleanup_disabled_does_nothing(db: sqlite3.Connection, settings: Settings,
                                       fixed_clock: Clock) -> None:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name NOT LIKE 'sqlite_%'")]

    def counts() -> dict[str, int]:
        return {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}

    before = counts()
    off = replace(settings, cleanup_enabled=False)
    result = run_cleanup(db, off, fixed_clock)
    assert not result.enabled and result.events == 0
    assert counts() == before
    assert cleanup_job(JobContext(conn=db, settings=off, clock=fixed_clock)) == \
        "cleanup disabled (cleanup_enabled = false)"
    assert counts() == before
    # the job entry point with cleanup on does delete, and says how much
    text = cleanup_job(JobContext(conn=db, settings=settings, clock=fixed_clock))
    assert text.startswith("deleted ") and counts()["events"] < before["events"]


def test_pending_and_top_rowid_events_are_kept(conn: sqlite3.Connection, settings: Settings,
                                               fixed_clock: Clock) -> None:
    """Events not yet folded into the rollups, and the largest rowid, survive (docstring)."""
    write_batch(conn, [NewEvent("a", "acme", "pageview", CUTOFF - 5, "s1"),
                       NewEvent("b", "acme", "pageview", T0 - 5, "s2")], T0)
    conn.execute("INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
                 "created_at) VALUES ('c', 'acme', 'pageview', ?, 's3', ?)", (CUTOFF - 9, T0))
    run_cleanup(conn, settings, fixed_clock)
    assert {r[0] for r in conn.execute("SELECT event_id FROM events")} == {"b", "c"}
    # s1 went with its event; s3 was folded in afterwards (the cohort refresh catches up)
    assert [r[0] for r in _sessions(conn)] == ["s2", "s3"] and \
        _sessions(conn) == _sessions_from_events(conn)


def test_cohort_membership_follows_deleted_events(db: sqlite3.Connection, settings: Settings,
                                                  fixed_clock: Clock) -> None:
    from pulse_tui.store.cohorts import create_cohort

    # country US only on events more than 95 days old
    cohort = create_cohort(db, fixed_clock, site_id="acme", name="old US", criteria={
        "type": "and", "conditions": [{"property": "country", "operator": "equals",
                                       "value": "US"}]})
    active = "SELECT count(*) FROM cohort_members WHERE cohort_id = ? AND is_active = 1"
    assert db.execute(active, (cohort.cohort_id,)).fetchone()[0] > 0
    result = run_cleanup(db, settings, fixed_clock)
    assert result.cohorts_refreshed >= 1
    assert db.execute(active, (cohort.cohort_id,)).fetchone()[0] == 0


def test_old_export_runs_files_and_one_off_exports_go(
        db: sqlite3.Connection, settings: Settings, tmp_path: Path) -> None:
    old_clock, new_clock, now = Clock(T0 - 40 * DAY_MS), Clock(T0 - DAY_MS), Clock(T0)
    daily = create_export(db, old_clock, site_id="acme", type="metrics", name="daily",
                          scheduled={"frequency": "daily", "next_run": T0 - 40 * DAY_MS})
    first = run_export(db, daily.id, settings, old_clock)
    latest = run_export(db, daily.id, settings, new_clock)
    once_old = create_export(db, old_clock, site_id="acme", type="metrics", name="once old")
    once_old_file = run_export(db, once_old.id, settings, old_clock).file_path
    once_new = create_export(db, new_clock, site_id="acme", type="metrics", name="once new")
    run_export(db, once_new.id, settings, new_clock)
    # a stale scheduled export whose only run is old keeps its definition
    weekly = create_export(db, old_clock, site_id="acme", type="metrics", name="stale",
                           scheduled={"frequency": "weekly", "next_run": T0 + DAY_MS})
    stale_run = run_export(db, weekly.id, settings, old_clock)
    # a run row pointing outside the export dir (another program): the file is not touched
    outside = tmp_path / "precious.csv"
    outside.write_text("keep me")
    db.execute("INSERT INTO export_runs (export_id, started_at, finished_at, status, "
               "file_path) VALUES (?, ?, ?, 'completed', ?)",
               (daily.id, T0 - 50 * DAY_MS, T0 - 50 * DAY_MS, str(outside)))
    # webhook deliveries: an old delivered one goes, an old pending one stays
    for i, status in enumerate(("delivered", "pending")):
        db.execute("INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, "
                   "status, next_attempt_at, created_at) VALUES (?, 'ep', 'export.completed', "
                   "'{}', ?, 0, ?)", (f"d{i}", status, T0 - 40 * DAY_MS))

    result = run_cleanup(db, settings, now)

    assert not Path(first.file_path or "").exists()
    assert not Path(once_old_file or "").exists() and not Path(stale_run.file_path or "").exists()
    assert Path(latest.file_path or "").is_file() and outside.read_text() == "keep me"
    assert [r.id for r in recent_runs(db, daily.id)] == [latest.run_id]
    assert get_export(db, daily.id).file_url == latest.file_url
    ids = {r[0] for r in db.execute("SELECT id FROM export_jobs")}
    assert ids == {daily.id, once_new.id, weekly.id}
    assert recent_runs(db, once_old.id) == [] and recent_runs(db, weekly.id) == []
    assert get_export(db, weekly.id).file_url is None  # its file is gone
    assert (result.export_runs, result.export_files, result.one_off_exports) == (4, 3, 1)
    assert [r[0] for r in db.execute("SELECT id FROM webhook_deliveries")] == ["d1"]
    assert result.deliveries == 1
    assert json.loads(db.execute("SELECT scheduled FROM export_jobs WHERE id = ?",
                                 (weekly.id,)).fetchone()[0])["frequency"] == "weekly"
