"""Crash safety: every window of a killed worker is finished by the next start, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.ingest import import_file
from pulse_tui.store import worker_jobs
from pulse_tui.store.connection import connect
from pulse_tui.worker import ImportFinished
from tests.conftest import wait_until
from tests.worker.conftest import query, scalar, write_events

BIG_ROWS = 100_000


def _import_without_worker(settings: Settings, path: Path, clock: Clock, **kw) -> str:
    conn = connect(settings.db)
    try:
        return import_file(conn, path.absolute(), kind="events", clock=clock, **kw).job_id
    finally:
        conn.close()


def test_finished_job_whose_file_was_not_moved_is_moved_not_reimported(
        make_worker, pulse_settings: Settings, fixed_clock: Clock) -> None:
    src = write_events(pulse_settings.import_dir / "events" / "done.csv", 10, bad=1)
    job = _import_without_worker(pulse_settings, src, fixed_clock)  # crash before step 3
    seen = []
    worker, rec = make_worker(after_import=[lambda ctx, fin: seen.append(fin.job_id)])
    wait_until(lambda: rec.of(ImportFinished))
    fin = rec.of(ImportFinished)[0]
    assert fin.job_id == job and seen == [job]
    assert not src.exists()
    assert (pulse_settings.import_dir / "processed" / "done.csv").exists()
    assert (pulse_settings.import_dir / "processed" / "done.errors.csv").exists()
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 10


def test_recorded_destination_is_completed_after_a_crash(
        make_worker, pulse_settings: Settings, fixed_clock: Clock) -> None:
    src = write_events(pulse_settings.import_dir / "events" / "mid.csv", 6)
    job = _import_without_worker(pulse_settings, src, fixed_clock)
    dest = pulse_settings.import_dir / "processed" / "mid.csv"
    dest.parent.mkdir(exist_ok=True)
    conn = connect(pulse_settings.db)
    worker_jobs.set_destination(conn, job, str(dest))  # crash after step 3
    conn.close()
    os.link(src, dest)  # ... and in the middle of the move
    seen = []
    worker, rec = make_worker(after_import=[lambda ctx, fin: seen.append(fin.job_id)])
    wait_until(lambda: rec.of(ImportFinished))
    assert not src.exists() and dest.exists() and seen == [job]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mid.csv"]
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1
    assert worker_jobs.hooks_pending(connect(pulse_settings.db)) == []


def test_interrupted_job_resumes_with_the_same_id(make_worker, pulse_settings: Settings,
                                                  fixed_clock: Clock) -> None:
    src = write_events(pulse_settings.import_dir / "events" / "half.csv", 250, bad=3)
    calls = {"n": 0}

    def stop_after_first() -> bool:
        calls["n"] += 1
        return True

    job = _import_without_worker(pulse_settings, src, fixed_clock, batch_size=100,
                                 should_stop=stop_after_first)
    assert scalar(pulse_settings.db, "SELECT status FROM import_jobs") == "processing"
    worker, rec = make_worker()
    wait_until(lambda: rec.of(ImportFinished))
    fin = rec.of(ImportFinished)[0]
    assert fin.job_id == job and fin.status == "completed"
    assert (fin.processed, fin.duplicates, fin.failed) == (250, 0, 3)
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1


def test_job_whose_file_vanished_is_not_left_processing(make_worker, pulse_settings: Settings,
                                                        fixed_clock: Clock) -> None:
    src = write_events(pulse_settings.import_dir / "events" / "gone.csv", 250)
    _import_without_worker(pulse_settings, src, fixed_clock, batch_size=100,
                           should_stop=lambda: True)
    src.unlink()
    worker, rec = make_worker()
    wait_until(lambda: worker.state.state == "running")
    wait_until(lambda: scalar(pulse_settings.db, "SELECT status FROM import_jobs") == "failed")
    assert "disappeared" in scalar(pulse_settings.db, "SELECT message FROM import_jobs")


# ------------------------------------------------------------------ real processes

def _big_file(settings: Settings) -> Path:
    return write_events(settings.import_dir / "events" / "big.csv", BIG_ROWS)


def _spawn(settings: Settings, tmp_path: Path) -> subprocess.Popen[bytes]:
    config = tmp_path / "config.toml"
    config.write_text(f"settle_seconds = {settings.settle_seconds}\n")
    # small batches: many commits, so the kill lands mid-file even on a loaded machine
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PULSE_IMPORT_BATCH_ROWS": "500"}
    return subprocess.Popen(
        [sys.executable, "-m", "pulse_tui", "worker", "--db", str(settings.db),
         "--import-dir", str(settings.import_dir), "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        cwd=Path(__file__).resolve().parents[2])


def _job(settings: Settings) -> tuple | None:
    try:
        rows = query(settings.db, "SELECT id, status, processed_records FROM import_jobs")
    except Exception:  # noqa: BLE001 - not created yet
        return None
    return rows[0] if rows else None


def _mid_import(settings: Settings) -> bool:
    job = _job(settings)
    return bool(job and job[1] == "processing" and job[2] > 0)


def _wait_finished(settings: Settings, proc: subprocess.Popen[bytes]) -> None:
    done = settings.import_dir / "processed" / "big.csv"
    try:
        wait_until(lambda: done.exists() and proc.poll() is None, timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()


def _assert_exact(settings: Settings, job_id: str) -> None:
    rows = query(settings.db, "SELECT id, status, processed_records, duplicate_records, "
                 "failed_records, total_records FROM import_jobs")
    assert rows == [(job_id, "completed", BIG_ROWS, 0, 0, BIG_ROWS)]
    assert scalar(settings.db, "SELECT count(*) FROM events") == BIG_ROWS
    assert scalar(settings.db, "SELECT sum(event_count) FROM sessions") == BIG_ROWS
    assert scalar(settings.db, "SELECT sum(events) FROM rollup_daily") == BIG_ROWS
    assert not (settings.import_dir / "events" / "big.csv").exists()


def test_sigkill_mid_file_then_restart_gives_exact_counts(pulse_settings: Settings,
                                                          tmp_path: Path) -> None:
    _big_file(pulse_settings)
    proc = _spawn(pulse_settings, tmp_path)
    try:
        wait_until(lambda: _mid_import(pulse_settings) or proc.poll() is not None, timeout=120)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=20)
    job = _job(pulse_settings)
    assert job is not None and job[1] == "processing" and 0 < job[2] < BIG_ROWS, err.decode()
    assert (pulse_settings.import_dir / "events" / "big.csv").exists()
    # the dead holder's lease (same host, pid gone) does not make the restart wait for the TTL
    restarted = _spawn(pulse_settings, tmp_path)
    _wait_finished(pulse_settings, restarted)
    _assert_exact(pulse_settings, job[0])


def test_sigterm_finishes_the_batch_and_exits_0(pulse_settings: Settings, tmp_path: Path
                                                ) -> None:
    _big_file(pulse_settings)
    proc = _spawn(pulse_settings, tmp_path)
    try:
        wait_until(lambda: _mid_import(pulse_settings) or proc.poll() is not None, timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert b"worker stopped" in err
    job_id, status, processed = _job(pulse_settings)
    assert status in ("processing", "completed")
    if status == "processing":  # the batch in flight was committed, with its checkpoint
        assert processed == scalar(pulse_settings.db, "SELECT count(*) FROM events")
        assert processed == scalar(pulse_settings.db, "SELECT checkpoint_rows FROM import_jobs")
    assert scalar(pulse_settings.db, "SELECT count(*) FROM worker_lease") == 0  # released
    restarted = _spawn(pulse_settings, tmp_path)
    _wait_finished(pulse_settings, restarted)
    _assert_exact(pulse_settings, job_id)
