"""Contention: simulate writes, the worker imports a big file, a TUI tails the same database.

Nobody reports "database is locked", the TUI keeps showing new events while the import runs,
and every row of the file and of the simulator lands exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from pulse_tui.config import Settings
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.live import LiveScreen
from tests.conftest import async_wait_until
from tests.worker.conftest import write_events

ROWS = 60_000
ROOT = Path(__file__).resolve().parents[2]


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pulse_tui", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _job(db: Path) -> tuple | None:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute("SELECT status, processed_records FROM import_jobs").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


async def test_import_simulate_and_tui_share_one_database(pulse_settings: Settings,
                                                          tmp_path: Path) -> None:
    db = pulse_settings.db
    config = tmp_path / "config.toml"
    config.write_text(f"settle_seconds = {pulse_settings.settle_seconds}\n")
    common = ["--db", str(db), "--config", str(config)]
    sim = _spawn("simulate", "--rate", "400", "--duration", "60", "--seed", "5", *common)
    worker = _spawn("worker", "--import-dir", str(pulse_settings.import_dir), *common,
                    env={"PULSE_IMPORT_BATCH_ROWS": "2000"})
    procs = [sim, worker]
    try:
        app = make_app(pulse_settings, worker=False)
        async with app.run_test(size=(100, 30)) as pilot:
            live = app.screen
            assert isinstance(live, LiveScreen)
            await async_wait_until(lambda: live.last_seq > 0, timeout=30)
            write_events(pulse_settings.import_dir / "events" / "big.csv", ROWS)
            await async_wait_until(lambda: (_job(db) or ("", 0))[0] == "processing", timeout=30)
            # while the file imports, simulated events keep arriving on screen
            seen = live.last_seq
            for _ in range(3):
                await async_wait_until(lambda s=seen: live.last_seq > s, timeout=30)
                seen = live.last_seq
                await pilot.pause(0.05)
            await async_wait_until(lambda: (_job(db) or ("", 0))[0] == "completed", timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        text = err.decode()
        assert proc.returncode == 0, text
        assert "locked" not in text.lower(), text
    check = sqlite3.connect(db)
    assert _job(db) == ("completed", ROWS)
    imported = check.execute("SELECT count(*) FROM events WHERE site_id = 'site1'").fetchone()[0]
    assert imported == ROWS
    total = check.execute("SELECT count(*) FROM events").fetchone()[0]
    assert check.execute("SELECT sum(event_count) FROM sessions").fetchone()[0] == total
    assert check.execute("SELECT sum(events) FROM rollup_daily").fetchone()[0] == total
