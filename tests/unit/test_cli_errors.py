"""Issue 15, item 6: errors in our words, never a traceback without --debug, nothing lost.

The real CLI runs in subprocesses against files it cannot write (read-only file or folder),
damaged files and a full disk (SQLite's max_page_count, set on every connection by a small
launcher, stands in for a full file system), and with numbers no one meant to type."""

from __future__ import annotations

import ctypes
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until

NOW = "2025-11-25T12:00:00Z"
T0 = 1_764_000_000_000  # 2025-11-24T16:00Z

# SQLite pages each connection may add to the file before "database or disk is full"
FULL_DISK_LAUNCHER = textwrap.dedent("""
    import os, sys
    from pulse_tui.store import connection

    _apply = connection.apply_pragmas

    def capped(conn, **kw):
        _apply(conn, **kw)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + int(os.environ['PAGES_LEFT'])}")

    connection.apply_pragmas = capped
    from pulse_tui.cli import main
    main(sys.argv[1:])
""")


def _drop_file_permission_override() -> None:
    """As root, chmod alone stops nothing: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    from the bounding set before exec, so the child obeys file modes like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _can_drop_caps() -> bool:
    r = subprocess.run([sys.executable, "-c", "pass"],
                       preexec_fn=_drop_file_permission_override, capture_output=True)
    return r.returncode == 0


def _preexec() -> object:
    if os.geteuid() != 0:
        return None
    if not _can_drop_caps():
        pytest.skip("running as root without CAP_SETPCAP: file modes cannot be enforced")
    return _drop_file_permission_override


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
        enforce_modes: bool = False, launcher: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PULSE_NOW": NOW, **(env or {})}
    prefix = ["-c", launcher] if launcher else ["-m", "pulse_tui"]
    return subprocess.run([sys.executable, *prefix, *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          preexec_fn=_preexec() if enforce_modes else None)  # type: ignore[arg-type]


def one_line(err: str, *, progress: bool = False) -> str:
    """The one error line (``progress``: besides an import's progress lines)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    if progress:
        lines = [line for line in lines if not line.startswith("events.csv: ")]
    assert len(lines) == 1, f"expected one stderr line, got {err!r}"
    assert lines[0].startswith("pulse-tui")
    return lines[0]


def write_events_csv(path: Path, n: int, start: int = 0) -> Path:
    lines = ["event_id,site_id,event_type,timestamp_ms,session_id,user_id,url"]
    for i in range(start, start + n):
        lines.append(f"e{i},site-a,pageview,{T0 + i * 1000},s{i // 10},u{i % 50},/p/{i % 30}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A PULSE database with some events, closed (no -wal left)."""
    db = tmp_path / "data" / "pulse.db"
    db.parent.mkdir()
    r = cli("--db", str(db), "import", str(write_events_csv(tmp_path / "seed.csv", 300)))
    assert r.returncode == 0, r.stderr
    return db


@pytest.fixture
def read_only_file(filled: Path) -> Iterator[Path]:
    filled.chmod(0o444)
    yield filled
    filled.chmod(0o644)


@pytest.fixture
def read_only_folder(filled: Path) -> Iterator[Path]:
    filled.parent.chmod(0o555)
    yield filled
    filled.parent.chmod(0o755)


def counts(db: Path) -> tuple[int, int]:
    # read-write, so that closing removes the -wal and -shm (a read-only connection leaves
    # them, and with them SQLite can write in a read-only folder)
    conn = sqlite3.connect(db)
    try:
        return (conn.execute("SELECT count(*) FROM events").fetchone()[0],
                conn.execute("SELECT count(*) FROM import_jobs").fetchone()[0])
    finally:
        conn.close()


# ------------------------------------------------------------------------ read-only databases
@pytest.mark.parametrize("where", ["read_only_file", "read_only_folder"])
def test_import_into_a_read_only_database(where: str, request: pytest.FixtureRequest,
                                          tmp_path: Path) -> None:
    db: Path = request.getfixturevalue(where)
    before = counts(db)
    csv_file = write_events_csv(tmp_path / "new" / "events.csv", 20, start=1000)
    r = cli("--db", str(db), "import", str(csv_file), enforce_modes=True)
    assert r.returncode == 1, r
    line = one_line(r.stderr)
    assert str(db) in line and "read-only" in line
    assert counts(db) == before


@pytest.mark.parametrize("where", ["read_only_file", "read_only_folder"])
def test_rebuild_rollups_on_a_read_only_database(where: str,
                                                 request: pytest.FixtureRequest) -> None:
    db: Path = request.getfixturevalue(where)
    r = cli("--db", str(db), "rebuild-rollups", enforce_modes=True)
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "read-only" in line


def test_report_reads_a_read_only_database(read_only_file: Path) -> None:
    r = cli("--db", str(read_only_file), "report", "breakdown", "--format", "csv",
            "--from", "2025-11-24", "--to", "2025-11-30", enforce_modes=True)
    assert r.returncode == 0, r.stderr
    assert "pageview,300," in r.stdout


def test_report_on_a_wal_file_in_a_read_only_folder_says_why(read_only_folder: Path) -> None:
    """SQLite cannot even read a WAL file whose -shm it cannot create: say that, not
    "cannot write" (report writes nothing)."""
    assert not Path(f"{read_only_folder}-shm").exists()
    r = cli("--db", str(read_only_folder), "report", "daily", "--site", "site-a",
            enforce_modes=True)
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "WAL mode" in line and "folder is read-only" in line


def test_debug_shows_the_traceback(read_only_file: Path) -> None:
    r = cli("--debug", "--db", str(read_only_file), "rebuild-rollups", enforce_modes=True)
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "readonly" in r.stderr


def test_worker_on_a_read_only_database_says_so_once_and_exits(read_only_file: Path,
                                                               tmp_path: Path) -> None:
    """Not "lease check failed" every second forever: exit 1 with the reason."""
    r = cli("--db", str(read_only_file), "--import-dir", str(tmp_path / "imp"), "worker",
            enforce_modes=True, timeout=30)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.count("lease check failed") <= 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("pulse-tui: worker:") and "read-only" in last


# ------------------------------------------------------------------------ locked
def test_rebuild_rollups_while_another_program_holds_the_write_lock(filled: Path) -> None:
    """After the 10 s busy timeout: one line saying it is locked, and nothing changed."""
    holder = sqlite3.connect(filled, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = cli("--db", str(filled), "rebuild-rollups")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 1
    assert "locked by another process" in one_line(r.stderr)
    assert counts(filled) == (300, 1)


# ------------------------------------------------------------------------ damaged files
def damage(db: Path) -> None:
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    with open(db, "r+b") as fh:  # noqa: PTH123 - no live connection in this process
        for page in {root, *range(root + 1, pages, 3)}:
            fh.seek((page - 1) * size)
            fh.write(b"\xde\xad\xbe\xef" * (size // 4))


def test_rebuild_rollups_on_a_damaged_file(filled: Path) -> None:
    damage(filled)
    r = cli("--db", str(filled), "rebuild-rollups")
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert str(filled) in line and "damaged" in line


@pytest.mark.parametrize("command", ["report", "import"])
def test_other_commands_on_a_damaged_file(filled: Path, tmp_path: Path, command: str) -> None:
    damage(filled)
    csv_file = write_events_csv(tmp_path / "more" / "events.csv", 5, start=5000)
    args = {"report": ["report", "breakdown", "--site", "site-a", "--from", "2025-11-24"],
            "import": ["import", str(csv_file)]}[command]
    r = cli("--db", str(filled), *args)
    assert r.returncode == 1
    assert "damaged" in one_line(r.stderr)


# ------------------------------------------------------------------------ full disk
def test_one_shot_import_on_a_full_disk_fails_its_job_with_the_reason(filled: Path,
                                                                      tmp_path: Path) -> None:
    """"disk full", not "cannot rollback - no transaction is active"; the job is failed
    (never left 'processing'), and what was committed before stays consistent."""
    csv_file = write_events_csv(tmp_path / "big" / "events.csv", 20_000, start=10_000)
    r = cli("--db", str(filled), "import", str(csv_file), launcher=FULL_DISK_LAUNCHER,
            env={"PAGES_LEFT": "400", "PULSE_IMPORT_BATCH_ROWS": "1000"})
    assert r.returncode == 1
    line = one_line(r.stderr, progress=True)
    assert "disk full" in line and "rollback" not in line
    conn = sqlite3.connect(filled)
    status, message, processed = conn.execute(
        "SELECT status, message, processed_records FROM import_jobs "
        "ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
    stored = conn.execute("SELECT count(*) FROM events WHERE event_id >= 'e10000' "
                          "AND length(event_id) >= 6").fetchone()[0]
    sessions_ok = conn.execute(
        "SELECT count(*) FROM (SELECT session_id, count(*) AS n FROM events GROUP BY 1) e "
        "JOIN sessions s USING (session_id) WHERE s.event_count != e.n").fetchone()[0]
    conn.close()
    assert status == "failed" and "disk full" in message
    assert 0 < processed < 20_000  # some batches landed before the disk filled up
    assert stored == processed  # the checkpoint matches what is stored
    assert sessions_ok == 0


def test_worker_import_on_a_full_disk_says_disk_full(filled: Path, tmp_path: Path) -> None:
    imp = tmp_path / "imp"
    write_events_csv(imp / "events" / "drop.csv", 20_000, start=30_000)
    env = {**os.environ, "PULSE_NOW": NOW, "PAGES_LEFT": "400",
           "PULSE_IMPORT_BATCH_ROWS": "1000"}
    proc = subprocess.Popen(
        [sys.executable, "-c", FULL_DISK_LAUNCHER, "--db", str(filled), "--import-dir",
         str(imp), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, stdin=subprocess.DEVNULL)
    try:
        def failed_job() -> tuple[str, str] | None:
            conn = sqlite3.connect(filled, timeout=10)
            try:
                return conn.execute("SELECT status, message FROM import_jobs "
                                    "WHERE file_name = 'drop.csv' AND status = 'failed'"
                                    ).fetchone()
            finally:
                conn.close()

        status, message = wait_until(failed_job, timeout=60)  # type: ignore[misc]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "disk full" in message and "cannot rollback" not in message
    assert "cannot rollback" not in err and "Traceback" not in err
    assert proc.returncode == 0


# ------------------------------------------------------------------------ numbers
@pytest.mark.parametrize("args", [
    ["report", "top-urls", "--limit", "99999999999999999999"],
    ["report", "top-urls", "--limit", "-99999999999999999999"],
    ["report", "top-urls", "--limit", "1000001"],
    ["report", "funnel", "--steps", ",".join(["pageview"] * 5000)],
    ["simulate", "--rate", "nan"],
    ["simulate", "--rate", "inf"],
    ["simulate", "--rate", "1e12"],
    ["simulate", "--rate", "10", "--duration", "nan"],
    ["simulate", "--rate", "10", "--duration", "-1"],
    ["simulate", "--rate", "10", "--sites", "99999999999999999999"],
    # every day of 0001 .. 9999 (3.6 million rows; retention took 43 s and 1.9 GB)
    ["report", "daily", "--from", "0001-01-01", "--to", "9999-12-31"],
    ["report", "retention", "--from", "0001-01-01", "--to", "9999-12-31"],
])
def test_numbers_out_of_range_are_usage_errors(filled: Path, args: list[str]) -> None:
    r = cli("--db", str(filled), *args, timeout=30)
    assert r.returncode == 2
    assert args[-2] in one_line(r.stderr)  # names the option


@pytest.mark.parametrize("line", [
    "settle_seconds = nan", "settle_seconds = inf", "settle_seconds = -1",
    "events_retention_days = 9223372036854775807", "rollup_retention_days = -5",
])
def test_config_numbers_out_of_range(filled: Path, tmp_path: Path, line: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(line + "\n")
    r = cli("--config", str(cfg), "--db", str(filled), "report", "daily")
    assert r.returncode == 2
    assert str(cfg) in one_line(r.stderr)


@pytest.mark.parametrize("now", ["99999999999999999999", "-5"])
def test_pulse_now_out_of_range(filled: Path, now: str) -> None:
    r = cli("--db", str(filled), "report", "daily", env={"PULSE_NOW": now})
    assert r.returncode == 2
    assert "PULSE_NOW" in one_line(r.stderr)


def event_count(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_simulate_stops_promptly_on_sigterm_at_the_highest_rate(tmp_path: Path) -> None:
    db = tmp_path / "sim.db"
    proc = subprocess.Popen([sys.executable, "-m", "pulse_tui", "--db", str(db), "simulate",
                             "--rate", "100000"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        assert "simulating" in proc.stderr.readline()  # it is in its loop
        wait_until(lambda: event_count(db) > 0, timeout=30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)  # promptly: not after the current (bounded) batch of work
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] > 0
    conn.close()
