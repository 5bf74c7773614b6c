"""Cohort benchmark: criteria evaluation, preview and membership refresh on a large database.

    nice -n 19 python bench/cohort_bench.py                  # 1M events (built and cached)
    nice -n 19 python bench/cohort_bench.py --db FILE        # any PULSE file, e.g. the 10M one

The 1M database (bench/.cache/cohorts-1000000.db) is simulated traffic over 90 days on 3 sites
with a ``users`` row (plan, company, email, name) for every simulated user, and user_first_seen
filled (the derived table the compiler reads). With ``--db`` the file is copied first (refresh
writes cohort_members) unless ``--in-place``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import timed  # noqa: E402  (bench/timing.py, beside this script)

from pulse_tui.clock import DAY_MS, Clock, day_start_ms  # noqa: E402
from pulse_tui.cohorts import parse  # noqa: E402
from pulse_tui.simulate import Simulator, write_sites, write_users  # noqa: E402
from pulse_tui.store import cohorts as store  # noqa: E402
from pulse_tui.store import derived  # noqa: E402
from pulse_tui.store.connection import connect  # noqa: E402
from pulse_tui.store.events import insert_events  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
END = date(2026, 11, 25)
NOW_MS = day_start_ms(END) + 12 * 3_600_000

CASES: dict[str, dict[str, object]] = {
    "country = US": {"type": "and", "conditions": [
        {"property": "country", "operator": "equals", "value": "US"}]},
    "country in (US, CA) and plan = pro": {"type": "and", "conditions": [
        {"property": "country", "operator": "in", "value": ["US", "CA"]},
        {"property": "plan", "operator": "equals", "value": "pro"}]},
    "event_count >= 10 and last_seen_days_ago <= 7": {"type": "and", "conditions": [
        {"property": "event_count", "operator": "gte", "value": 10},
        {"property": "last_seen_days_ago", "operator": "lte", "value": 7}]},
    "url not_contains /pricing": {"type": "and", "conditions": [
        {"property": "url", "operator": "not_contains", "value": "/pricing"}]},
    "nested 3 deep (6 conditions)": {"type": "or", "conditions": [
        {"type": "and", "conditions": [
            {"property": "event_type", "operator": "equals", "value": "purchase"},
            {"type": "or", "conditions": [
                {"property": "device_type", "operator": "equals", "value": "mobile"},
                {"property": "company", "operator": "starts_with", "value": "Ac"}]}]},
        {"type": "and", "conditions": [
            {"property": "referrer", "operator": "contains", "value": "news.ycombinator"},
            {"property": "first_seen_days_ago", "operator": "lt", "value": 30},
            {"property": "email", "operator": "is_set"}]}]},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(path: Path, target: int, days: int = 90) -> None:
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    sim = Simulator(seed=11, sites=3)
    scale = target / 700_000 * (365 / days)  # measured: scale 1.0 for 90 days gives ~175k
    conn = connect(tmp, bulk=True)
    end_day = day_start_ms(END) // DAY_MS
    conn.execute("BEGIN IMMEDIATE")
    write_sites(conn, sim, NOW_MS)
    conn.execute("COMMIT")
    total = 0
    for batch in sim.history(end_day - days + 1, end_day, scale=scale):
        conn.execute("BEGIN IMMEDIATE")
        total += insert_events(conn, batch, NOW_MS)
        conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    write_users(conn, sim.users(), NOW_MS)
    # only the derived table cohorts read; rollups are not needed here
    conn.execute("INSERT INTO user_first_seen (site_id, user_id, first_seen_ms, last_seen_ms) "
                 "SELECT site_id, user_id, min(timestamp_ms), max(timestamp_ms) FROM events "
                 "WHERE user_id IS NOT NULL GROUP BY site_id, user_id")
    derived.set_meta(conn, derived.HWM_KEY,
                     conn.execute("SELECT max(rowid) FROM events").fetchone()[0])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    os.replace(tmp, path)
    log(f"built {total:,} events, {len(sim.users()):,} users -> {path}")



def run(path: Path) -> None:
    conn = connect(path)
    conn.execute("PRAGMA cache_size = -262144")
    for stmt in ("CREATE INDEX IF NOT EXISTS idx_cohort_members_cohort_user "
                 "ON cohort_members(cohort_id, user_id, is_active)",
                 "CREATE INDEX IF NOT EXISTS idx_events_site_user "
                 "ON events(site_id, user_id, event_type, country, device_type)"):
        t = time.perf_counter()
        conn.execute(stmt)  # files built before these indexes were added to the schema
        if time.perf_counter() - t > 1:
            log(f"created a missing index in {time.perf_counter() - t:.0f}s: {stmt[27:60]}")
    if not conn.execute("SELECT 1 FROM user_first_seen LIMIT 1").fetchone():
        # a raw events file (e.g. the reports benchmark's cache): fill the one derived table
        # the compiler reads, as derived.catch_up would have
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO user_first_seen (site_id, user_id, first_seen_ms, "
                     "last_seen_ms) SELECT site_id, user_id, min(timestamp_ms), "
                     "max(timestamp_ms) FROM events WHERE user_id IS NOT NULL "
                     "GROUP BY site_id, user_id")
        derived.set_meta(conn, derived.HWM_KEY,
                         conn.execute("SELECT max(rowid) FROM events").fetchone()[0])
        conn.execute("COMMIT")
        log(f"filled user_first_seen in {time.perf_counter() - t:.0f}s")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so no timed commit pays for the above
    clock = Clock(NOW_MS)
    n_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    sites = conn.execute("SELECT site_id, count(*) FROM user_first_seen GROUP BY 1 "
                         "ORDER BY 2 DESC").fetchall()
    site, n_users = sites[0]
    site_events = conn.execute("SELECT count(*) FROM events WHERE site_id = ?",
                               (site,)).fetchone()[0]
    log(f"{n_events:,} events; site {site}: {site_events:,} events, {n_users:,} users")
    print(f"\n{n_events:,} events in total; site `{site}`: {site_events:,} events, "
          f"{n_users:,} users with events\n")
    print("| criteria | members | evaluate (ms) | preview (ms) | first refresh (ms) "
          "| refresh, nothing changed (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    ids = []
    for label, crit in CASES.items():
        group = parse(crit)
        matched = len(store.evaluate(conn, site, group, NOW_MS))
        ev = timed(lambda g=group: store.evaluate(conn, site, g, NOW_MS))
        pv = timed(lambda c=crit: store.preview(conn, clock, site, c))
        t = time.perf_counter()
        c = store.create_cohort(conn, clock, site_id=site, name=f"bench {label}",
                                criteria=crit, refresh=False)
        store.refresh_cohort(conn, clock, c.cohort_id)
        first = (time.perf_counter() - t) * 1000
        ids.append(c.cohort_id)
        again = timed(lambda cid=c.cohort_id: store.refresh_cohort(conn, clock, cid))
        print(f"| {label} | {matched:,} | {ev:.0f} | {pv:.0f} | {first:.0f} | {again:.0f} |")
    t = time.perf_counter()
    results = store.refresh_all(conn, clock)
    full = (time.perf_counter() - t) * 1000
    print(f"\nrefresh_all over {len(results)} criteria cohorts (nothing changed): {full:.0f} ms")
    t = time.perf_counter()
    outcome = store.refresh_changed(conn, clock)
    print(f"refresh_changed with nothing to do: {(time.perf_counter() - t) * 1000:.1f} ms "
          f"({outcome})")
    for cid in ids:
        store.delete_cohort(conn, cid)
    conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, help="benchmark this PULSE file instead (copied)")
    ap.add_argument("--in-place", action="store_true", help="with --db: do not copy")
    args = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.db:
        path = args.db
        if not args.in_place:
            path = CACHE / f"cohort-bench-copy-{args.db.name}"
            log(f"copying {args.db} -> {path}")
            shutil.copyfile(args.db, path)
    else:
        path = CACHE / f"cohorts-{args.events}.db"
        if not path.exists():
            build(path, args.events)
    try:
        run(path)
    finally:
        if args.db and not args.in_place:
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                p.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
