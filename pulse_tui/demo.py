"""The demo database: 90 days of generated history, created on first use, then live traffic."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pulse_tui.clock import DAY_MS, Clock
from pulse_tui.simulate import Simulator, write_batch, write_sites, write_users
from pulse_tui.store import derived
from pulse_tui.store.connection import connect
from pulse_tui.store.events import insert_events
from pulse_tui.store.tx import write_transaction

log = logging.getLogger(__name__)

DEMO_DAYS = 90
DEMO_SEED = 7
DEMO_MARK = "demo_built_at"
FINAL_STEPS = 3  # rollups, sample files, example cohorts and rules

# progress(what is being done, steps done, steps in all)
Progress = Callable[[str, int, int], None]


def ensure_demo_database(path: Path, clock: Clock, *, days: int = DEMO_DAYS,
                         progress: Progress | None = None, events: Any = None) -> bool:
    """Create the demo database with ``days`` of history unless it exists. True when built.

    ``events``: an events backend that keeps the events elsewhere (ClickHouse, opened on
    ``path`` by the caller): the history, users and sample files go there, and the file at
    ``path`` keeps the control data (sites, cohorts, rules, jobs) as in every mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, bulk=True) if events is None else events.conn
    try:
        if derived.get_meta(conn, DEMO_MARK):
            return False
        build_history(conn, clock.now_ms(), days=days, progress=progress, events=events)
        return True
    finally:
        if events is None:
            conn.close()



def _teller(progress: Progress | None, steps: int) -> Callable[[str, int], None]:
    """``say(what, done)``: tell ``progress`` (when there is one) step ``done`` of ``steps``."""

    def say(what: str, done: int) -> None:
        if progress is not None:
            progress(what, done, steps)

    return say

def build_history(conn: sqlite3.Connection, now_ms: int, *, days: int, seed: int = DEMO_SEED,
                  progress: Progress | None = None, events: Any = None) -> int:
    """Write ``days`` of generated history (and today so far), then build every derived table
    in bulk: one insert transaction and one rebuild are much faster than folding day by day.
    ``progress`` hears what is being done, step by step. ``events``: a backend holding the
    events elsewhere (ClickHouse): they go there, and nothing derived is built in the file."""
    if events is not None:
        return _build_history_elsewhere(conn, events, now_ms, days=days, seed=seed,
                                        progress=progress)
    steps = days + FINAL_STEPS
    say = _teller(progress, steps)

    sim = Simulator(seed=seed)
    today = now_ms // DAY_MS
    total = 0
    with write_transaction(conn):
        write_sites(conn, sim, now_ms)
        for index, batch in enumerate(sim.history(today - days, today - 1)):
            say(f"generating day {index + 1} of {days} of history", index)
            total += insert_events(conn, batch, now_ms)
        # today up to now, so the charts show a partial current day
        total += insert_events(conn, [e for e in sim.day_events(today)
                                      if e.timestamp_ms <= now_ms], now_ms)
        write_users(conn, sim.users(), now_ms)
    say(f"building rollups of {total:,} events", days)  # one line at 80 columns
    derived.rebuild(conn, now_ms)
    say("importing samples, example cohorts", days + 1)
    seed_examples(conn, Clock(now_ms))
    say("done", steps)
    with write_transaction(conn):
        derived.set_meta(conn, DEMO_MARK, now_ms)
    log.info("demo database built: %d events, %d users", total, len(sim.users()))
    return total


def _build_history_elsewhere(conn: sqlite3.Connection, events: Any, now_ms: int, *, days: int,
                             seed: int, progress: Progress | None) -> int:
    """build_history for an events backend outside the file (ClickHouse): a day per insert
    (each one skips ids already stored, so a build interrupted and run again ends the same);
    the sites, the sample imports' jobs, cohorts and rules go into the file."""
    steps = days + FINAL_STEPS
    say = _teller(progress, steps)

    sim = Simulator(seed=seed)
    today = now_ms // DAY_MS
    with write_transaction(conn):
        write_sites(conn, sim, now_ms)
    total = 0
    for index, batch in enumerate(sim.history(today - days, today - 1)):
        say(f"generating day {index + 1} of {days} of history", index)
        total += events.write_events(batch, now_ms)
    total += events.write_events([e for e in sim.day_events(today)
                                  if e.timestamp_ms <= now_ms], now_ms)
    users = sim.users()
    events.write_new_users([(u.user_id, u.site_id, u.name, u.email, u.company, u.plan,
                              u.first_day * DAY_MS, now_ms) for u in users])
    say(f"stored {total:,} events", days)  # nothing to roll up: ClickHouse reads the events
    say("importing samples, example cohorts", days + 1)
    seed_examples(conn, Clock(now_ms), events=events)
    say("done", steps)
    with write_transaction(conn):
        derived.set_meta(conn, DEMO_MARK, now_ms)
    log.info("demo built in the events store: %d events, %d users", total, len(users))
    return total


def sample_data_dir() -> Path | None:
    """sample_data/: inside the installed package, or at the repository root in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sample_data", here.parent / "sample_data"):
        if (candidate / "events.csv").is_file():
            return candidate
    return None


def seed_examples(conn: sqlite3.Connection, clock: Clock, *, events: Any = None) -> None:
    """What a newcomer should find in every pane: the sample_data files imported through the
    importer (their bad rows rejected, as in real life), example cohorts and alert rules.
    ``events``: the backend holding the events when not the file (ClickHouse)."""
    from pulse_tui.ingest import import_file
    from pulse_tui.store import alerts, cohorts

    samples = sample_data_dir()
    if samples is not None:
        cohorts.create_cohort(conn, clock, site_id="acme-web", name="Beta testers",
                              kind="static", cohort_id="beta-testers",
                              description="imported from sample_data/cohort_members.csv",
                              events=events)
        for kind in ("events", "users", "cohort_members"):
            result = import_file(conn, samples / f"{kind}.csv", kind=kind, clock=clock,
                                 events=events)
            log.info("demo: imported sample_data/%s.csv: %s", kind, result.status)
    cohorts.create_cohort(
        conn, clock, site_id="acme-app", name="Signed up in North America", events=events,
        criteria={"type": "and", "conditions": [
            {"property": "event_type", "operator": "equals", "value": "signup"},
            {"property": "country", "operator": "in", "value": ["US", "CA"]}]})
    cohorts.create_cohort(
        conn, clock, site_id="acme-app", name="Paying, active this week", events=events,
        criteria={"type": "and", "conditions": [
            {"type": "or", "conditions": [
                {"property": "plan", "operator": "equals", "value": "pro"},
                {"property": "plan", "operator": "equals", "value": "enterprise"}]},
            {"property": "last_seen_days_ago", "operator": "lte", "value": 7}]})
    now = clock.now_ms()
    alerts.create_rule(conn, site_id="acme-web", name="Traffic spike",
                       condition={"metric": "events", "window_minutes": 15,
                                  "comparison": "change_pct_gt", "threshold": 50},
                       now_ms=now)
    alerts.create_rule(conn, site_id="acme-app", name="No signups for an hour",
                       condition={"metric": "events", "window_minutes": 60, "comparison": "lt",
                                  "threshold": 1,
                                  "filter": {"type": "and", "conditions": [
                                      {"property": "event_type", "operator": "equals",
                                       "value": "signup"}]}},
                       now_ms=now)


class DemoTraffic:
    """Simulated live traffic for the demo: a background thread writing a few events a second."""

    def __init__(self, db: Path, *, rate: float = 12.0, seed: int | None = None,
                 events_store: str = "sqlite", cluster: str | None = None) -> None:
        import threading
        import time

        self.db = db
        self.events_store = events_store  # the traffic goes where the demo's events live
        self.cluster = cluster
        self.rate = rate
        # a new seed every start: event ids come from the seed, so a fixed one would repeat
        # the previous run's ids, and every "new" event would be dropped as a duplicate
        self.seed = seed if seed is not None else time.time_ns() % (1 << 40)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import math
        import random
        import time

        sim = Simulator(seed=self.seed)
        rng = random.Random(self.seed)
        try:
            if self.events_store == "sqlite":
                conn = connect(self.db)
                target: Any = conn
                close = conn.close
            else:
                from pulse_tui.backend.wiring import open_backends

                target = open_backends(self.db, self.events_store, cluster=self.cluster)
                close = target.close
        except Exception:  # noqa: BLE001 - the demo goes on without live traffic
            log.exception("demo traffic could not open the database")
            return
        try:
            tick = 0.25
            carry = 0.0
            while not self._stop.wait(tick):
                now_ms = int(time.time() * 1000)
                wave = 1.0 + 0.5 * math.sin(now_ms / 20_000)
                carry += self.rate * tick * wave * rng.uniform(0.4, 1.6)
                count = int(carry)
                carry -= count
                if count:
                    try:
                        write_batch(target, sim.live(now_ms, count), now_ms)
                    except sqlite3.OperationalError:
                        log.warning("demo traffic: database busy, retrying")
        finally:
            close()
