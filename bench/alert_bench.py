"""Alert benchmark: 100 rules evaluated on a large database, and 30-day backtests.

Builds (once, cached) bench/.cache/alerts-<N>.db: N simulated events over 90 days written with
Simulator + write_batch (so sessions and rollup_hourly are kept), then creates 100 rules over
3 sites (events/users/sessions, windows 5 min .. 4 h, plain and change_pct comparisons, a third
with filters) and times ``evaluate_all`` (every rule once, state writes included) and
``backtest``. When the reports benchmark's raw database bench/.cache/events-10000000-365d.db
exists, the 100 rule values are also computed on it read-only (10M events).

    python bench/alert_bench.py [--events 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sqlite3
import statistics
import time
from datetime import date
from pathlib import Path

from pulse_tui.alerts import engine
from pulse_tui.alerts.conditions import parse_condition
from pulse_tui.clock import DAY_MS, HOUR_MS, Clock, day_start_ms
from pulse_tui.simulate import Simulator, write_batch, write_sites
from pulse_tui.store import alerts as rules
from pulse_tui.store.connection import connect

CACHE = Path(__file__).resolve().parent / ".cache"
END = date(2026, 11, 25)
NOW = day_start_ms(END) + 15 * HOUR_MS   # afternoon of the last simulated day
DAYS = 90
EVENTS_PER_90_DAYS = 170_000            # measured: Simulator(sites=3), scale 1.0, 90 days
BIG = CACHE / "events-10000000-365d.db"  # built by bench/query_bench.py, if present


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(path: Path, target: int) -> None:
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    sim = Simulator(seed=7, sites=3)
    conn = connect(tmp, bulk=True)
    conn.execute("BEGIN IMMEDIATE")
    write_sites(conn, sim, NOW)
    conn.execute("COMMIT")
    end_day = day_start_ms(END) // DAY_MS
    scale = target / EVENTS_PER_90_DAYS
    total, start = 0, time.monotonic()
    for i, batch in enumerate(sim.history(end_day - DAYS + 1, end_day, scale=scale)):
        total += write_batch(conn, batch, NOW)
        if i % 15 == 14:
            log(f"build: day {i + 1}/{DAYS}, {total:,} events")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    os.replace(tmp, path)
    log(f"build: {total:,} events in {time.monotonic() - start:.0f}s -> {path}")


def rule_conditions(n: int, seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    filters = [
        {"type": "and", "conditions": [{"property": "event_type", "operator": "equals",
                                        "value": "purchase"}]},
        {"type": "or", "conditions": [{"property": "country", "operator": "in",
                                       "value": ["US", "GB", "DE"]},
                                      {"property": "device_type", "operator": "equals",
                                       "value": "tablet"}]},
        {"type": "and", "conditions": [{"property": "url", "operator": "contains",
                                        "value": "/pricing"},
                                       {"property": "referrer", "operator": "is_set"}]},
    ]
    out = []
    for i in range(n):
        comparison = rng.choice(["gt", "gte", "lt", "lte", "change_pct_gt", "change_pct_lt"])
        cond: dict[str, object] = {
            "metric": rng.choice(["events", "events", "users", "sessions"]),
            "window_minutes": rng.choice([5, 15, 60, 60, 240]),
            "comparison": comparison,
            "threshold": rng.choice([20, 50, 100]),
        }
        if i % 3 == 0:
            cond["filter"] = filters[i % len(filters)]
        out.append(cond)
    return out


def timed(fn, runs: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    logging.getLogger("pulse_tui").setLevel(logging.ERROR)  # 100 rules changing state is noisy
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"alerts-{args.events}.db"
    if not path.exists():
        build(path, args.events)
    conn = connect(path)
    total = conn.execute("SELECT max(rowid) FROM events").fetchone()[0]
    sites = [r[0] for r in conn.execute("SELECT id FROM sites ORDER BY id")]
    conn.execute("DELETE FROM alert_history")
    conn.execute("DELETE FROM alert_rules")
    conds = rule_conditions(args.rules)
    for i, cond in enumerate(conds):
        rules.create_rule(conn, site_id=sites[i % len(sites)], name=f"bench {i:03d}",
                          condition=cond, notification_type="log", now_ms=NOW)
    log(f"{len(conds)} rules on {total:,} events ({path.name})")

    minute = iter(range(10_000))
    took, outcome = timed(lambda: engine.evaluate_all(conn, Clock(NOW + next(minute) * 60_000)),
                          args.runs)
    log(f"evaluate_all, {len(conds)} rules: median {took * 1000:.0f} ms  ({outcome})")
    plain = [c for c in conds if "filter" not in c]
    took_v, _ = timed(lambda: [engine.compute_value(conn, sites[0], parse_condition(c), NOW)
                               for c in plain], args.runs)
    log(f"values only, {len(plain)} unfiltered rules: median {took_v * 1000:.0f} ms")

    bt_events = {"metric": "events", "window_minutes": 60, "comparison": "gt",
                 "threshold": 400}
    bt_users = {"metric": "users", "window_minutes": 60, "comparison": "gt", "threshold": 60}
    bt_filtered = {**bt_events, "filter": conds[0]["filter"], "threshold": 5}
    for label, cond in (("events (rollup_hourly)", bt_events),
                        ("users (raw events)", bt_users),
                        ("filtered events (raw events)", bt_filtered)):
        took_b, res = timed(lambda c=cond: engine.backtest(conn, c, sites[0], Clock(NOW)),
                            max(1, args.runs // 2))
        log(f"backtest 30 d, {label}: median {took_b * 1000:.0f} ms  ({res.summary()})")
    conn.close()

    if BIG.exists():
        big = sqlite3.connect(f"{BIG.resolve().as_uri()}?mode=ro", uri=True)
        big_sites = [r[0] for r in big.execute("SELECT id FROM sites ORDER BY id")]
        n = big.execute("SELECT max(rowid) FROM events").fetchone()[0]
        parsed = [parse_condition(c) for c in conds]
        took_big, _ = timed(lambda: [engine.compute_value(big, big_sites[i % len(big_sites)],
                                                          c, NOW)
                                     for i, c in enumerate(parsed)], args.runs)
        log(f"values only, {len(parsed)} rules on {n:,} events ({BIG.name}, read-only): "
            f"median {took_big * 1000:.0f} ms")
        big.close()


if __name__ == "__main__":
    main()
