"""A burst of files imports as fast as one file, and an idle worker is idle (real processes).

Timings here are ratios measured in the same run (never absolute times): the worker's wall and
CPU time for 20 files dropped at once while another import runs, against one file of the same
rows dropped the same way.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.burst_bench import cpu_seconds, jobs, write_events
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


def wakeups(pid: int) -> int:
    """Times the threads of a process went to sleep of their own accord (each poll is one)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


class Worker:
    def __init__(self, tmp: Path, settle: float) -> None:
        self.db = tmp / "pulse.db"
        self.inbox = tmp / "import"
        (self.inbox / "events").mkdir(parents=True)
        self.stage = tmp / "stage"
        self.stage.mkdir()
        config = tmp / "config.toml"
        config.write_text(f"settle_seconds = {settle}\n")
        self.log = tmp / "worker.out"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pulse_tui", "worker", "--db", str(self.db),
                 "--import-dir", str(self.inbox), "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def running(self) -> bool:
        return self.log.exists() and "worker running" in self.log.read_text(errors="replace")

    def drop(self, files: int, rows: int, tag: str, busy_rows: int = 0) -> tuple[float, float]:
        """Drop ``files`` files at once, after a file of ``busy_rows`` rows whose import then
        runs (when busy_rows > 0): (wall, CPU) from the first drop until every job ended."""
        before = len(jobs(self.db))
        staged = [write_events(self.stage / f"{tag}-{k:02d}.csv", rows, f"{tag}{k}")
                  for k in range(files)]
        cpu0, t0 = cpu_seconds(self.proc.pid), time.monotonic()
        if busy_rows:
            write_events(self.inbox / "events" / f"{tag}-busy.csv", busy_rows, f"{tag}b")
            wait_until(lambda: (f"{tag}-busy.csv", "processing") in jobs(self.db),
                       timeout=60, interval=0.01)
        for path in staged:  # at once: renames into the inbox
            os.rename(path, self.inbox / "events" / path.name)
        expected = before + files + (1 if busy_rows else 0)

        def all_done() -> bool:
            rows_ = jobs(self.db)
            return len(rows_) == expected and all(s in ("completed", "failed") for _, s in rows_)

        wait_until(all_done, timeout=600, interval=0.02)
        wall, cpu = time.monotonic() - t0, cpu_seconds(self.proc.pid) - cpu0
        assert all(s == "completed" for _, s in jobs(self.db))
        return wall, cpu

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    started: list[Worker] = []

    def start(settle: float) -> Worker:
        w = Worker(tmp_path, settle)
        started.append(w)
        wait_until(w.running, timeout=60)
        return w

    yield start
    for w in started:
        w.stop()


def test_twenty_files_at_once_cost_what_one_file_of_their_rows_costs(start_worker) -> None:
    worker = start_worker(0.3)
    # 20 files of 3,000 rows land while a 30,000-row import runs ...
    burst_wall, burst_cpu = worker.drop(20, 3_000, "burst", busy_rows=30_000)
    # ... against one file of the same 90,000 rows
    one_wall, one_cpu = worker.drop(1, 90_000, "single")
    total = sqlite3.connect(worker.db).execute("SELECT count(*) FROM events").fetchone()[0]
    assert total == 2 * 90_000
    # before the fix the burst took 3-10 times the wall and CPU time of the single file
    assert burst_cpu < 1.6 * one_cpu + 0.3, (burst_cpu, one_cpu)
    assert burst_wall < 2.0 * one_wall + 1.0, (burst_wall, one_wall)
    log = worker.log.read_text(errors="replace")
    assert "database is locked" not in log and "renewal failed" not in log


def test_an_idle_worker_sleeps(start_worker) -> None:
    worker = start_worker(0.2)
    worker.drop(3, 200, "warm")  # imports done: now nothing to do
    pid = worker.proc.pid
    woke0, cpu0, t0 = wakeups(pid), cpu_seconds(pid), time.monotonic()
    # an awaited interval: the worker's own lease renewal (every 3 s) has happened twice
    lease0 = _lease_expiry(worker.db)
    wait_until(lambda: _lease_expiry(worker.db) > lease0, timeout=10, interval=0.25)
    lease1 = _lease_expiry(worker.db)
    wait_until(lambda: _lease_expiry(worker.db) > lease1, timeout=10, interval=0.25)
    seconds = time.monotonic() - t0
    per_second = (wakeups(pid) - woke0) / seconds
    cpu_share = (cpu_seconds(pid) - cpu0) / seconds
    # before the fix: about 50 wake-ups a second (polls every 50-250 ms in four threads)
    assert per_second < 25, per_second
    assert cpu_share < 0.05, cpu_share


def _lease_expiry(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=10)
    try:
        row = conn.execute("SELECT max(expires_at) FROM worker_lease").fetchone()
    finally:
        conn.close()
    return int(row[0] or 0)
