"""Import benchmark: `pulse-tui import` of a 1,000,000-row events CSV against sqlite3's `.import`.

Usage: python bench/import_bench.py [--rows N] [--keep]

Generates (and caches under bench/.cache/) a realistic events CSV, then, each into a fresh
database with the PULSE schema and indexes:
  1. `pulse-tui --db X import FILE` (validation, duplicates, sessions and rollups kept current)
  2. sqlite3 CLI `.import --csv --skip 1` with default settings
  3. sqlite3 CLI `.import` with PULSE's pragmas (WAL, synchronous=NORMAL, 256 MiB cache)
Prints rows/s, the ratios and each process's peak RSS.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
SCHEMA = ROOT / "pulse_tui" / "store" / "schema.sql"

HEADER = ["event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id", "url",
          "referrer", "country", "device_type", "created_at"]
PULSE_PRAGMAS = ("PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n"
                 "PRAGMA cache_size=-262144;\nPRAGMA temp_store=MEMORY;\n")


def generate(path: Path, rows: int) -> None:
    """Sessions of 1-12 events over 30 days, 3 sites, ~20 % anonymous, time-ordered-ish."""
    rnd = random.Random(7)
    start = 1_761_955_200_000  # 2025-11-01
    span = 30 * 86_400_000
    pages = [f"/{p}" for p in ("", "pricing", "features", "docs", "blog", "signup", "login",
                               "dashboard", "settings", "checkout")] + \
        [f"/docs/page-{i}" for i in range(200)] + [f"/blog/post-{i}" for i in range(300)]
    refs = ["", "", "", "https://www.google.com/", "https://news.ycombinator.com/",
            "https://twitter.com/", "https://github.com/", "https://duckduckgo.com/"]
    countries = ["US", "US", "DE", "GB", "FR", "CA", "IN", "BR", "JP", "NL", "SE", "ES"]
    devices = ["desktop", "desktop", "mobile", "mobile", "tablet"]
    types = ["page_view"] * 6 + ["click", "click", "scroll", "signup", "purchase"]
    sites = ["acme-web", "acme-docs", "acme-shop"]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        n = 0
        while n < rows:
            t = start + (n * span) // rows + rnd.randint(0, 600_000)
            site = rnd.choice(sites)
            sid = f"s{rnd.getrandbits(48):012x}"
            uid = f"u{rnd.randint(1, 60_000)}" if rnd.random() < 0.8 else ""
            country, device, ref = rnd.choice(countries), rnd.choice(devices), rnd.choice(refs)
            for k in range(min(rnd.randint(1, 12), rows - n)):
                n += 1
                w.writerow([f"e{n:08d}-{rnd.getrandbits(32):08x}", site,
                            rnd.choice(types), t + k * 20_000, sid, uid, rnd.choice(pages),
                            ref if k == 0 else "", country, device, 1_764_000_000_000])
    tmp.replace(path)


def measure(cmd: list[str], stdin: str | None = None) -> tuple[float, int, str]:
    """Run ``cmd`` from a fresh Python helper so its peak RSS is its own."""
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

    res = subprocess.run([sys.executable, "-c", helper, json.dumps(cmd),
                          "1" if stdin is not None else "0"],
                         input=stdin or "", capture_output=True, text=True, check=True)
    t, rss, code, out = json.loads(res.stdout)
    return t, rss, f"(exit {code}) {out}"


def schema_db(path: Path) -> None:
    subprocess.run(["sqlite3", str(path)], input=SCHEMA.read_text(), check=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the databases (print the folder)")
    args = ap.parse_args()
    if not shutil.which("sqlite3"):
        raise SystemExit("the sqlite3 CLI is needed (apt-get install -y sqlite3)")
    CACHE.mkdir(parents=True, exist_ok=True)
    src = CACHE / f"events_{args.rows}.csv"
    if not src.exists():
        print(f"generating {src} ...", flush=True)
        generate(src, args.rows)
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

    counts = {}
    for name, path in (("pulse", db), ("default", db2), ("pragmas", db3)):
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
    if args.keep:
        print(f"databases kept in {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
