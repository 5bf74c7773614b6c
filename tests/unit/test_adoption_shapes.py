"""Adoption, other shapes of another program's file (review of issue 15 item 4): an `events`
table that is a WITHOUT ROWID or virtual table is not the seed's; a user_version set by
another program does not make a file PULSE's; a foreign WAL file gets no -wal/-shm beside it
from a refusal; `report` leaves a PULSE file's rollback-journal mode as it is."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_adoption import file_state, last_line, run_cli
from test_schema import SEED_TABLES

from pulse_tui.store.connection import connect

COLS = ", ".join(SEED_TABLES["events"])
ROW = ("INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
       "created_at) VALUES ('e1', 'site-a', 'pageview', 1700000000000, 's1', 1)")


def make(path: Path, *statements: str) -> None:
    raw = sqlite3.connect(path)
    for statement in statements:
        raw.execute(statement)
    raw.commit()
    raw.close()


@pytest.mark.parametrize("create", [
    f"CREATE TABLE events ({COLS}, PRIMARY KEY (event_id)) WITHOUT ROWID",
    f"CREATE VIRTUAL TABLE events USING fts5({COLS})",
], ids=["without-rowid", "virtual"])
@pytest.mark.parametrize("command", [["report", "daily"], ["migrate"]], ids=["report", "migrate"])
def test_events_table_of_another_kind_is_refused_untouched(tmp_path: Path, create: str,
                                                           command: list[str]) -> None:
    db = tmp_path / "db" / "other.sqlite"
    db.parent.mkdir()
    make(db, create, ROW)
    before = file_state(db)
    r = run_cli("--db", str(db), *command)
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = last_line(r.stderr)
    assert "another program" in line and "refusing" in line, line
    assert file_state(db) == before


def test_user_version_set_by_another_program_is_not_pulse_schema(tmp_path: Path) -> None:
    db = tmp_path / "db" / "seedish.sqlite"
    db.parent.mkdir()
    make(db, f"CREATE TABLE events ({COLS})", ROW, "PRAGMA user_version = 1")
    before = file_state(db)
    r = run_cli("--db", str(db), "report", "daily")
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = last_line(r.stderr)
    assert "pulse-tui migrate" in line and "another program" in line, line
    assert file_state(db) == before
    r = run_cli("--db", str(db), "migrate")
    assert r.returncode == 0, r.stderr
    r = run_cli("--db", str(db), "report", "daily", "--from", "2023-11-14", "--to", "2023-11-14",
                "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("2023-11-14,1,")


def test_refusing_a_foreign_wal_file_leaves_no_wal_or_shm(tmp_path: Path) -> None:
    db = tmp_path / "db" / "app.sqlite"
    db.parent.mkdir()
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT)")
    raw.commit()
    raw.close()  # the last connection: SQLite removes -wal and -shm
    before = file_state(db)
    assert before[1] == ["app.sqlite"]
    r = run_cli("--db", str(db), "report", "daily")
    assert r.returncode == 1 and "another program" in last_line(r.stderr)
    assert file_state(db) == before


def test_report_keeps_a_pulse_file_in_rollback_journal_mode(tmp_path: Path) -> None:
    db = tmp_path / "pulse.db"
    conn = connect(db)
    conn.execute("INSERT INTO sites (id, name, created_at) VALUES ('site-a', 'a', 1)")
    conn.execute(ROW)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    r = run_cli("--db", str(db), "report", "daily")
    assert r.returncode == 0, r.stderr
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        raw.close()
