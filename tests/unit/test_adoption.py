"""SPEC 10, "Adopting a file": only new or empty files, or files holding the seed's events
table with all of its columns, are adopted; everything else is refused untouched by every
command. Commands that only read (report, backup, --help, the TUI before any write) never
change a file that needs upgrading: they exit 1 naming ``pulse-tui migrate``.

Every check runs the real CLI in a subprocess and compares the file's bytes and the folder's
listing (no -wal, -shm or -journal left behind) before and after."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_schema import SEED_TABLES, seed_script

from pulse_tui.errors import DatabaseError
from pulse_tui.store.connection import SCHEMA_VERSION, connect


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PULSE_NOW": "2023-11-20T12:00:00Z"}
    try:
        return subprocess.run([sys.executable, "-m", "pulse_tui", *args], env=env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # e.g. a worker that adopted the file and ran
        raise AssertionError(f"pulse-tui {' '.join(args)} did not exit: {exc.stderr!r}") from exc


def file_state(path: Path) -> tuple[str, list[str]]:
    """(sha256 of the file, the names in its folder)."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(os.listdir(path.parent))


def last_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines, "no message on stderr"
    return lines[-1]


def make_users_only(path: Path) -> None:
    """Another program's file: one `users` table (rollback journal, like most programs)."""
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT NOT NULL, pw TEXT)")
    raw.executemany("INSERT INTO users (login, pw) VALUES (?, ?)",
                    [("ann", "x1"), ("bob", "y2")])
    raw.commit()
    raw.close()


def make_events_lacking(path: Path, missing: str) -> None:
    """Another program's `events` table: the seed's columns but one."""
    cols = [c for c in SEED_TABLES["events"] if c != missing]
    raw = sqlite3.connect(path)
    raw.execute(f"CREATE TABLE events ({', '.join(cols)})")
    raw.execute(f"INSERT INTO events VALUES ({', '.join('?' for _ in cols)})",
                [f"v{i}" for i in range(len(cols))])
    raw.commit()
    raw.close()


def make_seed_only(path: Path) -> None:
    """A PULSE file written by the seed's schema (user_version 0), holding events."""
    raw = sqlite3.connect(path)
    raw.executescript(seed_script())
    raw.execute(
        "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, user_id, "
        "url, referrer, country, device_type, created_at) VALUES "
        "('e1', 'site-a', 'pageview', 1700000000000, 's1', 'u1', '/', NULL, 'US', 'mobile', 1)")
    raw.commit()
    raw.close()


def events_csv(folder: Path) -> Path:
    path = folder / "in" / "events.csv"
    path.parent.mkdir()
    path.write_text("event_id,site_id,event_type,timestamp_ms,session_id\n"
                    "n1,site-a,pageview,1700000000000,s9\n")
    return path


# every command, as arguments after --db FILE (the TUI: no subcommand)
def commands(folder: Path) -> dict[str, list[str]]:
    return {
        "report": ["report", "daily"],
        "tui": ["--no-worker", "--import-dir", str(folder / "imp")],
        "import": ["import", str(events_csv(folder))],
        "worker": ["--import-dir", str(folder / "imp"), "worker"],
        "simulate": ["simulate", "--rate", "50", "--duration", "0.2"],
        "rebuild-rollups": ["rebuild-rollups"],
        "backup": ["backup", str(folder / "copy.db")],
        "migrate": ["migrate"],
    }


COMMANDS = ("report", "tui", "import", "worker", "simulate", "rebuild-rollups", "backup",
            "migrate")


# ------------------------------------------------------------------------ other programs' files
@pytest.mark.parametrize("command", COMMANDS)
def test_users_only_file_is_refused_untouched_by_every_command(tmp_path: Path,
                                                               command: str) -> None:
    db = tmp_path / "db" / "app.sqlite"
    db.parent.mkdir()
    make_users_only(db)
    before = file_state(db)
    args = commands(tmp_path)[command]
    r = run_cli("--db", str(db), *args)
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = last_line(r.stderr)
    assert str(db) in line and "another program" in line and "refusing" in line
    assert file_state(db) == before  # bytes, and no -wal / -shm / -journal beside it
    assert not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize("missing", ["timestamp_ms", "device_type", "created_at"])
@pytest.mark.parametrize("command", ["report", "import", "migrate"])
def test_events_table_without_a_seed_column_is_refused(tmp_path: Path, missing: str,
                                                       command: str) -> None:
    db = tmp_path / "db" / "other.db"
    db.parent.mkdir()
    make_events_lacking(db, missing)
    before = file_state(db)
    r = run_cli("--db", str(db), *commands(tmp_path)[command])
    assert r.returncode == 1
    line = last_line(r.stderr)
    assert missing in line and "refusing" in line
    assert file_state(db) == before


def test_foreign_file_with_a_high_user_version_is_called_foreign(db_path: Path) -> None:
    """Not "upgrade pulse-tui": the file is not PULSE's at all."""
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TABLE users (id INTEGER)")
    raw.execute("PRAGMA user_version = 7")
    raw.commit()
    raw.close()
    with pytest.raises(DatabaseError, match="another program"):
        connect(db_path)


def test_current_version_without_events_is_refused(db_path: Path) -> None:
    """user_version 1 is common among other programs: the events table decides."""
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TABLE settings (k TEXT, v TEXT)")
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    raw.commit()
    raw.close()
    before = file_state(db_path)
    with pytest.raises(DatabaseError, match="another program"):
        connect(db_path)
    assert file_state(db_path) == before


# ------------------------------------------------------------------------ what is adopted
def test_empty_sqlite_file_is_adopted(db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TABLE t (x)")
    raw.execute("DROP TABLE t")  # a valid SQLite file with no schema left
    raw.commit()
    raw.close()
    assert db_path.stat().st_size > 0
    r = run_cli("--db", str(db_path), "migrate")
    assert r.returncode == 0, r.stderr
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_seed_events_with_extra_columns_and_tables_is_adopted(db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    raw.execute(f"CREATE TABLE events ({', '.join(SEED_TABLES['events'])}, extra TEXT)")
    raw.execute("CREATE TABLE their_own (x)")
    raw.commit()
    raw.close()
    conn = connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM their_own").fetchone()[0] == 0
    finally:
        conn.close()


# ------------------------------------------------------------------------ read-only commands
@pytest.mark.parametrize("command", ["report", "tui"])
def test_read_only_commands_never_upgrade_a_seed_file(tmp_path: Path, command: str) -> None:
    db = tmp_path / "db" / "pulse.db"
    db.parent.mkdir()
    make_seed_only(db)
    before = file_state(db)
    r = run_cli("--db", str(db), *commands(tmp_path)[command])
    assert r.returncode == 1
    line = last_line(r.stderr)
    assert str(db) in line and "pulse-tui migrate" in line
    assert file_state(db) == before
    raw = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 0
    raw.close()


def test_help_and_backup_leave_a_seed_file_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "db" / "pulse.db"
    db.parent.mkdir()
    make_seed_only(db)
    before = file_state(db)
    for args in (["--help"], ["report", "--help"], ["import", "--help"], ["migrate", "--help"]):
        r = run_cli("--db", str(db), *args)
        assert r.returncode == 0, (args, r.stderr)
    copy = tmp_path / "copy.db"
    r = run_cli("--db", str(db), "backup", str(copy))
    assert r.returncode == 0, r.stderr
    assert file_state(db) == before
    raw = sqlite3.connect(copy)  # the copy is the file as it was: still schema 0
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 0
    assert raw.execute("SELECT event_id FROM events").fetchall() == [("e1",)]
    raw.close()


def test_migrate_upgrades_a_seed_file_then_report_reads_it(tmp_path: Path) -> None:
    db = tmp_path / "pulse.db"
    make_seed_only(db)
    r = run_cli("--db", str(db), "migrate")
    assert r.returncode == 0, r.stderr
    assert "from schema 0 to" in r.stdout
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("SELECT id FROM sites").fetchall() == [("site-a",)]
    raw.close()
    r = run_cli("--db", str(db), "migrate")
    assert r.returncode == 0 and "nothing changed" in r.stdout
    r = run_cli("--db", str(db), "report", "breakdown", "--format", "csv")
    assert r.returncode == 0, r.stderr


def test_writers_still_adopt_a_seed_file(tmp_path: Path) -> None:
    """import (like worker, simulate and rebuild-rollups) writes anyway: it upgrades first."""
    db = tmp_path / "pulse.db"
    make_seed_only(db)
    r = run_cli("--db", str(db), "import", str(events_csv(tmp_path)))
    assert r.returncode == 0, r.stderr
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == 2
    raw.close()


def test_refusal_inside_the_migration_transaction_changes_nothing(db_path: Path) -> None:
    """The rule is checked again under the write lock: a file that another program turned
    into something else between the check and the migration is left as it is."""
    from pulse_tui.store import connection as connection_mod

    make_users_only(db_path)
    before = file_state(db_path)
    raw = sqlite3.connect(db_path, isolation_level=None)
    with pytest.raises(DatabaseError, match="another program"):
        connection_mod.migrate_schema(raw, db_path)
    assert not raw.in_transaction
    raw.close()
    assert file_state(db_path) == before
