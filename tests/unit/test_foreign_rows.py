"""Issue 15, items 1 and 2: rows another program writes straight into ``events``.

1. Numbers are right whether or not a worker runs: a report, an export, an alert backtest or a
   retention read right after a foreign insert equals a plain query over the raw events, when
   the file is writable (pending rows are folded first), read-only, or while another writer
   holds the lock (the unfolded rows are read from the raw events above the high-water mark).
2. Rows with wrong types never crash anything or poison derived data: they are left out of
   every derived table and report, counted, and deleting them heals everything.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import FIXED_NOW, FIXED_NOW_MS

from pulse_tui.alerts import engine
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.exports.definitions import create_export
from pulse_tui.exports.runner import run_export
from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange
from pulse_tui.simulate import write_batch
from pulse_tui.store import cohorts as cohorts_sql
from pulse_tui.store import derived, reports, retention
from pulse_tui.store.connection import connect
from pulse_tui.store.events import tail_events
from pulse_tui.store.reports_raw import raw_report

DAY = 86_400_000
SITE = "s1"
TODAY = date(2026, 11, 25)
RNG = DateRange(TODAY - timedelta(days=29), TODAY)
NAMES = ("daily", "breakdown", "top-urls", "top-referrers", "top-countries", "top-devices",
         "funnel", "totals")
STEPS = ("view", "signup", "buy")
COLUMNS = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id", "url",
           "referrer", "country", "device_type", "created_at")


def own_events(n: int = 58, day: int = 3) -> list[NewEvent]:
    """PULSE's own rows: ``n`` events on the day ``day`` days before today, and a few others."""
    base = FIXED_NOW_MS - day * DAY - FIXED_NOW_MS % DAY + 3_600_000
    out = [NewEvent(f"own{i}", SITE, STEPS[i % 3], base + i * 60_000, f"os{i // 4}",
                    f"u{i % 9}", f"/p{i % 4}", None if i % 2 else "ref", ("US", "DE")[i % 2],
                    "desktop") for i in range(n)]
    out += [NewEvent(f"old{i}", SITE, "view", FIXED_NOW_MS - (10 + i) * DAY, f"olds{i}",
                     f"u{i % 3}") for i in range(5)]
    return out


def foreign_rows(n: int = 50, day: int = 3, prefix: str = "f") -> list[tuple]:
    """Well-typed rows another program writes, on the same day, with new and known users."""
    base = FIXED_NOW_MS - day * DAY - FIXED_NOW_MS % DAY + 7_200_000
    return [(f"{prefix}{i}", SITE, STEPS[(i + 1) % 3], base + i * 30_000, f"{prefix}s{i // 3}",
             f"u{i % 13}" if i % 5 else None, f"/p{i % 6}", "ref" if i % 3 else None,
             ("US", "FR", None)[i % 3], ("mobile", "desktop")[i % 2], FIXED_NOW_MS)
            for i in range(n)]


def foreign_insert(path: Path, rows: list[tuple]) -> None:
    """A second program: a plain sqlite3 connection, no PULSE code, no catch-up."""
    other = sqlite3.connect(path, timeout=10)
    try:
        other.executemany(
            f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 11)})", rows)
        other.commit()
    finally:
        other.close()


def read_only(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                        isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA busy_timeout = 10000")
    return c


def all_reports(conn: sqlite3.Connection, site: str = SITE) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in NAMES:
        if name == "totals":
            t = reports.totals(conn, site, RNG)
            out[name] = [(t.events, t.users, t.sessions)]
        else:
            kw = {"steps": STEPS} if name == "funnel" else {}
            out[name] = reports.run_report(conn, name, site, RNG, now_ms=FIXED_NOW_MS, **kw)
    for name in ("breakdown", "top-urls"):  # a one-day range: only that day's rows count
        one = DateRange(TODAY - timedelta(days=3), TODAY - timedelta(days=3))
        out[f"{name}-1d"] = reports.run_report(conn, name, site, one, now_ms=FIXED_NOW_MS)
    rt = reports.range_totals(conn, site, DateRange(TODAY - timedelta(days=2), TODAY),
                              FIXED_NOW_MS)
    out["range_totals"] = (rt.current, rt.previous)
    return out


def raw_reference(conn: sqlite3.Connection, site: str = SITE) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in NAMES:
        kw = {"steps": STEPS} if name == "funnel" else {}
        out[name] = raw_report(conn, name, site, RNG, **kw)
    for name in ("breakdown", "top-urls"):
        one = DateRange(TODAY - timedelta(days=3), TODAY - timedelta(days=3))
        out[f"{name}-1d"] = raw_report(conn, name, site, one)
    return out


def assert_matches_raw(conn: sqlite3.Connection, reference: sqlite3.Connection) -> None:
    got = all_reports(conn)
    want = raw_reference(reference)
    for name, rows in want.items():
        assert [tuple(r) for r in got[name]] == [tuple(r) for r in rows], name  # type: ignore[union-attr]


@pytest.fixture
def shared(db_path: Path, conn: sqlite3.Connection) -> Path:
    """PULSE wrote 58 events for a day, then another program inserted 50 more."""
    write_batch(conn, own_events(), FIXED_NOW_MS)
    foreign_insert(db_path, foreign_rows())
    assert derived.pending_rows(conn) == 50
    return db_path


# ---------------------------------------------------------------------------- item 1
def test_report_after_foreign_insert_folds_first_when_writable(shared: Path,
                                                               conn: sqlite3.Connection) -> None:
    daily = dict((r[0], r[1]) for r in reports.run_report(conn, "daily", SITE, RNG,
                                                          now_ms=FIXED_NOW_MS))
    assert daily[TODAY - timedelta(days=3)] == 108
    assert derived.pending_rows(conn) == 0  # folded before reading, no worker involved
    assert_matches_raw(conn, conn)
    # an alert window over that day counts every row too
    from pulse_tui.store import alerts as alerts_sql
    start = (FIXED_NOW_MS // DAY - 3) * DAY
    assert alerts_sql.window_metric(conn, SITE, "events", start, start + DAY) == 108


def test_report_on_a_read_only_file_reads_the_unfolded_rows(shared: Path) -> None:
    ro = read_only(shared)
    try:
        assert_matches_raw(ro, ro)
        assert derived.pending_rows(ro) == 50  # nothing could be written, nothing was
        assert retention.acquisition_rows(ro, SITE, RNG.start, RNG.end, FIXED_NOW_MS) is not None
    finally:
        ro.close()


def test_report_while_another_writer_holds_the_lock(shared: Path, conn: sqlite3.Connection,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(derived, "FOLD_BUSY_MS", 50)
    holder = sqlite3.connect(shared, timeout=10, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert derived.fold_pending(conn) == 50  # could not take the lock: reads around
        assert_matches_raw(conn, conn)
        assert derived.pending_rows(conn) == 50
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000  # restored
    assert_matches_raw(conn, conn)
    assert derived.pending_rows(conn) == 0  # the next read folded them


def test_reports_equal_whether_rows_are_folded_or_read_around(shared: Path, tmp_path: Path
                                                              ) -> None:
    """The same numbers from a read-only connection (unfolded) and after folding, including
    a second foreign batch on top of a partly folded file."""
    ro = read_only(shared)
    try:
        around = all_reports(ro)
        writable = connect(shared)
        try:
            assert all_reports(writable) == around
            foreign_insert(shared, foreign_rows(20, day=1, prefix="g"))
            around = all_reports(ro)
            assert derived.pending_rows(ro) == 20
            assert all_reports(writable) == around
        finally:
            writable.close()
    finally:
        ro.close()


def test_export_after_foreign_insert(shared: Path, conn: sqlite3.Connection,
                                     pulse_settings: Settings) -> None:
    clock = Clock(FIXED_NOW_MS)
    e = create_export(conn, clock, site_id=SITE, type="metrics", name="m", format="json",
                      filters={"days": 30})
    result = run_export(conn, e.id, pulse_settings, clock)
    data = json.loads(Path(result.file_path or "").read_text("utf-8"))
    daily = data["daily"] if isinstance(data, dict) else data
    by_day = {r["day"]: r["events"] for r in daily if "day" in r}
    assert by_day[(TODAY - timedelta(days=3)).isoformat()] == 108


def test_alert_backtest_after_foreign_insert(shared: Path, conn: sqlite3.Connection) -> None:
    cond = {"metric": "events", "window_minutes": 60, "comparison": "gt", "threshold": 30}
    clock = Clock(FIXED_NOW_MS)
    ro = read_only(shared)
    try:
        unfolded = engine.backtest(ro, cond, SITE, clock, 7)
    finally:
        ro.close()
    folded = engine.backtest(conn, cond, SITE, clock, 7)
    assert derived.pending_rows(conn) == 0
    assert unfolded.points == folded.points
    hourly = {}
    for (ts,) in conn.execute("SELECT timestamp_ms FROM events"):
        hourly[ts // 3_600_000] = hourly.get(ts // 3_600_000, 0) + 1
    for p in folded.points:
        assert p.value == hourly.get(p.at // 3_600_000 - 1, 0)
    assert folded.fire_count >= 1  # 2 h of 50 foreign events in 25 minutes: fires


def test_cli_report_after_foreign_insert_without_worker(shared: Path, tmp_path: Path) -> None:
    """The issue's case: 58 events of PULSE's, 50 of another program's: 108, not 58."""
    out = run_cli(shared, "report", "daily", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = {r["day"]: r["events"] for r in json.loads(out.stdout)}
    assert rows[(TODAY - timedelta(days=3)).isoformat()] == 108
    assert out.stderr == ""


def test_report_on_a_site_only_another_program_wrote(shared: Path) -> None:
    """Rows of a new site, inserted by another program: `report --site` knows the site at
    once, whether the rows are folded first (writable) or read around (read-only)."""
    foreign_insert(shared, [(f"n{i}", "fresh", "view", FIXED_NOW_MS - 3 * DAY + i, f"ns{i}",
                             f"nu{i % 2}", None, None, None, None, FIXED_NOW_MS)
                            for i in range(3)])
    ro = read_only(shared)
    try:
        assert reports.resolve_site(ro, "fresh") == "fresh"
        got = reports.run_report(ro, "daily", "fresh", RNG, now_ms=FIXED_NOW_MS)
        assert sum(r[1] for r in got) == 3
    finally:
        ro.close()
    out = run_cli(shared, "report", "daily", "--site", "fresh", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = {r["day"]: (r["events"], r["users"]) for r in json.loads(out.stdout)}
    assert rows[(TODAY - timedelta(days=3)).isoformat()] == (3, 2)


def run_cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PULSE_NOW": FIXED_NOW, "PULSE_DB": str(db)}
    return subprocess.run([sys.executable, "-m", "pulse_tui", "--db", str(db), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


# ---------------------------------------------------------------------------- item 2
T_OK = FIXED_NOW_MS - 2 * DAY
# (description, the row as another program writes it, the column the count names)
BAD_ROWS = [
    ("time as a word", {"timestamp_ms": "yesterday"}, "timestamp_ms"),
    ("time as ISO text", {"timestamp_ms": "2026-11-23T10:00:00Z"}, "timestamp_ms"),
    ("time as a blob", {"timestamp_ms": b"\x00\x01"}, "timestamp_ms"),
    ("time 2^63-1", {"timestamp_ms": 2**63 - 1}, "timestamp_ms"),
    ("time negative", {"timestamp_ms": -5}, "timestamp_ms"),
    ("time in seconds", {"timestamp_ms": T_OK // 1000}, "timestamp_ms"),
    ("time a fraction", {"timestamp_ms": T_OK + 0.5}, "timestamp_ms"),
    ("time infinite", {"timestamp_ms": float("inf")}, "timestamp_ms"),
    ("event_id NULL", {"event_id": None}, "event_id"),
    ("event_id a blob", {"event_id": b"id"}, "event_id"),
    ("site_id a blob", {"site_id": b"s1"}, "site_id"),
    ("event_type empty", {"event_type": ""}, "event_type"),
    ("session_id a blob", {"session_id": b"\xff"}, "session_id"),
    ("user_id a blob", {"user_id": b"u1"}, "user_id"),
    ("user_id empty", {"user_id": ""}, "user_id"),
    ("url a blob", {"url": b"/x"}, "url"),
    ("country a blob", {"country": b"US"}, "country"),
]


def bad_row(n: int, change: dict[str, object]) -> tuple:
    row = {"event_id": f"bad{n}", "site_id": SITE, "event_type": "view", "timestamp_ms": T_OK,
           "session_id": f"bads{n}", "user_id": f"bad-user-{n}", "url": "/bad",
           "referrer": None, "country": "US", "device_type": "desktop",
           "created_at": FIXED_NOW_MS}
    row.update(change)
    return tuple(row[c] for c in COLUMNS)


def clean_copy(tmp_path: Path) -> sqlite3.Connection:
    """The reference: a database holding only the well-typed rows, written by PULSE."""
    ref = connect(tmp_path / "clean.db")
    write_batch(ref, own_events(), FIXED_NOW_MS)
    return ref


def derived_tables(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    out = {}
    for t in ("sessions", "user_first_seen", *derived.ROLLUP_TABLES):
        cols = "*" if t != "sessions" else ("session_id, site_id, user_id, first_event_at, "
                                            "last_event_at, event_count")
        out[t] = sorted(conn.execute(f"SELECT {cols} FROM {t}").fetchall(), key=repr)
    return out


@pytest.mark.parametrize(("what", "change", "column"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_wrong_typed_row_is_left_out_counted_and_healed(
        db_path: Path, conn: sqlite3.Connection, tmp_path: Path, what: str,
        change: dict[str, object], column: str) -> None:
    write_batch(conn, own_events(), FIXED_NOW_MS)
    clock = Clock(FIXED_NOW_MS)
    cohort = cohorts_sql.create_cohort(
        conn, clock, site_id=SITE, name="viewers",
        criteria={"type": "and", "conditions": [
            {"property": "event_type", "operator": "equals", "value": "view"}]})
    foreign_insert(db_path, [bad_row(1, change), *foreign_rows(6, day=2)])
    ref = clean_copy(tmp_path)
    foreign_insert(tmp_path / "clean.db", foreign_rows(6, day=2))
    cohorts_sql.create_cohort(
        ref, clock, site_id=SITE, name="viewers", cohort_id=cohort.cohort_id,
        criteria={"type": "and", "conditions": [
            {"property": "event_type", "operator": "equals", "value": "view"}]})
    # every report equals the reference over the good rows, nothing raises
    assert all_reports(conn) == all_reports(ref)
    # nothing of it reached a derived table
    assert derived_tables(conn) == derived_tables(ref)
    # counted, with the column named
    counts = derived.unusable_counts(conn)
    assert counts["total"] == 1 and counts[column] == 1, counts
    assert f"{column} 1" in derived.describe_unusable(counts)
    # live pane, cohorts and saved-cohort retention go on
    assert all(e.event_id != "bad1" for e in tail_events(conn, limit=1000))
    cohorts_sql.refresh_all(conn, clock)
    members = {m.user_id for m in cohorts_sql.list_members(conn, cohort.cohort_id)}
    assert "bad-user-1" not in members
    assert members == {m.user_id for m in cohorts_sql.list_members(ref, cohort.cohort_id)}
    rows = retention.saved_cohort_rows(conn, FIXED_NOW_MS, cohort_ids=[cohort.cohort_id])
    assert rows == retention.saved_cohort_rows(ref, FIXED_NOW_MS, cohort_ids=[cohort.cohort_id])
    # an alert window never counts it
    from pulse_tui.store import alerts as alerts_sql
    assert alerts_sql.window_metric(conn, SITE, "events", T_OK - 1, T_OK + 1) == 0
    # rebuild-rollups copes and keeps leaving it out
    derived.rebuild(conn, FIXED_NOW_MS)
    assert derived_tables(conn) == derived_tables(ref)
    # deleting it heals everything without a rebuild
    other = sqlite3.connect(db_path)
    other.execute("DELETE FROM events WHERE rowid = (SELECT max(rowid) - 6 FROM events)")
    other.commit()
    other.close()
    assert derived.unusable_counts(conn) == {"total": 0}
    assert derived.describe_unusable(derived.unusable_counts(conn)) == ""
    assert all_reports(conn) == all_reports(ref)
    ref.close()


def test_unusable_rows_are_found_through_the_partial_index(conn: sqlite3.Connection) -> None:
    write_batch(conn, own_events(3), FIXED_NOW_MS)
    assert derived.has_unusable_index(conn)
    plan = " ".join(str(r) for r in conn.execute(
        f"EXPLAIN QUERY PLAN SELECT count(*) FROM events WHERE NOT {derived.VALID_EVENT}"))
    assert derived.UNUSABLE_INDEX in plan
    plan = " ".join(str(r) for r in conn.execute(
        f"EXPLAIN QUERY PLAN SELECT 1 FROM events WHERE rowid NOT IN {derived.UNUSABLE_ROWIDS}"))
    assert derived.UNUSABLE_INDEX in plan


def test_cli_report_and_rebuild_with_unusable_rows(db_path: Path, conn: sqlite3.Connection
                                                   ) -> None:
    """rebuild-rollups (a subprocess) no longer crashes on a time of 2^63-1, also on a file
    whose rollups an earlier version poisoned with it; report's stderr says what it left out."""
    write_batch(conn, own_events(), FIXED_NOW_MS)
    foreign_insert(db_path, [bad_row(1, {"timestamp_ms": 2**63 - 1}),
                             bad_row(2, {"timestamp_ms": "yesterday"})])
    # what an earlier version folded from such a row
    huge_day = (2**63 - 1) // DAY
    conn.execute("INSERT INTO rollup_daily VALUES (?, ?, 1)", (SITE, huge_day))
    conn.execute("INSERT INTO rollup_daily_dims VALUES (?, 'event_type', 'view', ?, 1)",
                 (SITE, huge_day))
    out = run_cli(db_path, "report", "daily", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert "2 rows of events cannot be used" in out.stderr
    assert "timestamp_ms 2" in out.stderr and "Traceback" not in out.stderr
    out = run_cli(db_path, "rebuild-rollups")
    assert out.returncode == 0, out.stderr
    assert "2 rows of events cannot be used" in out.stderr
    assert conn.execute("SELECT count(*) FROM rollup_daily WHERE day = ?",
                        (huge_day,)).fetchone()[0] == 0
    # deleted: heals, and rebuild still works
    conn.execute("DELETE FROM events WHERE event_id LIKE 'bad%'")
    out = run_cli(db_path, "report", "daily", "--format", "csv")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    out = run_cli(db_path, "rebuild-rollups")
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_retention_report_on_a_read_only_file_reads_the_unfolded_rows(
        shared: Path, conn: sqlite3.Connection) -> None:
    ro = read_only(shared)
    try:
        around = reports.run_report(ro, "retention", SITE, RNG, now_ms=FIXED_NOW_MS)
        assert derived.pending_rows(ro) == 50
    finally:
        ro.close()
    assert around == reports.run_report(conn, "retention", SITE, RNG, now_ms=FIXED_NOW_MS)
    assert derived.pending_rows(conn) == 0
    sizes = [r[1] for r in around]
    assert sum(sizes) == 13  # u0..u12: the foreign rows brought u9..u12


def test_file_from_before_the_index_gets_it_on_first_read(db_path: Path,
                                                          conn: sqlite3.Connection) -> None:
    write_batch(conn, own_events(5), FIXED_NOW_MS)
    conn.execute(f"DROP INDEX {derived.UNUSABLE_INDEX}")
    foreign_insert(db_path, [bad_row(1, {"timestamp_ms": "yesterday"})])
    derived.catch_up_tx(conn, FIXED_NOW_MS)  # folded by an older build's worker, say
    conn.execute(f"DROP INDEX {derived.UNUSABLE_INDEX}")
    ro = read_only(db_path)
    try:  # read-only: counted with a scan, nothing written
        assert derived.unusable_counts(ro)["total"] == 1
        assert not derived.has_unusable_index(ro)
    finally:
        ro.close()
    assert derived.unusable_counts(conn)["total"] == 1
    assert derived.has_unusable_index(conn)
