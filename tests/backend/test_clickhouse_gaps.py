"""The gaps of the ClickHouse events store closed in issue 13's second pass: simulate and the
demo write there, a file whose events live elsewhere is refused in our words, cleanup keeps
what SPEC says it keeps, and a users row without a site keeps the user's site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.backend.chdb_support import chdb_dir


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 180
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pulse_tui", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _sqlite_events(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------- simulate
def test_simulate_writes_into_the_configured_clickhouse_store(tmp_path: Path) -> None:
    chdb_dir()  # skip without chdb
    db = tmp_path / "p.db"
    store = f"chdb://{tmp_path / 'ch'}"
    done = _run("simulate", "--rate", "200", "--duration", "1.5", "--sites", "1", "--seed", "5",
                "--db", str(db), "--events-store", store)
    assert done.returncode == 0, done.stderr
    written = int(done.stderr.split("wrote ")[1].split()[0])
    assert written > 0
    assert _sqlite_events(db) == 0  # nothing went into the file's own events table
    daily = _run("report", "daily", "--format", "json", "--db", str(db), "--events-store", store)
    assert daily.returncode == 0, daily.stderr
    assert sum(row["events"] for row in json.loads(daily.stdout)) == written
