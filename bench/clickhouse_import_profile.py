"""Where a chdb import's time goes, and the merges it leaves behind.

Usage:
  python bench/clickhouse_import_profile.py FILE [--dir DIR] [--drop-view NAME ...]
                                            [--merges-on] [--settle]

Imports FILE (the events CSV) into a fresh embedded store in DIR (deleted first) in this
process, printing the wall and CPU time (every thread of the process, the engine's included)
and peak RSS after each statement the importer sends, then the whole import's.

- ``--drop-view NAME``: drop a materialized view first (``events_dims_url_mv``, ...), to see
  its share of the insert (the counts are then not PULSE's: a measurement only).
- ``--merges-on``: insert with the engine's background merges running, as before
  ``ChdbConn.bulk_command`` held them off.
- ``--settle``: after the import, close and open the store in a new process and report how
  long its background merges run (until ``system.merges`` has been empty for 3 s) and the CPU
  they take: the work an import leaves for whoever opens the store next.

docs/benchmarks.md ("Where it stands") has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW_MS = 1_795_953_600_000


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def settle(path: str) -> dict[str, Any]:
    """(in its own process) Open the store and wait for its merges to end."""
    from chdb import session

    t0, c0 = time.perf_counter(), _cpu()
    s = session.Session(path)
    quiet: float | None = None
    while True:
        n = int(str(s.query("SELECT count() FROM system.merges", "CSV")).strip())
        now = time.perf_counter()
        if n:
            quiet = None
        else:
            quiet = quiet or now
            if now - quiet > 3:
                break
        time.sleep(0.05)
    parts = str(s.query("SELECT table, count() FROM system.parts WHERE database = 'pulse' "
                        "AND active GROUP BY table ORDER BY table", "JSONCompact"))
    return {"merging_s": round(quiet - t0, 2), "cpu_s": round(_cpu() - c0, 2),
            "parts": dict(json.loads(parts)["data"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", type=Path)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/pulse-import-profile"))
    ap.add_argument("--drop-view", action="append", default=[])
    ap.add_argument("--merges-on", action="store_true")
    ap.add_argument("--settle", action="store_true")
    ap.add_argument("--settle-only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.settle_only:
        print(json.dumps(settle(args.settle_only)))
        return

    from pulse_tui.backend.clickhouse.connection import ChdbConn, release_embedded
    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.clock import Clock
    from pulse_tui.ingest import import_file

    if args.merges_on:
        ChdbConn.bulk_command = ChdbConn.command  # type: ignore[method-assign]
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    b = open_backends(args.dir / "p.db", f"chdb://{args.dir / 'ch'}")
    ch = b.events.ch  # type: ignore[attr-defined]
    for view in args.drop_view:
        ch.command(f"DROP VIEW `{ch.database}`.`{view}`")

    def timed(call: Any) -> Any:
        def run(sql: str, params: dict[str, Any] | None = None) -> Any:
            c, w = _cpu(), time.perf_counter()
            out = call(sql, params)
            short = re.sub(r"\s+", " ", sql)[:90]
            print(f"  {time.perf_counter() - w:7.2f} s  CPU {_cpu() - c:7.2f} s  "
                  f"peak RSS {_rss_mb():5d} MB  {short}", flush=True)
            return out
        return run

    ch.rows, ch.command, ch.bulk_command = (timed(ch.rows), timed(ch.command),
                                            timed(ch.bulk_command))
    c, w = _cpu(), time.perf_counter()
    r = import_file(b.events.conn, args.csv, kind="events", clock=Clock(NOW_MS),  # type: ignore[attr-defined]
                    events=b.events)
    print(f"import: {r.processed:,} imported, {r.duplicates:,} duplicates, {r.failed:,} rejected "
          f"in {time.perf_counter() - w:.2f} s, CPU {_cpu() - c:.2f} s, peak RSS {_rss_mb()} MB",
          flush=True)
    b.close()
    release_embedded()  # the engine lets go of the directory for the next process
    if args.settle:
        out = subprocess.run([sys.executable, __file__, str(args.csv), "--settle-only",
                              str(args.dir / "ch")], capture_output=True, text=True, check=True,
                             env={**os.environ})
        got = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"merges after it (a new process opening the store): {got['merging_s']} s, "
              f"CPU {got['cpu_s']} s; active parts then: {got['parts']}")


if __name__ == "__main__":
    main()
