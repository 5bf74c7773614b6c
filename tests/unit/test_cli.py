"""The pulse-tui command line: version/help, exit codes, one-line errors, global options,
simulate, backup and rebuild-rollups."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXED_NOW_MS

from pulse_tui import __version__
from pulse_tui.cli import main
from pulse_tui.clock import format_ms
from pulse_tui.simulate import Simulator, write_batch, write_sites, write_users
from pulse_tui.store import cleanup, derived
from pulse_tui.store.connection import connect

DAY_MS = 86_400_000


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m pulse_tui ARGS`` in a fresh process (the isolated HOME of conftest)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pulse_tui", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """main() in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


def fill(db: Path, days: int = 3, seed: int = 5) -> None:
    """A few days of simulated history written through the normal path."""
    conn = connect(db)
    sim = Simulator(seed=seed, sites=3, users_per_site_day=6)
    today = FIXED_NOW_MS // DAY_MS
    conn.execute("BEGIN IMMEDIATE")
    write_sites(conn, sim, FIXED_NOW_MS)
    conn.execute("COMMIT")
    for batch in sim.history(today - days, today - 1):
        write_batch(conn, batch, FIXED_NOW_MS)
    conn.execute("BEGIN IMMEDIATE")
    write_users(conn, sim.users(), FIXED_NOW_MS)
    conn.execute("COMMIT")
    conn.close()


def derived_tables(db: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db)
    try:
        out = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
               for t in derived.ROLLUP_TABLES}
        out["sessions"] = conn.execute(
            "SELECT session_id, site_id, user_id, first_event_at, last_event_at, event_count "
            "FROM sessions ORDER BY session_id").fetchall()
        out["user_first_seen"] = conn.execute(
            "SELECT * FROM user_first_seen ORDER BY 1, 2").fetchall()
        return out
    finally:
        conn.close()


def sessions_exact(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        stored = conn.execute(
            "SELECT session_id, site_id, first_event_at, last_event_at, event_count "
            "FROM sessions ORDER BY session_id").fetchall()
        expected = conn.execute(
            "SELECT session_id, min(site_id), min(timestamp_ms), max(timestamp_ms), count(*) "
            "FROM events GROUP BY session_id ORDER BY session_id").fetchall()
    finally:
        conn.close()
    assert stored == expected


# ------------------------------------------------------------------------------ version, help
def test_version(tmp_path: Path) -> None:
    r = run_cli("--version", cwd=tmp_path)
    assert r.returncode == 0
    assert __version__ in r.stdout
    assert r.stderr == ""


def test_help_from_another_cwd_lists_effective_paths(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "my.db"
    r = run_cli("--help", cwd=tmp_path, env={"PULSE_DB": str(db),
                                             "PULSE_EXPORT_DIR": str(tmp_path / "exp")})
    assert r.returncode == 0, r.stderr
    assert "Effective paths" in r.stdout
    assert str(db) in r.stdout
    assert str(tmp_path / "exp") in r.stdout
    home = os.environ["HOME"]
    assert str(Path(home) / ".local" / "share" / "pulse-tui" / "import") in r.stdout
    for option in ("--db", "--import-dir", "--export-dir", "--config", "--version", "--demo"):
        assert option in r.stdout
    assert not (tmp_path / "elsewhere").exists()  # help touches nothing


def listed_commands(help_text: str) -> list[str]:
    section = help_text.split("Commands:", 1)[1].split("Effective paths", 1)[0]
    return [m.group(1) for m in re.finditer(r"^  ([a-z][\w-]*)\s", section, re.M)]


def test_help_lists_only_working_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    commands = listed_commands(out)
    assert {"simulate", "rebuild-rollups", "backup"} <= set(commands)
    for name in commands:  # every listed command is real: its own --help works
        code, sub, err = run_main(capsys, name, "--help")
        assert code == 0, (name, err)
        assert f"pulse-tui {name}" in sub
        assert "--db" in sub  # global options accepted after the subcommand too


def test_help_shows_flag_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_main(capsys, "--db", str(tmp_path / "flag.db"), "--help")
    assert code == 0
    assert str(tmp_path / "flag.db") in out


def test_help_with_bad_config_still_prints(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[[[")
    code, out, _ = run_main(capsys, "--config", str(cfg), "--help")
    assert code == 0
    assert str(cfg) in out


# ------------------------------------------------------------------------------ exit codes
def test_bad_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "--no-such-option")
    assert code == 2
    assert "no-such-option" in err
    assert "Traceback" not in err


def test_bad_option_value_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_main(capsys, "simulate", "--db", str(tmp_path / "x.db"), "--rate", "fast")
    assert code == 2
    assert "Traceback" not in err
    assert not (tmp_path / "x.db").exists()


def test_bad_config_exits_2_naming_file(capsys: pytest.CaptureFixture[str], tmp_path: Path
                                        ) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("colour = 'blue'\n")
    code, _, err = run_main(capsys, "--config", str(cfg), "rebuild-rollups")
    assert code == 2
    assert str(cfg) in one_line_error(err)


def test_non_db_file_exits_1_one_line(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("not a database\n")
    before = target.read_bytes()
    r = run_cli("--db", str(target), "rebuild-rollups", cwd=tmp_path)
    assert r.returncode == 1
    line = one_line_error(r.stderr)
    assert str(target) in line
    assert target.read_bytes() == before


def test_missing_folder_exits_1_one_line(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "pulse.db"
    r = run_cli("simulate", "--rate", "10", "--duration", "0", "--db", str(target))
    assert r.returncode == 1
    line = one_line_error(r.stderr)
    assert "does not exist" in line
    assert not (tmp_path / "no").exists()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("not a database\n")
    r = run_cli("--debug", "--db", str(target), "rebuild-rollups")
    assert r.returncode != 0
    assert "Traceback" in r.stderr
    assert "DatabaseError" in r.stderr


# ------------------------------------------------------------------------------ simulate
def test_simulate_after_subcommand_writes_exact_sessions(tmp_path: Path) -> None:
    db = tmp_path / "sim.db"
    r = run_cli("simulate", "--db", str(db), "--rate", "200", "--duration", "1", "--seed", "3",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    conn = sqlite3.connect(db)
    n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    sites = conn.execute("SELECT count(DISTINCT site_id) FROM events").fetchone()[0]
    users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    conn.close()
    assert 100 <= n <= 300, n
    assert sites >= 2
    assert users > 0
    sessions_exact(db)
    assert derived_tables(db)["rollup_daily"]


def test_global_option_after_subcommand_wins(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    fill(b, days=1)
    code, out, err = run_main(capsys, "--db", str(a), "rebuild-rollups", "--db", str(b))
    assert code == 0, err
    assert not a.exists()
    assert "rebuilt" in out


# ------------------------------------------------------------------------------ backup
def test_backup_writes_consistent_copy(capsys: pytest.CaptureFixture[str], tmp_path: Path
                                       ) -> None:
    db = tmp_path / "src.db"
    fill(db, days=2)
    # another connection holds an open write transaction: its rows must not be copied
    writer = connect(db)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
        "created_at) VALUES ('uncommitted', 'acme-web', 'pageview', 1, 'zz', 1)")
    target = tmp_path / "copy.db"
    try:
        code, out, err = run_main(capsys, "--db", str(db), "backup", str(target))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert code == 0, err
    src, dst = sqlite3.connect(db), sqlite3.connect(target)
    try:
        assert dst.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert list(dst.iterdump()) == list(src.iterdump())
        assert dst.execute("SELECT count(*) FROM events WHERE event_id = 'uncommitted'"
                           ).fetchone()[0] == 0
        assert dst.execute("SELECT count(*) FROM events").fetchone()[0] > 0
    finally:
        src.close()
        dst.close()


def test_backup_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], tmp_path: Path
                                     ) -> None:
    db = tmp_path / "src.db"
    fill(db, days=1)
    target = tmp_path / "exists.db"
    target.write_bytes(b"precious")
    code, _, err = run_main(capsys, "--db", str(db), "backup", str(target))
    assert code != 0
    assert str(target) in one_line_error(err)
    assert target.read_bytes() == b"precious"


def test_backup_of_missing_database_creates_nothing(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    code, _, err = run_main(capsys, "--db", str(db), "backup", str(tmp_path / "copy.db"))
    assert code == 1
    one_line_error(err)
    assert not db.exists()
    assert not (tmp_path / "copy.db").exists()


# ------------------------------------------------------------------------------ rebuild
def test_rebuild_rollups_leaves_derived_tables_equal(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    fill(db, days=4)
    before = derived_tables(db)
    assert before["rollup_daily"] and before["rollup_presence"] and before["sessions"]
    code, _, err = run_main(capsys, "--db", str(db), "rebuild-rollups")
    assert code == 0, err
    assert derived_tables(db) == before


def test_rebuild_rollups_repairs_damaged_rollups(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    fill(db, days=2)
    before = derived_tables(db)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE rollup_daily SET events = events + 1000")
    conn.execute("DELETE FROM rollup_daily_dims WHERE dim = 'country'")
    conn.execute("UPDATE sessions SET event_count = 99")
    conn.commit()
    conn.close()
    code, _, err = run_main(capsys, "--db", str(db), "rebuild-rollups")
    assert code == 0, err
    assert derived_tables(db) == before


def test_rebuild_rollups_after_cleanup_keeps_history(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    fill(db, days=4)
    before = derived_tables(db)
    cutoff = (FIXED_NOW_MS // DAY_MS - 2) * DAY_MS + DAY_MS // 3  # keeps 2 1/3 days of events
    conn = connect(db)
    deleted, _, _ = cleanup.delete_old_events(conn, cutoff)
    conn.close()
    assert deleted > 0
    code, out, err = run_main(capsys, "--db", str(db), "rebuild-rollups")
    assert code == 0, err
    after = derived_tables(db)
    for table in derived.ROLLUP_TABLES:  # (a rebuild writes no gap rows whose n is 0)
        assert [r for r in after[table] if r[-1] != 0] == [
            r for r in before[table] if r[-1] != 0], table
    kept_day = (FIXED_NOW_MS // DAY_MS - 2) * DAY_MS
    date = format_ms(kept_day)[:10]
    sites = {r[0] for r in before["rollup_daily"]}
    assert len(sites) == 3
    for site in sites:
        assert f"kept the rollups of site {site} up to {date}: cleanup deleted" in out
