"""The demo database: 90 days of generated history, created on first use, then live traffic."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from pulse_tui.clock import DAY_MS, Clock
from pulse_tui.simulate import Simulator, write_batch, write_sites, write_users
from pulse_tui.store import derived
from pulse_tui.store.connection import connect

log = logging.getLogger(__name__)

DEMO_DAYS = 90
DEMO_SEED = 7
DEMO_MARK = "demo_built_at"


def ensure_demo_database(path: Path, clock: Clock, *, days: int = DEMO_DAYS) -> bool:
    """Create the demo database with ``days`` of history unless it exists. True when built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, bulk=True)
    try:
        if derived.get_meta(conn, DEMO_MARK):
            return False
        build_history(conn, clock.now_ms(), days=days)
        return True
    finally:
        conn.close()


def build_history(conn: sqlite3.Connection, now_ms: int, *, days: int, seed: int = DEMO_SEED
                  ) -> int:
    sim = Simulator(seed=seed)
    today = now_ms // DAY_MS
    total = 0
    conn.execute("BEGIN IMMEDIATE")
    write_sites(conn, sim, now_ms)
    conn.execute("COMMIT")
    for batch in sim.history(today - days, today - 1):
        total += write_batch(conn, batch, now_ms)
    # today up to now, so the charts show a partial current day
    today_events = [e for e in sim.day_events(today) if e.timestamp_ms <= now_ms]
    total += write_batch(conn, today_events, now_ms)
    conn.execute("BEGIN IMMEDIATE")
    write_users(conn, sim.users(), now_ms)
    derived.set_meta(conn, DEMO_MARK, now_ms)
    conn.execute("COMMIT")
    log.info("demo database built: %d events, %d users", total, len(sim.users()))
    return total
