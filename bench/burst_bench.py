"""A burst of files against one file of the same rows, through a real `pulse-tui worker`.

One worker process on a fresh database and import folder. The burst: FILES files of ROWS rows
dropped at once (written as ``.part`` elsewhere, then renamed in, as rsync does); with
``--busy-rows N`` they land while the import of an N-row file runs. Then, in the same worker,
one file of all those rows (FILES x ROWS + N). Measured from the first drop until every job has
ended: wall time and the worker's CPU time (user + system of all its threads, /proc/PID/stat).

Usage (repository root, venv active):

    python bench/burst_bench.py                      # 20 x 3,000 rows vs 1 x 60,000 rows
    python bench/burst_bench.py --busy-rows 30000    # ... landing while a 30,000-row import runs
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = "event_id,event_type,timestamp_ms,session_id,site_id,user_id\n"
BASE_TS = 1_764_000_000_000
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, all its threads (fields 14 and 15 of
    /proc/PID/stat)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def write_events(path: Path, rows: int, prefix: str) -> Path:
    """``rows`` pageviews in a file that appears whole (written aside, then renamed)."""
    body = HEADER + "".join(
        f"{prefix}-{i},pageview,{BASE_TS + i * 1000},{prefix}-s{i // 20},site1,u{i % 50}\n"
        for i in range(rows))
    part = path.with_name(path.name + ".part")
    part.write_text(body, encoding="utf-8")
    os.rename(part, path)
    return path


def jobs(db: Path) -> list[tuple[str, str]]:
    try:
        conn = sqlite3.connect(db, timeout=10)
        try:
            return conn.execute("SELECT file_name, status FROM import_jobs").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_worker(work: Path, settle: float) -> subprocess.Popen[bytes]:
    config = work / "config.toml"
    config.write_text(f"settle_seconds = {settle}\n")
    (work / "in" / "events").mkdir(parents=True, exist_ok=True)
    log = open(work / "worker.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "pulse_tui", "worker", "--db", str(work / "pulse.db"),
         "--import-dir", str(work / "in"), "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def run_case(proc: subprocess.Popen[bytes], work: Path, tag: str, files: int, rows: int,
             busy_rows: int, timeout: float) -> tuple[float, float]:
    """(wall seconds, worker CPU seconds) from the first drop until every job has ended."""
    db = work / "pulse.db"
    inbox = work / "in" / "events"
    before = len(jobs(db))
    stage = work / f"stage-{tag}"
    stage.mkdir()
    for k in range(files):
        write_events(stage / f"{tag}-{k:02d}.csv", rows, f"{tag}{k}")
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    if busy_rows:
        write_events(inbox / f"{tag}-busy.csv", busy_rows, f"{tag}b")
        wait_for(lambda: any(n == f"{tag}-busy.csv" and s == "processing" for n, s in jobs(db)),
                 timeout, "the busy import to start")
    for k in range(files):  # "at once": renames only
        os.rename(stage / f"{tag}-{k:02d}.csv", inbox / f"{tag}-{k:02d}.csv")
    expected = before + files + (1 if busy_rows else 0)

    def done() -> bool:
        rows_ = jobs(db)
        return len(rows_) >= expected and all(s in ("completed", "failed") for _, s in rows_)

    wait_for(done, timeout, f"{tag}: every job to end")
    wall, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
    bad = [n for n, s in jobs(db) if s != "completed"]
    if bad:
        raise SystemExit(f"jobs not completed: {bad}")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--rows", type=int, default=3000, help="rows per file of the burst")
    ap.add_argument("--busy-rows", type=int, default=0,
                    help="rows of a file whose import runs when the burst lands (0: none)")
    ap.add_argument("--settle", type=float, default=2.0, help="settle_seconds of the worker")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pulse-burst-") as tmp:
        work = Path(tmp)
        proc = start_worker(work, args.settle)
        try:
            wait_for(lambda: (work / "pulse.db").exists(), 60, "the worker to start")
            time.sleep(1.0)  # let the start-up jobs run once
            burst = run_case(proc, work, "burst", args.files, args.rows, args.busy_rows,
                             args.timeout)
            single = run_case(proc, work, "single", 1, args.files * args.rows + args.busy_rows,
                              0, args.timeout)
        finally:
            proc.terminate()
            proc.wait(30)
    busy = f" + 1 x {args.busy_rows:,} running" if args.busy_rows else ""
    total = args.files * args.rows + args.busy_rows
    print(f"{'case':<44} {'wall s':>8} {'worker CPU s':>13}")
    print(f"{f'{args.files} x {args.rows:,} rows{busy}':<44} {burst[0]:>8.2f} {burst[1]:>13.2f}")
    print(f"{f'1 x {total:,} rows':<44} {single[0]:>8.2f} {single[1]:>13.2f}")
    print(f"ratio burst/single: wall {burst[0] / single[0]:.2f}, CPU {burst[1] / single[1]:.2f}")


if __name__ == "__main__":
    main()
