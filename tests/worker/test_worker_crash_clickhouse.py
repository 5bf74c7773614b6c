"""The worker importing into ClickHouse (chdb): SIGKILL mid-file, restart, exact counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pulse_tui.config import Settings
from tests.conftest import wait_until
from tests.worker.conftest import query, write_events

ROWS = 20_000
ROOT = Path(__file__).resolve().parents[2]


def _spawn(settings: Settings, tmp_path: Path, store: str) -> subprocess.Popen[bytes]:
    config = tmp_path / "config.toml"
    config.write_text(f"settle_seconds = {settings.settle_seconds}\nevents_store = {store!r}\n")
    # the Python path's 500-row batches (the whole-file fast path: test_clickhouse_fast_import)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PULSE_IMPORT_BATCH_ROWS": "500",
           "PULSE_IMPORT_FAST_PATH": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "pulse_tui", "worker", "--db", str(settings.db),
         "--import-dir", str(settings.import_dir), "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)


def _job(settings: Settings) -> tuple | None:
    try:
        rows = query(settings.db, "SELECT id, status, processed_records, duplicate_records, "
                     "failed_records FROM import_jobs")
    except Exception:  # noqa: BLE001 - not created yet
        return None
    return rows[0] if rows else None


def test_sigkill_mid_file_on_chdb_then_restart_gives_exact_counts(pulse_settings: Settings,
                                                                  tmp_path: Path) -> None:
    pytest.importorskip("chdb")
    store = f"chdb://{tmp_path / 'ch'}"
    write_events(pulse_settings.import_dir / "events" / "big.csv", ROWS)
    proc = _spawn(pulse_settings, tmp_path, store)
    try:
        wait_until(lambda: (j := _job(pulse_settings)) is not None and j[1] == "processing"
                   and j[2] > 0 or proc.poll() is not None, timeout=60)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=20)
    job = _job(pulse_settings)
    assert job is not None and job[1] == "processing" and 0 < job[2] < ROWS, err.decode()
    # the killed process's chdb directory lock went with it: the restart opens the store
    restarted = _spawn(pulse_settings, tmp_path, store)
    done = pulse_settings.import_dir / "processed" / "big.csv"
    try:
        wait_until(lambda: done.exists() or restarted.poll() is not None, timeout=90)
    finally:
        restarted.send_signal(signal.SIGTERM)
        _, err = restarted.communicate(timeout=30)
    assert restarted.returncode == 0, err.decode()
    assert _job(pulse_settings) == (job[0], "completed", ROWS, 0, 0)
    # every count exact straight away: events, distinct users and sessions from ClickHouse
    report = subprocess.run(
        [sys.executable, "-m", "pulse_tui", "report", "daily", "--db", str(pulse_settings.db),
         "--events-store", store, "--from", "2025-11-24", "--to", "2025-11-25",
         "--format", "json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert report.returncode == 0, report.stderr
    days = json.loads(report.stdout)
    assert sum(d["events"] for d in days) == ROWS
    assert [d["users"] for d in days if d["events"]] == [50]
    assert sum(d["sessions"] for d in days) == ROWS // 20
