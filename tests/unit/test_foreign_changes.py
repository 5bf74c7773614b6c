"""Rows another program DELETEs or UPDATEs after PULSE folded them (and rowids it reuses).

A report read right after such a change, by a plain sqlite3 connection of another process with
no PULSE running, equals a plain query over the raw events: the watch triggers record the rows
and the next fold re-derives their days (``derived.refold_stale``); a read-only reader counts
those sites from the raw events. Deleting the newest row and inserting reuses its rowid: the
delete trigger lowers the fold mark, and the mark's identity catches it when the triggers were
missing (then everything is rebuilt).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import FIXED_NOW_MS
from test_derived import derived_state
from test_foreign_rows import (
    RNG,
    SITE,
    TODAY,
    all_reports,
    assert_matches_raw,
    foreign_insert,
    foreign_rows,
    own_events,
    raw_reference,
    read_only,
    run_cli,
)

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import cleanup, derived, retention
from pulse_tui.store.connection import connect

DAY = 86_400_000


def other_program(path: Path, *statements: str) -> None:
    """Another process: the sqlite3 command-line shell, no PULSE code, PULSE not running."""
    sqlite3_cli = shutil.which("sqlite3")
    script = ".bail on\n.timeout 10000\n" + ";\n".join(statements) + ";\n"
    if sqlite3_cli is None:  # pragma: no cover - the CI image has it; same SQL through Python
        other = sqlite3.connect(path, timeout=10)
        other.executescript(";\n".join(statements) + ";")
        other.commit()
        other.close()
        return
    done = subprocess.run([sqlite3_cli, str(path)], input=script, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr, done.stderr


@pytest.fixture
def folded(db_path: Path, conn: sqlite3.Connection) -> Path:
    """PULSE's 63 events and another program's 50, all folded; then PULSE stops."""
    write_batch(conn, own_events(), FIXED_NOW_MS)
    foreign_insert(db_path, foreign_rows())
    derived.catch_up_tx(conn, FIXED_NOW_MS)
    assert derived.pending_rows(conn) == 0 and not derived.has_stale(conn)
    conn.close()
    return db_path


CHANGES = {
    "delete": ("DELETE FROM events WHERE event_id IN ('own3', 'own17', 'f8', 'old2')",),
    "update": (
        "UPDATE events SET user_id = 'u-new', country = 'JP' WHERE event_id IN ('own1', 'f2')",
        f"UPDATE events SET timestamp_ms = timestamp_ms - {5 * DAY} WHERE event_id = 'own4'",
        "UPDATE events SET event_type = 'buy', url = NULL WHERE event_id LIKE 'f1%'",
        "UPDATE events SET session_id = 'moved' WHERE event_id IN ('own9', 'own10')",
        "UPDATE events SET site_id = 'elsewhere' WHERE event_id = 'own11'",
    ),
    "unusable": ("UPDATE events SET timestamp_ms = 'yesterday' WHERE event_id = 'own5'",),
    "delete-all-of-a-day": (
        f"DELETE FROM events WHERE timestamp_ms / {DAY} = {FIXED_NOW_MS // DAY - 3}",),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_cli_report_after_foreign_delete_or_update(folded: Path, change: str) -> None:
    """The issue's case: a DELETE / UPDATE by the sqlite3 shell, then `pulse-tui report`
    (a new process, no worker): every number equals the plain query over the raw events."""
    other_program(folded, *CHANGES[change])
    raw = sqlite3.connect(folded)
    try:
        want = raw_reference(raw)
        days = {r[0].isoformat(): r[1:] for r in want["daily"]}  # type: ignore[union-attr]
    finally:
        raw.close()
    out = run_cli(folded, "report", "daily", "--site", SITE, "--format", "json",
                  "--from", RNG.start.isoformat(), "--to", RNG.end.isoformat())
    assert out.returncode == 0, out.stderr
    got = {r["day"]: (r["events"], r["users"], r["sessions"]) for r in json.loads(out.stdout)}
    assert got == days
    out = run_cli(folded, "report", "top-countries", "--site", SITE, "--format", "json",
                  "--from", RNG.start.isoformat(), "--to", RNG.end.isoformat())
    assert out.returncode == 0, out.stderr
    assert [(r["value"], r["events"], r["users"]) for r in json.loads(out.stdout)] == want[
        "top-countries"]
    conn = connect(folded)
    try:  # every report, and every derived table equals a rebuild from the events
        assert_matches_raw(conn, conn)
        assert not derived.has_stale(conn)
        assert_rebuild_changes_nothing(conn)
    finally:
        conn.close()


def assert_rebuild_changes_nothing(conn: sqlite3.Connection) -> None:
    """Every derived table equals what a rebuild from the events gives."""
    state = derived_state(conn)
    derived.rebuild(conn, FIXED_NOW_MS)
    assert derived_state(conn) == state


def test_read_only_reader_counts_changed_sites_from_the_raw_events(folded: Path) -> None:
    other_program(folded, *CHANGES["delete"], *CHANGES["update"])
    ro = read_only(folded)
    try:
        assert derived.fold_pending(ro) == 0
        assert derived.stale(ro, SITE)  # cannot re-derive: read around
        assert_matches_raw(ro, ro)
    finally:
        ro.close()
    conn = connect(folded)
    try:
        before = all_reports(conn)  # folds: the derived rows are right again
        assert not derived.stale(conn, SITE)
        assert_matches_raw(conn, conn)
        assert before == all_reports(conn)
    finally:
        conn.close()


def test_deleting_the_newest_row_then_inserting_reuses_its_rowid(folded: Path) -> None:
    """SQLite gives the next insert max(rowid) + 1: the deleted newest row's rowid, below the
    fold mark. The delete trigger lowers the mark, so the insert is counted."""
    conn = connect(folded)
    top = conn.execute("SELECT max(rowid) FROM events").fetchone()[0]
    conn.close()
    ts = FIXED_NOW_MS - 2 * DAY
    other_program(
        folded, "DELETE FROM events WHERE rowid = (SELECT max(rowid) FROM events)",
        "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, user_id, "
        f"created_at) VALUES ('again', '{SITE}', 'view', {ts}, 'sx', 'u-again', 0)")
    conn = connect(folded)
    try:
        assert conn.execute("SELECT rowid FROM events WHERE event_id = 'again'").fetchone()[0] \
            == top
        assert derived.high_water_mark(conn) == top - 1
        assert_matches_raw(conn, conn)
        day = [r for r in all_reports(conn)["daily"] if r[0] == TODAY - timedelta(days=2)]  # type: ignore[union-attr]
        assert day[0][1:3] == (1, 1)
    finally:
        conn.close()


def test_insert_or_replace_over_stored_ids_counts_each_event_once(
        folded: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 13: ``INSERT OR REPLACE`` deletes the old row without the delete trigger (another
    program has recursive_triggers off); the replace triggers record it, so a report right
    after equals the plain query over the raw events, without a rebuild (the newest row and a
    move to another day and site included)."""
    ts = FIXED_NOW_MS - 2 * DAY
    cols = "event_id, site_id, event_type, timestamp_ms, session_id, user_id, url, created_at"
    other_program(
        folded,
        f"INSERT OR REPLACE INTO events ({cols}) VALUES "
        f"('own2', '{SITE}', 'buy', {ts}, 'os0', 'u-r', '/r', 0), "
        f"('f3', 'elsewhere', 'view', {ts}, 'fs1', 'u3', NULL, 0)",
        f"REPLACE INTO events ({cols}) SELECT event_id, site_id, 'signup', timestamp_ms - {DAY}, "
        "session_id, user_id, url, 0 FROM events WHERE rowid = (SELECT max(rowid) FROM events)")
    conn = connect(folded)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 113
        with caplog.at_level("WARNING"):
            assert_matches_raw(conn, conn)
        assert "rebuilding" not in caplog.text
        assert derived.pending_rows(conn) == 0 and not derived.has_stale(conn)
        assert_rebuild_changes_nothing(conn)
    finally:
        conn.close()


def test_duplicates_the_importer_ignores_leave_nothing_to_refold(folded: Path) -> None:
    """The importer's INSERT OR IGNORE of stored ids fires the BEFORE trigger but not the AFTER
    one: nothing is recorded as changed, and the copies are dropped by the fold."""
    conn = connect(folded)
    try:
        assert write_batch(conn, own_events()[:10], FIXED_NOW_MS) == 0
        assert not derived.has_stale(conn)
        assert conn.execute(f"SELECT count(*) FROM {derived.REPLACED_TABLE}").fetchone()[0] == 0
        assert_matches_raw(conn, conn)
    finally:
        conn.close()


def test_a_file_of_duplicates_imported_again_leaves_no_copies(folded: Path,
                                                             tmp_path: Path) -> None:
    """Every row a duplicate: the transaction folds nothing, and still drops the copies the
    BEFORE trigger made (a re-sent million-row file would otherwise leave a million)."""
    from pulse_tui.ingest.importer import import_file

    csv = tmp_path / "events.csv"
    csv.write_text("event_id,site_id,event_type,timestamp_ms,session_id\n" + "".join(
        f"own{i},{SITE},view,{FIXED_NOW_MS - DAY},os{i}\n" for i in range(20)))
    conn = connect(folded)
    try:
        result = import_file(conn, csv, kind="events", clock=Clock(FIXED_NOW_MS))
        assert (result.processed, result.duplicates) == (0, 20)
        assert conn.execute(f"SELECT count(*) FROM {derived.REPLACED_TABLE}").fetchone()[0] == 0
        assert not derived.has_stale(conn)
        assert_matches_raw(conn, conn)
    finally:
        conn.close()


def test_mark_mismatch_without_triggers_rebuilds(folded: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A file whose watch triggers were dropped (an older build, another program): deleting
    the newest rows and inserting is still caught by the identity kept at the fold mark."""
    ts = FIXED_NOW_MS - 2 * DAY
    other_program(
        folded, f"DROP TRIGGER {derived.DELETE_TRIGGER}", f"DROP TRIGGER {derived.UPDATE_TRIGGER}",
        "DELETE FROM events WHERE rowid > (SELECT max(rowid) - 3 FROM events)",
        "DELETE FROM events WHERE event_id = 'own20'",
        *(f"INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
          f"user_id, created_at) VALUES ('r{i}', '{SITE}', 'view', {ts + i}, 'sr', 'ur', 0)"
          for i in range(2)))
    conn = connect(folded)
    try:
        assert not derived.mark_ok(conn)
        assert_matches_raw(conn, conn)  # the first read rebuilt everything
        assert "changed behind PULSE's back" in caplog.text
        assert derived.mark_ok(conn)
        assert derived.has_stale(conn) is False
        # the triggers are back: the next foreign delete is seen without a rebuild
        conn.close()
        other_program(folded, "DELETE FROM events WHERE event_id = 'own21'")
        conn = connect(folded)
        assert derived.has_stale(conn)
        assert_matches_raw(conn, conn)
    finally:
        conn.close()


def test_file_from_before_the_triggers_gets_them_on_first_read(folded: Path) -> None:
    other_program(folded, f"DROP TRIGGER {derived.DELETE_TRIGGER}",
                  f"DROP TRIGGER {derived.UPDATE_TRIGGER}", f"DROP TABLE {derived.STALE_TABLE}",
                  f"DELETE FROM pulse_meta WHERE key = '{derived.MARK_KEY}'")
    ro = read_only(folded)
    try:  # read-only: nothing written, nothing stale
        assert not derived.stale(ro, SITE)
        assert_matches_raw(ro, ro)
    finally:
        ro.close()
    conn = connect(folded)
    try:
        all_reports(conn)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {derived.DELETE_TRIGGER, derived.UPDATE_TRIGGER, derived.STALE_TABLE} <= names
        assert derived.get_meta(conn, derived.MARK_KEY) is not None and derived.mark_ok(conn)
    finally:
        conn.close()
    other_program(folded, "UPDATE events SET event_type = 'buy' WHERE event_id = 'own0'")
    conn = connect(folded)
    try:
        assert_matches_raw(conn, conn)
    finally:
        conn.close()


def test_cleanup_deletes_keep_the_rollups_but_foreign_ones_before_it_count(
        db_path: Path, conn: sqlite3.Connection, pulse_settings: Settings) -> None:
    """Cleanup's own deletes keep the rollups of those days (SPEC 9); a foreign delete made
    before the cleanup runs is still applied."""
    write_batch(conn, own_events(), FIXED_NOW_MS)
    # a newer row on top (cleanup never deletes the row with the largest rowid)
    write_batch(conn, [NewEvent("top", SITE, "view", FIXED_NOW_MS - 60_000, "st", "u0")],
                FIXED_NOW_MS)
    rollup_before = dict(conn.execute("SELECT day, events FROM rollup_daily"))
    old_day = (FIXED_NOW_MS - 10 * DAY) // DAY
    other_program(db_path, "DELETE FROM events WHERE event_id = 'own0'")  # day -3
    settings = dataclasses.replace(pulse_settings, events_retention_days=5)
    cleanup.run_cleanup(conn, settings, Clock(FIXED_NOW_MS))
    assert conn.execute("SELECT count(*) FROM events WHERE event_id LIKE 'old%'").fetchone()[0] \
        == 0
    after = dict(conn.execute("SELECT day, events FROM rollup_daily"))
    assert after[old_day] == rollup_before[old_day] == 1
    three = (FIXED_NOW_MS - 3 * DAY) // DAY
    assert after[three] == rollup_before[three] - 1
    assert not derived.has_stale(conn)
    # acquisition retention still counts the cleaned users' first events
    rows = retention.acquisition_rows(conn, SITE, TODAY - timedelta(days=20), TODAY,
                                      FIXED_NOW_MS)
    assert sum(r.size for r in rows) == 9


def test_the_replaced_rows_are_probed_by_id_and_old_files_get_the_index(tmp_path: Path) -> None:
    """Every insert's AFTER trigger looks its id up in derived_replaced, where the ignored
    duplicates of a transaction wait until it ends: by index (a scan per insert made a re-sent
    file's new rows after its duplicates quadratic: 26 s for 80,000 + 80,000 rows)."""
    conn = connect(tmp_path / "p.db")
    try:
        probe = (f"EXPLAIN QUERY PLAN SELECT 1 FROM {derived.REPLACED_TABLE} "
                 "WHERE event_id = 'x'")
        assert any(derived.REPLACED_INDEX in r[3] for r in conn.execute(probe))
        conn.execute(f"DROP INDEX {derived.REPLACED_INDEX}")  # a file from before the index
        conn.execute("BEGIN IMMEDIATE")
        derived.ensure_watch(conn)
        conn.execute("COMMIT")
        assert any(derived.REPLACED_INDEX in r[3] for r in conn.execute(probe))
    finally:
        conn.close()
