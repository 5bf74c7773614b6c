"""Contention benchmark: issue 3's acceptance at full size.

While `pulse-tui simulate --rate 2000` writes from one process and the worker (another process)
imports a 1,000,000-row events file, a headless TUI on the same database (in-process:
`make_app` + `run_test`, the live pane on all sites) keeps showing new events, and no process
reports "database is locked"; afterwards every row of the file and of the simulator is stored
exactly once and the derived tables agree with `events`.

Usage (from the repository root, venv active):

    nice -n 10 python bench/contention_bench.py [--rows 1000000] [--rate 2000] [--baseline 30]

The processes run whichever pulse_tui this script imports (the checkout, or PYTHONPATH's: e.g.
`git archive HEAD pulse_tui pulse.tcss | tar -x -C /tmp/src` and PYTHONPATH=/tmp/src to measure
a commit while the working tree has edits). The database lives in a temporary folder.

The events CSV is bench/import_bench.py's, cached as bench/.cache/events_N.csv (generated with
its generator if missing); sites acme-web / acme-docs / acme-shop, event ids `e<8 digits>-...`.
The simulator runs with seed 161, so its event ids start with `ea1-` and its sites are acme-web /
acme-app / acme-blog: simulated rows are counted by id, and `acme-app` + `acme-blog` are sites the
file never writes (the "simulated events on screen" gap uses those).

Prints: import duration and rows/s (from the job's started_at / completed_at), simulate's
achieved rate (alone first, as a baseline; then for the whole run, during the import by event
timestamp, and the slowest whole 10 s of the import), CPU seconds per process, the TUI's
event-arrival gaps (max / p95 seconds between observed increases of live.last_seq, sampled every
100 ms, over the import window), every "locked" / error line in the processes' stderr and in the
TUI's log records, the load average, and the exactness checks. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from import_bench import CACHE, generate  # noqa: E402

from pulse_tui.config import Settings  # noqa: E402
from pulse_tui.store.connection import connect  # noqa: E402
from pulse_tui.tui.app import make_app  # noqa: E402
from pulse_tui.tui.screens.live import LiveScreen  # noqa: E402

SEED = 161                      # simulated event ids start with "ea1-"
SIM_PREFIX = f"e{SEED:x}-"
SIM_ONLY_SITES = {"acme-app", "acme-blog"}   # the CSV writes acme-web / acme-docs / acme-shop
SAMPLE_SECONDS = 0.1
BAD_WORDS = ("locked", "error", "traceback", "exception", "busy")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def spawn(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """``python -m pulse_tui ARGS`` on the same pulse_tui this process imported."""
    import pulse_tui

    src = str(Path(pulse_tui.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "pulse_tui", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path})


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc), 0 if unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def parse_wrote(err: str) -> tuple[int, float] | None:
    """simulate's last line: 'wrote N events in S.Ss'."""
    for line in reversed(err.splitlines()):
        if line.startswith("wrote "):
            parts = line.split()
            return int(parts[1]), float(parts[4].rstrip("s"))
    return None


def job_row(db: Path) -> tuple | None:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(
            "SELECT status, processed_records, failed_records, duplicate_records, started_at,"
            " completed_at, message FROM import_jobs WHERE type = 'events'").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


class Capture(logging.Handler):
    """WARNING and above from the in-process TUI (store, panes, workers)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}"
                          + (" (with traceback)" if record.exc_info else ""))


@dataclass
class Trace:
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # t, last_seq, sim seq
    loads: list[tuple[float, tuple[float, float, float]]] = field(default_factory=list)
    dropped_at: float = 0.0
    processing_at: float = 0.0
    done_at: float = 0.0
    job: tuple | None = None


def gaps(samples: list[tuple[float, int]], start: float, end: float) -> list[float]:
    """Seconds between observed increases inside [start, end] (the edges count as marks)."""
    marks = [start]
    prev = None
    for t, v in samples:
        if prev is not None and v > prev and start <= t <= end:
            marks.append(t)
        prev = v
    marks.append(end)
    return [b - a for a, b in pairwise(marks) if b > a]


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


async def drive(settings: Settings, csv_path: Path, trace: Trace, *, tail: float,
                timeout: float) -> None:
    app = make_app(settings, worker=False)
    async with app.run_test(size=(120, 30)) as pilot:
        live = app.screen
        assert isinstance(live, LiveScreen), type(live)
        t0 = time.monotonic()
        while live.last_seq == 0:
            if time.monotonic() - t0 > 60:
                raise SystemExit("the live pane saw no simulated event within 60 s")
            await pilot.pause(SAMPLE_SECONDS)
        log(f"live pane shows simulated events (last_seq {live.last_seq}); dropping the file")
        target = settings.import_dir / "events" / csv_path.name
        part = target.with_name(target.name + ".part")
        try:
            os.link(csv_path, part)
        except OSError:
            shutil.copyfile(csv_path, part)
        part.rename(target)  # appears complete at once
        trace.dropped_at = time.monotonic()
        next_job = next_load = 0.0
        end_at = None
        while True:
            now = time.monotonic()
            sim_seq = max((e.seq for e in live.kept if e.site_id in SIM_ONLY_SITES), default=0)
            trace.samples.append((now, live.last_seq, sim_seq))
            if now >= next_load:
                trace.loads.append((now, os.getloadavg()))
                next_load = now + 30
            if end_at is None and now >= next_job:
                next_job = now + 0.5
                job = job_row(settings.db)
                if job and job[0] == "processing" and not trace.processing_at:
                    trace.processing_at = now
                    log("import job processing")
                if job and job[0] in ("completed", "failed"):
                    trace.done_at, trace.job, end_at = now, job, now + tail
                    log(f"import job {job[0]}: {job[1]:,} rows")
            if end_at is not None and now >= end_at:
                break
            if now - trace.dropped_at > timeout:
                raise SystemExit(f"the import did not finish within {timeout:.0f} s")
            await pilot.pause(SAMPLE_SECONDS)
        trace.loads.append((time.monotonic(), os.getloadavg()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--tail", type=float, default=10.0,
                    help="seconds to keep everything running after the import completed")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--baseline", type=float, default=30.0,
                    help="first run simulate alone for this many seconds (0: skip)")
    ap.add_argument("--keep", action="store_true", help="keep the database (print its folder)")
    args = ap.parse_args()

    CACHE.mkdir(parents=True, exist_ok=True)
    csv_path = CACHE / f"events_{args.rows}.csv"
    if not csv_path.exists():
        log(f"generating {csv_path} ...")
        generate(csv_path, args.rows)
    work = Path(tempfile.mkdtemp(prefix="pulse-contention-bench-"))
    settings = Settings(db=work / "pulse.db", import_dir=work / "import",
                        export_dir=work / "exports", log_file=work / "pulse-tui.log",
                        settle_seconds=0.5)
    for sub in ("events", "users", "cohort_members"):
        (settings.import_dir / sub).mkdir(parents=True, exist_ok=True)
    settings.export_dir.mkdir(parents=True)
    config = work / "config.toml"
    config.write_text(f"settle_seconds = 0.5\nexport_dir = \"{settings.export_dir}\"\n"
                      f"log_file = \"{settings.log_file}\"\n")
    connect(settings.db).close()  # schema first, so the two processes do not race to create it
    common = ["--db", str(settings.db), "--config", str(config)]

    baseline = None
    if args.baseline > 0:
        base_db = work / "baseline.db"
        connect(base_db).close()
        log(f"baseline: simulate --rate {args.rate:g} alone for {args.baseline:g} s")
        t = time.monotonic()
        proc = spawn(["simulate", "--rate", f"{args.rate:g}", "--duration", f"{args.baseline:g}",
                      "--seed", str(SEED), "--db", str(base_db), "--config", str(config)], work)
        cpu = 0.0
        while proc.poll() is None:
            cpu = cpu_seconds(proc.pid) or cpu
            time.sleep(0.5)
        err = proc.communicate()[1].decode(errors="replace")
        baseline = parse_wrote(err)
        if baseline:
            log(f"baseline: wrote {baseline[0]:,} events in {baseline[1]:.1f} s = "
                f"{baseline[0] / baseline[1]:,.0f}/s, {cpu:.0f} s CPU "
                f"({time.monotonic() - t:.0f} s wall)")
        else:
            log(f"baseline: no result ({err.strip()[-300:]})")

    import pulse_tui
    log(f"pulse_tui from {Path(pulse_tui.__file__).parent}; db {settings.db}; "
        f"batch rows {os.environ.get('PULSE_IMPORT_BATCH_ROWS', 'default')}; "
        f"load {os.getloadavg()}")
    capture = Capture()
    logging.getLogger().addHandler(capture)
    trace = Trace()
    sim = spawn(["simulate", "--rate", f"{args.rate:g}", "--seed", str(SEED), *common], work)
    worker = spawn(["worker", "--import-dir", str(settings.import_dir), *common], work)
    procs = {"simulate": sim, "worker": worker}
    t_start = time.monotonic()
    try:
        asyncio.run(drive(settings, csv_path, trace, tail=args.tail, timeout=args.timeout))
    finally:
        cpu = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        outputs = {name: proc.communicate(timeout=120) for name, proc in procs.items()}
    wall = time.monotonic() - t_start

    failures: list[str] = []
    # ------------------------------------------------------------------ stderr / logs
    bad: list[str] = []
    for name, (out, err) in outputs.items():
        text = (out + err).decode(errors="replace")
        rc = procs[name].returncode
        if rc != 0:
            failures.append(f"{name} exited with {rc}")
        for line in text.splitlines():
            if any(w in line.lower() for w in BAD_WORDS):
                bad.append(f"{name}: {line}")
    bad += [f"tui: {line}" for line in capture.lines
            if any(w in line.lower() for w in BAD_WORDS)]
    sim_err = outputs["simulate"][1].decode(errors="replace")
    wrote = parse_wrote(sim_err)
    sim_written, sim_seconds = wrote or (0, 0.0)
    if not wrote:
        failures.append("simulate did not report what it wrote")

    # ------------------------------------------------------------------ import figures
    job = trace.job or job_row(settings.db)
    if job is None or job[0] != "completed":
        failures.append(f"import job not completed: {job}")
        job = job or ("?", 0, 0, 0, 0, 0, "")
    status, processed, failed, dups, started_ms, completed_ms, message = job
    import_s = (completed_ms - started_ms) / 1000 if started_ms and completed_ms else float("nan")

    conn = sqlite3.connect(settings.db, timeout=30)
    q = lambda sql, *a: conn.execute(sql, a).fetchone()[0]  # noqa: E731
    total = q("SELECT count(*) FROM events")
    sim_rows = q("SELECT count(*) FROM events WHERE event_id GLOB ?", SIM_PREFIX + "*")
    file_rows = q("SELECT count(*) FROM events WHERE event_id GLOB 'e[0-9]*'")
    sessions_sum = q("SELECT sum(event_count) FROM sessions")
    rollup_sum = q("SELECT sum(events) FROM rollup_daily")
    during = q("SELECT count(*) FROM events WHERE event_id GLOB ? AND timestamp_ms >= ? "
               "AND timestamp_ms < ?", SIM_PREFIX + "*", started_ms, completed_ms)
    per10 = conn.execute(
        "SELECT timestamp_ms / 10000, count(*) FROM events WHERE event_id GLOB ? "
        "AND timestamp_ms >= ? AND timestamp_ms < ? GROUP BY 1 ORDER BY 1",
        (SIM_PREFIX + "*", started_ms, completed_ms)).fetchall()
    conn.close()
    full10 = [n / 10 for b, n in per10[1:-1]]  # whole 10-s buckets inside the import

    # ------------------------------------------------------------------ TUI gaps
    start = trace.processing_at or trace.dropped_at
    end = trace.done_at
    seq_gaps = gaps([(t, s) for t, s, _ in trace.samples], start, end)
    sim_gaps = gaps([(t, s) for t, _, s in trace.samples], start, end)
    ticks = [b[0] - a[0] for a, b in pairwise(trace.samples)
             if start <= a[0] <= end]

    # ------------------------------------------------------------------ report
    print()
    print(f"events file: {csv_path.name} ({args.rows:,} rows); simulate --rate {args.rate:g};"
          f" wall {wall:.0f} s")
    print(f"import: {status}, {processed:,} rows ({failed} rejected, {dups} duplicates) in "
          f"{import_s:.1f} s = {processed / import_s:,.0f} rows/s under contention"
          + (f"; {message}" if message else ""))
    print(f"simulate: wrote {sim_written:,} events in {sim_seconds:.1f} s = "
          f"{sim_written / max(sim_seconds, 1e-9):,.0f}/s "
          f"({sim_written / max(sim_seconds, 1e-9) / args.rate:.1%} of {args.rate:g}); during the"
          f" import {during:,} = {during / import_s:,.0f}/s "
          f"({during / import_s / args.rate:.1%})"
          + (f"; slowest whole 10 s of the import {min(full10):,.0f}/s" if full10 else ""))
    if baseline:
        print(f"simulate alone (baseline, same machine, just before): {baseline[0]:,} events in "
              f"{baseline[1]:.1f} s = {baseline[0] / baseline[1]:,.0f}/s")
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(f"CPU seconds during the run: simulate {cpu['simulate']:.0f}, worker "
          f"{cpu['worker']:.0f}, TUI + bench {own.ru_utime + own.ru_stime:.0f} "
          f"(wall {wall:.0f} s, 2 cores shared)")
    print(f"TUI live.last_seq increases during the import: {len(seq_gaps) - 1} over "
          f"{end - start:.0f} s; gap max {max(seq_gaps):.2f} s, p95 {p95(seq_gaps):.2f} s, "
          f"median {statistics.median(seq_gaps):.2f} s")
    print(f"TUI new simulated events on screen ({'/'.join(sorted(SIM_ONLY_SITES))}): "
          f"gap max {max(sim_gaps):.2f} s, p95 {p95(sim_gaps):.2f} s")
    print(f"sampling: {len(ticks)} samples, interval median {statistics.median(ticks):.3f} s, "
          f"max {max(ticks):.2f} s")
    print("load average (1/5/15 min) during the run: "
          + "; ".join(f"+{t - t_start:.0f}s {a[0]:.2f} {a[1]:.2f} {a[2]:.2f}"
                      for t, a in trace.loads))
    print(f"locked / error lines: {len(bad)}")
    for line in bad[:40]:
        print(f"  {line}")
    checks = [
        ("events = file rows + simulated rows", total == args.rows + sim_written,
         f"{total:,} vs {args.rows:,} + {sim_written:,}"),
        ("file rows stored once", file_rows == args.rows == processed, f"{file_rows:,}"),
        ("simulated rows stored once", sim_rows == sim_written, f"{sim_rows:,}"),
        ("sum(sessions.event_count) = count(events)", sessions_sum == total, f"{sessions_sum:,}"),
        ("sum(rollup_daily.events) = count(events)", rollup_sum == total, f"{rollup_sum:,}"),
        ("no locked / error lines", not bad, str(len(bad))),
    ]
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        if not ok:
            failures.append(name)
    for f in failures:
        print(f"FAILED: {f}")
    if args.keep:
        print(f"database kept in {work}")
    else:
        shutil.rmtree(work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
