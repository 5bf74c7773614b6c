"""Conformance of every events-interface implementation to a plain reference over raw events.

Parametrised by implementation: ``IMPLEMENTATIONS`` maps a name to how to open it and how its
three writers store events (the importer, the simulator, and another connection writing rows
behind PULSE's back): "sqlite", "chdb" (embedded ClickHouse, one directory per test process and a
fresh database per test, see chdb_support.py) and "clickhouse-server" (the server named by
PULSE_TEST_CLICKHOUSE_URL; skipped, visibly, when it is not set), all held to the same checks.
Every expected value is computed in plain Python from the events the writers were given, never
from PULSE's own queries.
"""

from __future__ import annotations

import csv
import random
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from pulse_tui.alerts import engine
from pulse_tui.backend.interface import Backends, ControlStore, EventsBackend, LiveCursor
from pulse_tui.clock import DAY_MS, HOUR_MS, Clock
from pulse_tui.config import Settings
from pulse_tui.models import ACQUISITION, Checkpoint, NewEvent
from pulse_tui.report_models import DateRange
from tests.reference import ref_funnel, ref_ranked

NOW = 1_795_953_600_000 + 12 * HOUR_MS  # 2026-11-29 12:00 UTC, a Sunday
CLOCK = Clock(NOW)
TODAY = date(2026, 11, 29)
SITES = ("s1", "s2")
TYPES = ("view", "click", "signup", "buy")
COUNTRIES = ("US", "DE", "JP", None)
URLS = ("/", "/pricing", "/docs", None)
USERS = tuple(f"u{i}" for i in range(60))
US_ONLY = {"type": "and", "conditions": [
    {"property": "country", "operator": "equals", "value": "US"}]}


# ---------------------------------------------------------------- the implementations
@dataclass
class Implementation:
    """How to open one implementation and write events the three ways PULSE meets them."""

    open: Callable[[Path], Backends]
    import_csv: Callable[[Backends, Path, Path], None]  # (backends, db path, csv file)
    simulate: Callable[[Backends, Path, list[NewEvent]], None]
    foreign_insert: Callable[..., None]  # (backends, db path, events, *, register=True)


def _sqlite_conn(b: Backends) -> sqlite3.Connection:
    return b.events.conn  # type: ignore[attr-defined]


def _sqlite_import(b: Backends, db: Path, path: Path) -> None:
    from pulse_tui.ingest import import_file

    result = import_file(_sqlite_conn(b), path, kind="events", clock=CLOCK)
    assert result.status == "completed" and result.failed == 0, result.message


def _sqlite_simulate(b: Backends, db: Path, events: list[NewEvent]) -> None:
    from pulse_tui.simulate import write_batch

    write_batch(_sqlite_conn(b), events, NOW)


def _sqlite_foreign(b: Backends, db: Path, events: list[NewEvent], *,
                    register: bool = True) -> None:
    other = sqlite3.connect(db)  # another program: plain sqlite3, no PULSE code
    try:
        with other:
            if register:  # the sites table too (ClickHouse has none: nothing to register)
                other.executemany("INSERT OR IGNORE INTO sites (id, created_at) VALUES (?, ?)",
                                  [(e.site_id, NOW) for e in events])
            other.executemany(
                "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
                "user_id, url, referrer, country, device_type, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(e.event_id, e.site_id, e.event_type, e.timestamp_ms, e.session_id, e.user_id,
                  e.url, e.referrer, e.country, e.device_type, NOW) for e in events])
    finally:
        other.close()


def _open_sqlite(db: Path) -> Backends:
    from pulse_tui.backend.wiring import open_backends

    return open_backends(db, "sqlite")


def _ch_import(b: Backends, db: Path, path: Path) -> None:
    from pulse_tui.ingest import import_file

    result = import_file(_sqlite_conn(b), path, kind="events", clock=CLOCK, events=b.events)
    assert result.status == "completed" and result.failed == 0, result.message


def _ch_simulate(b: Backends, db: Path, events: list[NewEvent]) -> None:
    b.events.insert_events(events, NOW)  # type: ignore[attr-defined]


def _ch_foreign(b: Backends, db: Path, events: list[NewEvent], *,
                register: bool = True) -> None:
    # another program: a plain INSERT of the seed's columns (ingest_seq from its DEFAULT)
    ch = b.events.ch  # type: ignore[attr-defined]
    cols = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id", "url",
            "referrer", "country", "device_type")
    arrays = ", ".join(f"{{{c}:Array(Nullable(String))}}" if c != "timestamp_ms"
                       else f"{{{c}:Array(Int64)}}" for c in cols)
    ch.command(
        f"INSERT INTO `{ch.database}`.events ({', '.join(cols)}, created_at) "
        f"SELECT t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9, t.10, {NOW} "
        f"FROM (SELECT arrayJoin(arrayZip({arrays})) AS t)",
        {c: [getattr(e, c) for e in events] for c in cols})


def _open_chdb(db: Path) -> Backends:
    from pulse_tui.backend.wiring import open_backends
    from tests.backend.chdb_support import fresh_chdb_url

    return open_backends(db, fresh_chdb_url())


def _open_server(db: Path) -> Backends:
    import os
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    from pulse_tui.backend.wiring import open_backends

    url = os.environ.get("PULSE_TEST_CLICKHOUSE_URL", "")
    if not url:
        pytest.skip("PULSE_TEST_CLICKHOUSE_URL is not set: no ClickHouse server to test against")
    parts = urlsplit(url)  # a fresh database per test on that server
    return open_backends(db, urlunsplit(parts._replace(path=f"/t{uuid.uuid4().hex[:12]}")))


IMPLEMENTATIONS: dict[str, Implementation] = {
    "sqlite": Implementation(_open_sqlite, _sqlite_import, _sqlite_simulate, _sqlite_foreign),
    "chdb": Implementation(_open_chdb, _ch_import, _ch_simulate, _ch_foreign),
    "clickhouse-server": Implementation(_open_server, _ch_import, _ch_simulate, _ch_foreign),
}


# ---------------------------------------------------------------- the data
def _events(rng: random.Random, prefix: str, n: int, days: int = 40) -> list[NewEvent]:
    out = []
    for i in range(n):
        ts = NOW - rng.randrange(1, days * DAY_MS)
        user = rng.choice((*USERS, None))
        site = rng.choice(SITES)  # a session id belongs to one site (SQLite's sessions key)
        out.append(NewEvent(
            event_id=f"{prefix}{i:04d}", site_id=site, event_type=rng.choice(TYPES),
            timestamp_ms=ts, session_id=f"{user or 'anon'}-{site}-{ts // (6 * HOUR_MS)}",
            user_id=user, url=rng.choice(URLS), referrer=None, country=rng.choice(COUNTRIES),
            device_type=rng.choice(("desktop", "mobile"))))
    return out


def _write_csv(path: Path, events: list[NewEvent]) -> None:
    cols = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id", "url",
            "referrer", "country", "device_type")
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for e in events:
            w.writerow(["" if getattr(e, c) is None else getattr(e, c) for c in cols])


@dataclass
class World:
    b: Backends
    impl: Implementation
    db: Path
    events: list[NewEvent]  # every event stored, in arrival order

    @property
    def ev(self) -> EventsBackend:
        return self.b.events

    @property
    def control(self) -> ControlStore:
        return self.b.control

    def of(self, site: str, lo: int = 0, hi: int = 1 << 62) -> list[NewEvent]:
        return [e for e in self.events if e.site_id == site and lo <= e.timestamp_ms < hi]


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    impl = IMPLEMENTATIONS[request.param]
    db = tmp_path / "pulse.db"
    b = impl.open(db)
    rng = random.Random(12)
    imported, simulated, foreign = (_events(rng, "imp", 300), _events(rng, "sim", 200),
                                    _events(rng, "for", 120))
    # the newest arrival is recent, so cleanup's "never the last row" rule changes nothing here
    foreign.append(NewEvent("for-last", "s1", "view", NOW - HOUR_MS, "u1-x", "u1", "/", None,
                            "US", "desktop"))
    path = tmp_path / "events.csv"
    _write_csv(path, imported)
    impl.import_csv(b, db, path)
    impl.simulate(b, db, simulated)
    impl.foreign_insert(b, db, foreign)
    b.events.catch_up(NOW)  # fold what the other program wrote
    yield World(b, impl, db, [*imported, *simulated, *foreign])
    b.close()


# ---------------------------------------------------------------- references
def ref_totals(evs: list[NewEvent]) -> tuple[int, int, int]:
    return (len(evs), len({e.user_id for e in evs if e.user_id}),
            len({e.session_id for e in evs}))


def in_range(w: World, site: str, rng: DateRange) -> list[NewEvent]:
    return w.of(site, rng.start_ms, rng.end_ms + 1)


PAST = DateRange(TODAY - timedelta(days=20), TODAY - timedelta(days=1))


# ---------------------------------------------------------------- the checks
def test_the_implementation_has_every_method_of_both_interfaces(world: World) -> None:
    assert isinstance(world.ev, EventsBackend)
    assert isinstance(world.control, ControlStore)


def test_sites(world: World) -> None:
    assert [s.id for s in world.ev.sites()] == sorted({e.site_id for e in world.events})


def test_a_site_seen_only_in_rows_another_program_wrote_counts(world: World) -> None:
    world.impl.foreign_insert(world.b, world.db, [
        NewEvent("late-s9", "s9", "view", NOW - 500, "u4-z", "u4", "/", None, "JP", "desktop")],
        register=False)
    assert [s.id for s in world.ev.sites()] == [*SITES, "s9"]


def test_live_tail_in_arrival_order_with_an_opaque_cursor(world: World) -> None:
    page = world.ev.tail(limit=10_000)
    assert [e.event_id for e in page.events] == [e.event_id for e in reversed(world.events)]
    assert isinstance(page.cursor, LiveCursor)
    assert world.ev.tail(after=page.cursor, limit=10_000).events == []
    one_site = world.ev.tail(site_id="s2", limit=5)
    assert [e.event_id for e in one_site.events] == [
        e.event_id for e in reversed(world.events) if e.site_id == "s2"][:5]
    new = [NewEvent("late-1", "s2", "click", NOW - 1000, "u3-y", "u3", "/", None, "DE", "mobile")]
    world.impl.foreign_insert(world.b, world.db, new)
    after = world.ev.tail(after=page.cursor, limit=10_000)
    assert [e.event_id for e in after.events] == ["late-1"]
    assert world.ev.tail(after=after.cursor, limit=10_000).events == []


def test_change_token_moves_only_when_another_writer_commits(world: World) -> None:
    first = world.ev.change_token()
    assert world.ev.change_token() == first
    world.ev.daily("s1", PAST)  # reads change nothing
    assert world.ev.change_token() == first
    world.impl.foreign_insert(world.b, world.db, [
        NewEvent("late-2", "s1", "view", NOW - 500, "u4-z", "u4", "/", None, "JP", "desktop")])
    assert world.ev.change_token() != first


@pytest.mark.parametrize("site", SITES)
def test_range_totals_and_the_previous_period(world: World, site: str) -> None:
    got = world.ev.range_totals(site, PAST, NOW)
    cur = got.current
    assert (cur.events, cur.users, cur.sessions) == ref_totals(in_range(world, site, PAST))
    prev = got.previous
    assert prev.range == PAST.previous()
    assert (prev.events, prev.users, prev.sessions) == ref_totals(
        in_range(world, site, PAST.previous()))
    assert got.previous_until_ms is None  # a range that ended: whole days on both sides


@pytest.mark.parametrize("site", SITES)
def test_daily_breakdown_top_and_funnel(world: World, site: str) -> None:
    evs = in_range(world, site, PAST)
    daily = [(r.day, r.events, r.users, r.sessions) for r in world.ev.daily(site, PAST)]
    want = []
    for i, d in enumerate(PAST.each_day()):
        day = [e for e in evs if e.timestamp_ms // DAY_MS == PAST.first_day + i]
        want.append((d, *ref_totals(day)))
    assert daily == want
    assert [(r.event_type, r.events, r.users) for r in world.ev.breakdown(site, PAST)] == \
        ref_ranked(evs, "event_type")
    for dim in ("url", "country", "device_type"):
        got = [(r.value, r.events, r.users) for r in world.ev.top(site, PAST, dim, 3)]
        assert got == ref_ranked(evs, dim)[:3]
    steps = ("view", "click", "buy")
    assert [(r.step, r.event_type, r.users) for r in world.ev.funnel(site, PAST, steps)] == \
        ref_funnel(evs, steps)


def test_registered_reports_run_by_name(world: World) -> None:
    assert {"daily", "breakdown", "funnel", "top-urls"} <= set(world.ev.report_names())
    rows = world.ev.report("daily", "s1", PAST, now_ms=NOW)
    assert rows == [(r.day, r.events, r.users, r.sessions) for r in world.ev.daily("s1", PAST)]


def _ref_us_users(w: World, site: str) -> dict[str, tuple[int, int]]:
    by_user: dict[str, list[int]] = defaultdict(list)
    for e in w.of(site):
        if e.user_id is not None:
            by_user[e.user_id].append(e.timestamp_ms)
    us = {e.user_id for e in w.of(site) if e.user_id is not None and e.country == "US"}
    return {u: (min(by_user[u]), max(by_user[u])) for u in us}


def test_cohort_preview_evaluation_and_membership(world: World) -> None:
    want = _ref_us_users(world, "s1")
    got = world.ev.cohort_evaluate("s1", _group(US_ONLY), NOW)
    assert {u: (j, s) for u, j, s in got} == want
    preview = world.ev.cohort_preview(CLOCK, "s1", US_ONLY)
    assert preview.count == len(want)
    assert {m.user_id for m in preview.sample} <= set(want)
    cohort = world.control.create_cohort(CLOCK, site_id="s1", name="US", criteria=US_ONLY)
    members = world.ev.cohort_members(cohort.cohort_id)
    assert {m.user_id: (m.joined_at, m.last_seen_at) for m in members} == want
    assert world.control.active_member_count(cohort.cohort_id) == len(want)
    # a new US user arrives from another program: a refresh adds exactly that user
    world.impl.foreign_insert(world.b, world.db, [
        NewEvent("late-3", "s1", "view", NOW - 100, "new-s", "u-new", "/", None, "US", "mobile")])
    world.ev.catch_up(NOW)
    world.events.append(NewEvent("late-3", "s1", "view", NOW - 100, "new-s", "u-new", "/", None,
                                 "US", "mobile"))
    result = world.ev.refresh_cohort(CLOCK, cohort.cohort_id)
    assert result.added == 1
    assert {m.user_id for m in world.ev.cohort_members(cohort.cohort_id)} == \
        set(_ref_us_users(world, "s1"))
    assert {r.cohort_id for r in world.ev.refresh_all_cohorts(CLOCK)} == {cohort.cohort_id}
    assert world.ev.refresh_changed_cohorts(CLOCK) is not None


def _group(raw: object):  # type: ignore[no-untyped-def]
    from pulse_tui.cohorts.criteria import parse

    return parse(raw)


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def test_acquisition_retention_grid_and_a_cells_members(world: World) -> None:
    site = "s1"
    start, end = TODAY - timedelta(days=42), TODAY
    grid = world.ev.refresh_retention(site, CLOCK, start, end)
    stored = world.ev.retention_grid(site, start, end)  # what the snapshots now hold
    assert [(r.key, r.size, r.rates()) for r in stored.acquisition] == [
        (r.key, r.size, r.rates()) for r in grid.acquisition]
    assert all(r.captured_at is not None for r in stored.acquisition)
    first: dict[str, int] = {}
    active: dict[str, set[date]] = defaultdict(set)
    for e in world.of(site):
        if e.user_id is None:
            continue
        first[e.user_id] = min(first.get(e.user_id, e.timestamp_ms), e.timestamp_ms)
        active[e.user_id].add(_monday(date(1970, 1, 1) + timedelta(days=e.timestamp_ms // DAY_MS)))
    cohorts: dict[date, set[str]] = defaultdict(set)
    for u, ts in first.items():
        cohorts[_monday(date(1970, 1, 1) + timedelta(days=ts // DAY_MS))].add(u)
    rows = [r for r in grid.acquisition if r.kind == ACQUISITION]
    monday = _monday(start) if _monday(start) >= start else _monday(start) + timedelta(weeks=1)
    mondays = [monday + timedelta(weeks=k) for k in range((end - monday).days // 7 + 1)]
    assert [r.key for r in rows] == [m.isoformat() for m in mondays]
    assert sum(r.size for r in rows) > 10
    checked = 0
    for row in rows:
        week = date.fromisoformat(row.key)
        members = cohorts.get(week, set())
        assert row.size == len(members)
        for cell in row.cells:
            k_week = week + timedelta(weeks=cell.week_number)
            returning = {u for u in members if k_week in active[u]}
            if cell.returning is None:
                assert cell.week_number > 0 and cell.end_ms > NOW  # only weeks not ended
                continue
            assert cell.returning == len(returning), (row.key, cell.week_number)
            if cell.week_number > 0 and returning:
                users = world.ev.retention_cell_users(row, cell.week_number, NOW)
                assert set(users) == returning
                checked += 1
    assert checked  # the data has returning users to compare
    cid = world.ev.save_users_as_static_cohort(site, "returning", sorted(returning or members), NOW)
    assert world.control.get_cohort(cid).kind == "static"


def test_alert_values_and_the_backtest(world: World) -> None:
    day = {"metric": "events", "window_minutes": 24 * 60, "comparison": "gt", "threshold": 5}
    value, fires = engine.preview_value(world.b, "s1", day, CLOCK)
    want = len(world.of("s1", NOW - DAY_MS, NOW))
    assert value == want and fires == (want > 5)
    users_us = {**day, "metric": "users", "filter": US_ONLY}
    value, _ = engine.preview_value(world.b, "s1", users_us, CLOCK)
    assert value == len({e.user_id for e in world.of("s1", NOW - DAY_MS, NOW)
                         if e.user_id and e.country == "US"})
    hourly = {"metric": "events", "window_minutes": 120, "comparison": "gt", "threshold": 0}
    result = engine.backtest(world.b, hourly, "s1", CLOCK, 2)
    assert len(result.points) == 48
    for point in result.points:
        t = point.at // HOUR_MS
        assert point.value == len(world.of("s1", (t - 2) * HOUR_MS, t * HOUR_MS)), t


def test_the_import_batch_writer_counts_duplicates_exactly(world: World) -> None:
    world.control.create_import_job(job_id="j1", kind="events", site_id="s2", file_name="x.csv",
                                    file_size=1, source_path=None, now_ms=NOW)
    fresh = NewEvent("batch-1", "s2", "buy", NOW - 2 * HOUR_MS, "b-s", "u9", "/", None, "DE",
                     "mobile")
    dup = world.events[0]
    rows = [(e.event_id, e.site_id, e.event_type, e.timestamp_ms, e.session_id, e.user_id,
             e.url, e.referrer, e.country, e.device_type, NOW) for e in (fresh, dup)]
    outcome = world.ev.write_import_batch("events", "j1", rows, [(3, "x", "y", "bad")],
                                          Checkpoint(3, 100, 4), NOW)
    assert (outcome.processed, outcome.duplicates, outcome.failed) == (1, 1, 1)
    world.events.append(fresh)
    assert world.ev.range_totals("s2", DateRange(TODAY, TODAY), NOW).current.events == \
        len(world.of("s2", DateRange(TODAY, TODAY).start_ms, NOW + 1))
    assert world.control.import_rejects("j1", 10) == ([(3, "x", "y", "bad")], 1)


def test_users_rows_of_an_audience(world: World) -> None:
    assert world.ev.users_rows("s1", ["u1", "nobody"]) == {}  # no users rows were imported


def test_cleanup_keeps_exactly_the_events_inside_the_retention(world: World,
                                                               tmp_path: Path) -> None:
    settings = Settings(db=world.db, import_dir=tmp_path / "in", export_dir=tmp_path / "out",
                        log_file=tmp_path / "log", events_retention_days=10)
    cutoff = NOW - 10 * DAY_MS
    # a session on both sides of the cutoff (the others lie in 6-hour buckets, which it bounds)
    straddle = [NewEvent(f"straddle-{i}", "s2", "view", cutoff + dt, "u5-straddle", "u5", "/",
                         None, "US", "mobile") for i, dt in enumerate((-HOUR_MS, HOUR_MS))]
    world.impl.foreign_insert(world.b, world.db, straddle)
    world.ev.catch_up(NOW)
    events = [*world.events, *straddle]
    world.control.create_cohort(CLOCK, site_id="s1", name="us", criteria=US_ONLY)
    result = world.ev.cleanup(settings, CLOCK)
    kept = [e for e in events if e.timestamp_ms >= cutoff]
    assert result.events == len(events) - len(kept)
    left = world.ev.tail(limit=10_000).events
    assert sorted(e.event_id for e in left) == sorted(e.event_id for e in kept)
    # the summary says the same things on every store: sessions deleted and recomputed (by
    # session id), cohorts refreshed
    old_sessions = {e.session_id for e in events if e.timestamp_ms < cutoff}
    kept_sessions = {e.session_id for e in kept}
    gone, updated = len(old_sessions - kept_sessions), len(old_sessions & kept_sessions)
    assert (result.sessions_deleted, result.sessions_updated) == (gone, updated)
    assert gone > 0 and updated > 0
    assert result.cohorts_refreshed == 1
    assert f"{gone} sessions ({updated} recomputed)" in result.describe()
    assert result.describe().endswith("; 1 cohorts refreshed")


def test_rebuild_gives_the_same_reports(world: World) -> None:
    before = [world.ev.daily(s, PAST) for s in SITES]
    assert world.ev.rebuild(NOW) >= len(world.events)
    assert [world.ev.daily(s, PAST) for s in SITES] == before
    week = DateRange(TODAY - timedelta(days=6), TODAY)
    got = world.ev.range_totals("s2", week, NOW).current
    assert (got.events, got.users, got.sessions) == ref_totals(
        world.of("s2", week.start_ms, week.end_ms + 1))


