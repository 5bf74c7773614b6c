"""Import benchmark: `pulse-tui import` of a 1,000,000-row events CSV against sqlite3's `.import`.

Usage: python bench/import_bench.py [--rows N] [--ids ordered|uuid] [--keep]

Generates (and caches under bench/.cache/) a realistic events CSV, then, each into a fresh
database with the PULSE schema and indexes:
  1. `pulse-tui --db X import FILE` (validation, duplicates, sessions and rollups kept current)
  2. sqlite3 CLI `.import --csv --skip 1` with default settings
  3. sqlite3 CLI `.import` with PULSE's pragmas (WAL, synchronous=NORMAL, 256 MiB cache)
  4. the floor for any Python importer: the rows already parsed in memory (not timed), only
     `executemany` INSERT OR IGNORE into events through PULSE's bulk connection, 100,000-row
     transactions, no validation and no derived tables
Prints rows/s, the ratios and each process's peak RSS.

``--ids uuid`` writes random UUIDs for event, session and user ids (as SDKs such as Segment's
send them) instead of time-ordered event ids and short session/user ids.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
SCHEMA = ROOT / "pulse_tui" / "store" / "schema.sql"

HEADER = ["event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id", "url",
          "referrer", "country", "device_type", "created_at"]
PULSE_PRAGMAS = ("PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n"
                 "PRAGMA cache_size=-262144;\nPRAGMA temp_store=FILE;\n")


# the generator's values (bench/clickhouse_scale_bench.py makes the same distribution in SQL)
PAGES = [f"/{p}" for p in ("", "pricing", "features", "docs", "blog", "signup", "login",
                           "dashboard", "settings", "checkout")] + \
    [f"/docs/page-{i}" for i in range(200)] + [f"/blog/post-{i}" for i in range(300)]
REFERRERS = ["", "", "", "https://www.google.com/", "https://news.ycombinator.com/",
             "https://twitter.com/", "https://github.com/", "https://duckduckgo.com/"]
COUNTRIES = ["US", "US", "DE", "GB", "FR", "CA", "IN", "BR", "JP", "NL", "SE", "ES"]
DEVICES = ["desktop", "desktop", "mobile", "mobile", "tablet"]
EVENT_TYPES = ["page_view"] * 6 + ["click", "click", "scroll", "signup", "purchase"]
SITES = ["acme-web", "acme-docs", "acme-shop"]


def generate(path: Path, rows: int, ids: str = "ordered") -> None:
    """Sessions of 1-12 events over 30 days, 3 sites, ~20 % anonymous, time-ordered-ish."""
    rnd = random.Random(7)
    uuids = ids == "uuid"

    def uuid4() -> str:
        return str(uuid.UUID(int=rnd.getrandbits(128), version=4))

    user_ids = [uuid4() for _ in range(60_000)] if uuids else []
    start = 1_761_955_200_000  # 2025-11-01
    span = 30 * 86_400_000
    pages, refs, countries, devices, types, sites = (
        PAGES, REFERRERS, COUNTRIES, DEVICES, EVENT_TYPES, SITES)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        n = 0
        while n < rows:
            t = start + (n * span) // rows + rnd.randint(0, 600_000)
            site = rnd.choice(sites)
            sid = uuid4() if uuids else f"s{rnd.getrandbits(48):012x}"
            uid = f"u{rnd.randint(1, 60_000)}" if rnd.random() < 0.8 else ""
            if uid and uuids:
                uid = user_ids[int(uid[1:]) - 1]
            country, device, ref = rnd.choice(countries), rnd.choice(devices), rnd.choice(refs)
            for k in range(min(rnd.randint(1, 12), rows - n)):
                n += 1
                eid = uuid4() if uuids else f"e{n:08d}-{rnd.getrandbits(32):08x}"
                w.writerow([eid, site,
                            rnd.choice(types), t + k * 20_000, sid, uid, rnd.choice(pages),
                            ref if k == 0 else "", country, device, 1_764_000_000_000])
    tmp.replace(path)


def measure(cmd: list[str], stdin: str | None = None) -> tuple[float, int, str]:
    """Run ``cmd`` from a fresh Python helper so its peak RSS is its own. The disk is synced
    first: a step must not pay for the writeback of the one before (a 10M-row ``.import`` leaves
    2.5 GB of dirty pages behind)."""
    helper = (
        "import json, resource, subprocess, sys, time\n"
        "cmd = json.loads(sys.argv[1]); data = sys.stdin.read() if sys.argv[2] == '1' else None\n"
        "t0 = time.perf_counter()\n"
        "p = subprocess.run(cmd, input=data, capture_output=True, text=True)\n"
        "t = time.perf_counter() - t0\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([t, rss, p.returncode, p.stdout[-2000:] + p.stderr[-300:]]))\n"
    )
    import json

    os.sync()
    res = subprocess.run([sys.executable, "-c", helper, json.dumps(cmd),
                          "1" if stdin is not None else "0"],
                         input=stdin or "", capture_output=True, text=True, check=True)
    t, rss, code, out = json.loads(res.stdout)
    return t, rss, f"(exit {code}) {out}"


def floor(db: Path, src: Path) -> None:
    """(run in its own process) Insert-only floor: parse everything first (not timed), then time
    executemany into events with PULSE's bulk connection settings; prints the seconds."""
    sys.path.insert(0, str(ROOT))
    from pulse_tui.store.connection import connect

    with open(src, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        rows = [(r[0], r[1], r[2], int(r[3]), r[4], r[5] or None, r[6] or None, r[7] or None,
                 r[8] or None, r[9] or None, int(r[10])) for r in reader]
    conn = connect(db, bulk=True)
    sites = sorted({r[1] for r in rows})
    conn.executemany("INSERT INTO sites (id, created_at) VALUES (?, 0)", [(s,) for s in sites])
    t0 = time.perf_counter()
    for i in range(0, len(rows), 100_000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         rows[i:i + 100_000])
        conn.execute("COMMIT")
    print(f"floor-seconds {time.perf_counter() - t0:.3f}")


def schema_db(path: Path) -> None:
    subprocess.run(["sqlite3", str(path)], input=SCHEMA.read_text(), check=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--ids", choices=("ordered", "uuid"), default="ordered",
                    help="ordered: time-ordered event ids (default); uuid: random UUID ids")
    ap.add_argument("--keep", action="store_true", help="keep the databases (print the folder)")
    ap.add_argument("--floor", nargs=2, metavar=("DB", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor:
        floor(Path(args.floor[0]), Path(args.floor[1]))
        return
    if not shutil.which("sqlite3"):
        raise SystemExit("the sqlite3 CLI is needed (apt-get install -y sqlite3)")
    CACHE.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.ids == "ordered" else "_uuid"
    src = CACHE / f"events_{args.rows}{suffix}.csv"
    if not src.exists():
        print(f"generating {src} ...", flush=True)
        generate(src, args.rows, args.ids)
    size_mb = src.stat().st_size / 1e6
    work = Path(tempfile.mkdtemp(prefix="pulse-import-bench-"))
    pulse = shutil.which("pulse-tui") or "pulse-tui"
    n = args.rows
    results = {}

    db = work / "pulse.db"
    t, rss, out = measure([pulse, "--db", str(db), "import", str(src)])
    results["pulse-tui import"] = (t, rss)
    print(out.strip())

    db2 = work / "sqlite_default.db"
    schema_db(db2)
    t, rss, out = measure(["sqlite3", str(db2)], f".import --csv --skip 1 {src} events\n")
    results["sqlite3 .import (default)"] = (t, rss)

    db3 = work / "sqlite_pulse_pragmas.db"
    schema_db(db3)
    t, rss, out = measure(["sqlite3", str(db3)],
                          PULSE_PRAGMAS + f".import --csv --skip 1 {src} events\n")
    results["sqlite3 .import (PULSE pragmas)"] = (t, rss)

    db4 = work / "floor.db"
    _, rss, out = measure([sys.executable, __file__, "--floor", str(db4), str(src)])
    t = float(out.split("floor-seconds")[1].split()[0])
    results["floor: executemany only (parsed)"] = (t, rss)

    counts = {}
    for name, path in (("pulse", db), ("default", db2), ("pragmas", db3), ("floor", db4)):
        r = subprocess.run(["sqlite3", str(path), "SELECT count(*) FROM events"],
                           capture_output=True, text=True, check=True)
        counts[name] = int(r.stdout.strip())
    print(f"\n{n:,} rows, {size_mb:.0f} MB CSV; events stored: {counts}")
    base = results["sqlite3 .import (default)"][0]
    prag = results["sqlite3 .import (PULSE pragmas)"][0]
    print(f"{'':34} {'seconds':>8} {'rows/s':>10} {'peak RSS':>10}")
    for name, (t, rss) in results.items():
        print(f"{name:34} {t:8.1f} {n / t:10,.0f} {rss / 1024:8.0f} MB")
    pt = results["pulse-tui import"][0]
    print(f"ratio vs .import default:        {base / pt:.2f}  (>= 1.0 means PULSE is as fast)")
    print(f"ratio vs .import PULSE pragmas:  {prag / pt:.2f}")
    fl = results["floor: executemany only (parsed)"][0]
    print(f"floor vs .import default:        {base / fl:.2f}  (inserting the events alone, "
          "from Python, nothing else)")
    if args.keep:
        print(f"databases kept in {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
