"""SQLite and embedded ClickHouse (chdb) side by side on the same events CSV.

Usage: python bench/clickhouse_bench.py [--rows N] [--csv FILE] [--work DIR] [--keep]
                                      [--shape sessions|daily] [--import-only] [--python-path]
                                      [--sqlite-only]

1. Import: `pulse-tui import FILE` into a fresh SQLite file, the same command with
   `--events-store chdb:///DIR` (validation, duplicates, checkpoints, errors file: the same
   importer; a plain file takes the ClickHouse fast path, backend/clickhouse/bulk.py), the same
   file again into that store (every row a duplicate: the id lookup), and the sqlite3 CLI's
   `.import` of the same file as the reference. ``--python-path`` adds the chdb import with the
   fast path off (PULSE_IMPORT_FAST_PATH=0); ``--import-only`` skips PULSE's SQLite import and
   the queries.

Shapes: ``sessions`` (bench/import_bench.py's generator: sessions of 1-12 events, time-ordered
ids) and ``daily`` (one event per user and day over 30 days, in random time order, random ids).
2. Queries, each store in its own process (chdb serves one directory per process), through the
   events interface the panes and `report` use: every report over the last 30 and 90 days of the
   data, the funnel, a cohort preview with a URL condition, the saved-cohort retention grid
   (refresh: computed from the events), totals with the previous period, the live pane; wall
   and CPU time, the median of 3 warm runs after one warm-up (bench/timing.py).
3. The charts pane's first paint (bench/charts_paint_bench.py) on each store.

The CSV is bench/import_bench.py's generator (cached under bench/.cache/, or --csv). With
``--work DIR`` the databases and each finished step's figures (DIR/results.json, with the time
and load average it ran at) stay in DIR, and a run started again skips the finished steps: a
10M-row run takes an hour of a shared 2-core machine, so it may be resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from import_bench import CACHE, generate, measure, schema_db  # noqa: E402

DATA_END = "2025-12-01"  # the generator writes 30 days from 2025-11-01


def generate_daily(path: Path, rows: int) -> None:
    """One event per user and day for 30 days from 2025-11-01, in random time order."""
    import csv
    import random

    rnd = random.Random(11)
    users = -(-rows // 30)
    cells = [(u, d) for u in range(users) for d in range(30)][:rows]
    rnd.shuffle(cells)
    start = 1_761_955_200_000
    sites = ["acme-web", "acme-docs", "acme-shop"]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["event_id", "site_id", "event_type", "timestamp_ms", "session_id",
                    "user_id", "url", "referrer", "country", "device_type", "created_at"])
        for u, d in cells:
            t = start + d * 86_400_000 + rnd.randrange(86_400_000)
            w.writerow([f"{rnd.getrandbits(64):016x}", sites[u % 3], "page_view", t,
                        f"s{u}-{d}", f"u{u}", f"/docs/page-{rnd.randrange(200)}", "",
                        ("US", "DE", "JP", "FR")[u % 4], ("desktop", "mobile")[u % 2],
                        1_764_000_000_000])
    tmp.replace(path)


def queries(db: str, store: str) -> dict[str, tuple[float, float]]:
    """(in its own process) (wall ms, CPU ms) per query through the events interface."""
    from datetime import date, timedelta

    from timing import timed_cpu as timed

    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.clock import Clock
    from pulse_tui.report_models import DateRange

    end = date.fromisoformat(DATA_END)
    now_ms = (end - date(1970, 1, 1)).days * 86_400_000 + 12 * 3_600_000
    clock = Clock(now_ms)
    b = open_backends(Path(db), store)
    ev = b.events
    site = "acme-web"
    out: dict[str, tuple[float, float]] = {}
    for days in (30, 90):
        rng = DateRange(end - timedelta(days=days - 1), end)
        for name in ("daily", "breakdown", "top-urls", "top-referrers", "top-countries",
                     "top-devices"):
            out[f"{name} {days} d"] = timed(lambda n=name, r=rng: ev.report(n, site, r,
                                                                              now_ms=now_ms))
        out[f"totals + previous {days} d"] = timed(lambda r=rng: ev.range_totals(site, r, now_ms))
        out[f"funnel {days} d"] = timed(lambda r=rng: ev.funnel(
            site, r, ("page_view", "click", "signup", "purchase")))
    out["live pane: newest 500 arrivals"] = timed(lambda: ev.tail(limit=500))
    out["live pane: newest 500 of the site"] = timed(lambda: ev.tail(site_id=site, limit=500))
    url = {"type": "and", "conditions": [
        {"property": "url", "operator": "contains", "value": "/docs/page-1"},
        {"property": "country", "operator": "equals", "value": "DE"}]}
    out["cohort preview, URL condition"] = timed(lambda: ev.cohort_preview(clock, site, url))
    existing = [c for c in b.control.list_cohorts(site) if c.name == "bench"]
    if not existing:
        b.control.create_cohort(clock, site_id=site, name="bench", criteria=url)
    out["saved-cohort retention grid (refresh)"] = timed(
        lambda: ev.refresh_retention(site, clock, end - timedelta(days=41), end), repeat=1)
    b.close()
    return out


def _step(work: Path, name: str, run) -> object:  # type: ignore[no-untyped-def]
    """The figures of step ``name``: from DIR/results.json when it ran already, else run it."""
    path = work / "results.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    if name not in done:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        value = run()
        done = json.loads(path.read_text()) if path.exists() else {}
        done[name] = {"value": value, "started": started,
                      "ended": time.strftime("%H:%M:%S", time.gmtime()),
                      "load": os.getloadavg()[0]}
        path.write_text(json.dumps(done, indent=1))
    return done[name]["value"]


def store_steps(work: Path, label: str, db: Path, store: str) -> tuple[object, object]:
    """The queries and the charts pane's first paint on one store (each in its own process)."""
    def run_queries() -> dict[str, float]:
        res = subprocess.run([sys.executable, __file__, "--queries", str(db), store],
                             capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])

    def run_paint() -> dict[str, float]:
        res = subprocess.run([sys.executable, str(ROOT / "bench/charts_paint_bench.py"),
                              "--db", str(db), "--events-store", store, "--today", DATA_END,
                              "--runs", "3", "--json"],
                             capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])

    return (_step(work, f"queries, {label}", run_queries),
            _step(work, f"charts first paint, {label}", run_paint))


def sqlite_steps(work: Path, db: Path) -> None:
    store_steps(work, "SQLite", db, "sqlite")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--csv", type=Path, help="the events CSV (default: generated and cached)")
    ap.add_argument("--work", type=Path, help="keep databases and figures here; resume")
    ap.add_argument("--keep", action="store_true", help="keep the databases (print where)")
    ap.add_argument("--sqlite-only", action="store_true",
                    help="run the SQLite steps only (the chdb ones later, with --work)")
    ap.add_argument("--shape", choices=("sessions", "daily"), default="sessions")
    ap.add_argument("--import-only", action="store_true")
    ap.add_argument("--python-path", action="store_true")
    ap.add_argument("--queries", nargs=2, metavar=("DB", "STORE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.queries:
        print(json.dumps(queries(*args.queries)))
        return
    if not shutil.which("sqlite3"):
        raise SystemExit("the sqlite3 CLI is needed (apt-get install -y sqlite3)")
    src = args.csv
    if src is None:
        CACHE.mkdir(parents=True, exist_ok=True)
        src = CACHE / (f"events-{args.rows}-ordered.csv" if args.shape == "sessions" else
                       f"events-{args.rows}-daily.csv")
        if not src.exists():
            t = time.perf_counter()
            (generate if args.shape == "sessions" else generate_daily)(src, args.rows)
            print(f"generated {src} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    work = args.work or Path(tempfile.mkdtemp(prefix="pulse-ch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pulse = [sys.executable, "-m", "pulse_tui"]
    sq_db, ch_db, ref_db = work / "sqlite.db", work / "chdb.db", work / "ref.db"
    store = f"chdb://{work / 'ch'}"

    def imp(cmd: list[str], stdin: str | None = None, fresh: Path | None = None):  # type: ignore[no-untyped-def]
        def run() -> list[float]:
            leftovers = [] if fresh is None else [fresh, Path(f"{fresh}-wal"),
                                                  Path(f"{fresh}-shm")]
            if fresh == ch_db:
                leftovers.append(work / "ch")
            for leftover in leftovers:
                if leftover.exists():  # an interrupted earlier try
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            if fresh == ref_db:
                schema_db(ref_db)
            t, rss, out = measure(cmd, stdin)
            print(out[-300:], file=sys.stderr)
            return [t, rss]
        return run

    results: dict[str, list[float]] = {}
    if not args.import_only:
        results["pulse-tui import, SQLite"] = _step(work, "pulse-tui import, SQLite", imp(
            [*pulse, "--db", str(sq_db), "import", str(src)], fresh=sq_db))  # type: ignore[assignment]
    results["sqlite3 .import (default)"] = _step(work, "sqlite3 .import (default)", imp(
        ["sqlite3", str(ref_db)], f".import --csv --skip 1 {src} events\n",
        fresh=ref_db))  # type: ignore[assignment]
    if args.sqlite_only:
        sqlite_steps(work, sq_db)
        return
    results["pulse-tui import, chdb"] = _step(work, "pulse-tui import, chdb", imp(
        [*pulse, "--db", str(ch_db), "--events-store", store, "import", str(src)],
        fresh=ch_db))  # type: ignore[assignment]
    again = "... the same file again (all duplicates)"
    results[again] = _step(work, again, imp(
        [*pulse, "--db", str(ch_db), "--events-store", store, "import", str(src)]))  # type: ignore[assignment]
    if args.python_path:
        slow, py_db = work / "ch-python", work / "python.db"
        results["pulse-tui import, chdb, Python path"] = _step(
            work, "pulse-tui import, chdb, Python path", imp(
                ["env", "PULSE_IMPORT_FAST_PATH=0", *pulse, "--db", str(py_db),
                 "--events-store", f"chdb://{slow}", "import", str(src)], fresh=py_db))  # type: ignore[assignment]
    ref = results["sqlite3 .import (default)"][0]
    print(f"\n| {args.rows:,} rows | seconds | rows/s | vs `.import` | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (sec, rss_kb) in results.items():
        print(f"| {name} | {sec:.1f} | {args.rows / sec:,.0f} | {ref / sec:.2f} | "
              f"{int(rss_kb) // 1024} MB |")
    if args.import_only:
        return
    timings = {}
    paints = {}
    for label, db, st in (("SQLite", sq_db, "sqlite"), ("chdb", ch_db, store)):
        timings[label], paints[label] = store_steps(work, label, db, st)
    print("\n| query (site acme-web; ms, median of 3 warm runs: wall / CPU) | SQLite | chdb |")
    print("| --- | ---: | ---: |")
    for q in timings["SQLite"]:  # type: ignore[union-attr]
        (sw, sc), (cw, cc) = timings["SQLite"][q], timings["chdb"][q]  # type: ignore[index]
        print(f"| {q} | {sw:.1f} / {sc:.0f} | {cw:.1f} / {cc:.0f} |")
    print(f"| charts pane first paint, 30 d (median of 3 app runs, wall) | "
          f"{paints['SQLite']['paint_ms']:.0f} | {paints['chdb']['paint_ms']:.0f} |")  # type: ignore[index]
    du = subprocess.run(["du", "-sm", str(work / "ch"), str(sq_db)], capture_output=True,
                        text=True).stdout.split()
    print(f"\ndisk: chdb directory {du[0]} MB, SQLite file {du[2]} MB")
    print(f"steps: {json.dumps({k: (v['started'], v['ended'], v['load']) for k, v in json.loads((work / 'results.json').read_text()).items()})}")
    if args.keep or args.work:
        print(f"kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
