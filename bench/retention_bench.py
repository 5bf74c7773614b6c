"""Retention benchmark: both grids (acquisition weeks, saved cohorts) and the snapshot job.

Builds a simulated 1M-event database once (bench/.cache/retention-1000000.db: raw events,
then every derived table rebuilt), adds saved cohorts whose members joined at their first event
(as criteria cohorts do), and times the grids. With --events 10000000 it uses the reports
engineer's cached bench/.cache/pulse-10000000-365d.db if it exists (never builds 10M): saved
cohorts are added inside a transaction that is rolled back, so that file is left unchanged.

    nice -n 19 python bench/retention_bench.py [--events 1000000|10000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import timed  # noqa: E402  (bench/timing.py, beside this script)

from pulse_tui.clock import DAY_MS, Clock, day_start_ms  # noqa: E402
from pulse_tui.simulate import Simulator, write_sites  # noqa: E402
from pulse_tui.store import cohorts as cohort_store  # noqa: E402
from pulse_tui.store import derived, retention  # noqa: E402
from pulse_tui.store.connection import connect  # noqa: E402
from pulse_tui.store.events import insert_events  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
END = date(2026, 11, 25)
NOW = day_start_ms(END) + 12 * 3_600_000
EVENTS_PER_SCALE_YEAR = 1_430_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(path: Path, target: int, days: int = 365, seed: int = 11) -> None:
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    sim = Simulator(seed=seed, sites=3)
    conn = connect(tmp, bulk=True)
    end_day = day_start_ms(END) // DAY_MS
    conn.execute("BEGIN IMMEDIATE")
    write_sites(conn, sim, NOW)
    conn.execute("COMMIT")
    total = 0
    scale = target / EVENTS_PER_SCALE_YEAR * (365 / days)
    for batch in sim.history(end_day - days + 1, end_day, scale=scale):
        conn.execute("BEGIN IMMEDIATE")
        total += insert_events(conn, batch, NOW)
        conn.execute("COMMIT")
    t = time.monotonic()
    derived.rebuild(conn, NOW)
    log(f"build: {total:,} events, derived in {time.monotonic() - t:.0f}s")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    os.replace(tmp, path)


def add_cohorts(conn, site: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Saved cohorts (inside the caller's transaction): members joined at their first event."""
    cohorts = {
        "all users": "1",
        "first seen in the last 90 days": f"first_seen_ms >= {NOW - 90 * DAY_MS}",
        "first seen 100..60 days ago, noon-ish": (
            f"first_seen_ms BETWEEN {NOW - 100 * DAY_MS} AND {NOW - 60 * DAY_MS}"),
    }
    sizes = {}
    for n, (name, where) in enumerate(cohorts.items()):
        cid = f"bench-{n}"
        conn.execute("INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, "
                     "updated_at, kind) VALUES (?, ?, ?, ?, ?, ?, 'static')",
                     (cid, site, name, cohort_store.STATIC_CRITERIA, NOW, NOW))
        conn.execute(
            "INSERT INTO cohort_members (member_id, cohort_id, user_id, joined_at, last_seen_at,"
            " is_active) SELECT ? || user_id, ?, user_id, first_seen_ms, last_seen_ms, 1 "
            f"FROM user_first_seen WHERE site_id = ? AND {where}", (cid, cid, site))
        sizes[name] = conn.execute("SELECT count(*) FROM cohort_members WHERE cohort_id = ?",
                                   (cid,)).fetchone()[0]
    return sizes



def run(path: Path, *, snapshots: bool) -> list[tuple[str, float]]:
    conn = connect(path)
    n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    site = conn.execute("SELECT site_id FROM rollup_daily GROUP BY site_id "
                        "ORDER BY sum(events) DESC LIMIT 1").fetchone()[0]
    log(f"{n:,} events in {path.name}; site {site}")
    out: list[tuple[str, float]] = []
    for span in (30, 90):
        start = END - timedelta(days=span - 1)
        ms = timed(lambda s=start: retention.acquisition_rows(conn, site, s, END, NOW))
        out.append((f"acquisition grid, {span}-day range", ms))
    conn.execute("BEGIN IMMEDIATE")
    try:
        sizes = add_cohorts(conn, site)
        log(f"saved cohorts: {sizes}")
        ms = timed(lambda: retention.saved_cohort_rows(conn, NOW, site_id=site))
        out.append((f"saved-cohort grid, {len(sizes)} cohorts "
                    f"({', '.join(f'{v:,}' for v in sizes.values())} members)", ms))
        small = "bench-2"
        ms = timed(lambda: retention.saved_cohort_rows(conn, NOW, cohort_ids=[small]))
        out.append((f"saved-cohort row, one cohort of {sizes[list(sizes)[2]]:,} members", ms))
        row = retention.acquisition_rows(conn, site, END - timedelta(days=29), END, NOW)[0]
        ms = timed(lambda: retention.cell_users(conn, row, 1, NOW))
        out.append(("cell drill-down (user ids of one acquisition cell)", ms))
        if snapshots:
            ms = timed(lambda: retention.snapshot_all(conn, Clock(NOW)), repeat=1)
            out.append(("snapshot_all (every cohort + 26 acquisition weeks per site)", ms))
            ms = timed(lambda: retention.load_grid(conn, site, END - timedelta(days=89), END))
            out.append(("load_grid from snapshots, 90-day range", ms))
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.events >= 10_000_000:
        path = CACHE / f"pulse-{args.events}-365d.db"
        if not path.exists():
            log(f"{path} does not exist (built by bench/query_bench.py); not building 10M here")
            return 1
        snapshots = False
    else:
        path = CACHE / f"retention-{args.events}.db"
        if not path.exists():
            build(path, args.events)
        snapshots = True
    for label, ms in run(path, snapshots=snapshots):
        print(f"| {label} | {ms:,.0f} ms |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
