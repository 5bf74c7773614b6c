"""Reports from rollups against straightforward queries over raw events, in several scenarios."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest

from pulse_tui.clock import Clock, day_start_ms
from pulse_tui.errors import UsageError
from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange, RangeTotals
from pulse_tui.simulate import Simulator, write_batch
from pulse_tui.store import derived, reports
from pulse_tui.store.connection import connect
from pulse_tui.store.events import ensure_sites, insert_events
from pulse_tui.store.reports_raw import raw_report

END = date(2026, 11, 25)
END_DAY = day_start_ms(END) // 86_400_000
STEPS = ("pageview", "signup", "purchase")
RANGES = (
    DateRange(END - timedelta(days=29), END),            # default 30 days
    DateRange(date(2026, 10, 25), date(2026, 11, 6)),     # crosses a month boundary
    DateRange(date(2026, 11, 10), date(2026, 11, 10)),    # one day
    DateRange(date(2024, 1, 1), date(2024, 1, 31)),       # empty: no events at all
    DateRange(END - timedelta(days=89), END),             # 90 days
)
NAMES = ("daily", "breakdown", "top-urls", "top-referrers", "top-countries", "top-devices",
         "funnel")


def assert_reports_match(conn: sqlite3.Connection, ranges: tuple[DateRange, ...] = RANGES
                         ) -> int:
    checked = 0
    for site in [s.id for s in reports.sites(conn)]:
        for rng in ranges:
            for name in NAMES:
                kw = {"steps": STEPS} if name == "funnel" else {}
                for limit in ((3, 10) if name.startswith("top-") else (10,)):
                    got = reports.run_report(conn, name, site, rng, limit=limit, **kw)
                    want = raw_report(conn, name, site, rng, limit=limit, **kw)
                    assert got == want, (site, rng, name, limit)
                    checked += 1
            t = reports.totals(conn, site, rng)
            assert [(t.events, t.users, t.sessions)] == raw_report(conn, "totals", site, rng)
    return checked


def _history(seed: int, days: int, scale: float, sites: int = 3) -> list[list[NewEvent]]:
    sim = Simulator(seed=seed, sites=sites)
    return list(sim.history(END_DAY - days + 1, END_DAY, scale=scale))


def test_simulated_traffic_several_sites(conn: sqlite3.Connection) -> None:
    for batch in _history(1, 70, 0.12):
        write_batch(conn, batch, 0)
    assert len(reports.sites(conn)) == 3
    assert assert_reports_match(conn) > 100
    # the scenario is not trivial: there are users, sessions and a funnel
    d = reports.daily(conn, "acme-web", RANGES[0])
    assert sum(r.users for r in d) > 0 and sum(r.events for r in d) > sum(r.sessions for r in d)
    f = reports.funnel(conn, "acme-web", RANGES[0], STEPS)
    assert f[0].users >= f[1].users >= f[2].users and f[1].users > 0


def test_out_of_order_batches_and_split_sessions(conn: sqlite3.Connection) -> None:
    """Days arrive newest first, and each day in two halves: prev-day links are repaired."""
    batches = _history(2, 45, 0.1, sites=2)
    for batch in reversed(batches):
        write_batch(conn, batch[1::2], 0)
    for batch in batches[::3]:
        write_batch(conn, batch[0::2], 0)
    for batch in batches:
        write_batch(conn, batch, 0)  # the rest; already stored ones are ignored
    assert assert_reports_match(conn) > 50


def test_rows_inserted_by_another_connection_then_catch_up(db_path: Path,
                                                           conn: sqlite3.Connection) -> None:
    batches = _history(3, 40, 0.1, sites=2)
    for batch in batches[:20]:
        write_batch(conn, batch, 0)
    other = connect(db_path)
    other.execute("BEGIN IMMEDIATE")
    for batch in batches[20:]:
        ensure_sites(other, {e.site_id for e in batch}, 0)
        insert_events(other, batch, 0)
    other.execute("COMMIT")
    other.close()
    assert derived.pending_rows(conn) > 0
    # reading folds the pending rows first (issue 15): no worker needed for exact numbers
    fresh = reports.totals(conn, "acme-web", RANGES[0])
    assert derived.pending_rows(conn) == 0
    assert derived.catch_up_tx(conn, 0) == 0
    assert reports.totals(conn, "acme-web", RANGES[0]) == fresh
    assert assert_reports_match(conn) > 50


def test_importing_twice_counts_once(conn: sqlite3.Connection) -> None:
    batches = _history(4, 35, 0.1, sites=2)
    for _ in range(2):
        for batch in batches:
            write_batch(conn, batch, 0)
    n = sum(len(b) for b in batches)
    assert conn.execute("SELECT sum(events) FROM rollup_daily").fetchone()[0] == n
    assert assert_reports_match(conn) > 50


def test_rebuild_gives_the_same_rollups(conn: sqlite3.Connection) -> None:
    batches = _history(5, 30, 0.1, sites=2)
    for batch in reversed(batches):
        write_batch(conn, batch, 0)
    tables = ("rollup_daily", "rollup_daily_dims", "rollup_presence", "rollup_distinct_gaps")
    before = {t: sorted(conn.execute(f"SELECT * FROM {t}")) for t in tables}
    gaps = sorted(conn.execute("SELECT * FROM rollup_distinct_gaps WHERE n != 0"))
    derived.rebuild(conn, 0)
    after = {t: sorted(conn.execute(f"SELECT * FROM {t}")) for t in tables}
    for t in tables[:3]:
        assert before[t] == after[t], t
    assert gaps == sorted(conn.execute("SELECT * FROM rollup_distinct_gaps WHERE n != 0"))
    assert assert_reports_match(conn, RANGES[:2]) > 10


def _ev(i: int, site: str, etype: str, ts: int, session: str, user: str | None,
        **kw: str | None) -> NewEvent:
    return NewEvent(f"e{i}", site, etype, ts, session, user, **kw)


def test_top_none_ties_limit_and_breakdown_order(conn: sqlite3.Connection) -> None:
    t0 = day_start_ms(date(2026, 11, 1)) + 1000
    events = [
        _ev(1, "s1", "view", t0, "a", "u1", url="/b", referrer=None, country="US"),
        _ev(2, "s1", "view", t0 + 1, "a", "u1", url="/a", referrer="", country="US"),
        _ev(3, "s1", "click", t0 + 2, "b", "u2", url="/a", referrer="x", country=None),
        _ev(4, "s1", "click", t0 + 3, "c", None, url="/b", referrer="=cmd", country=None),
        _ev(5, "s1", "buy", t0 + 86_400_000, "d", "u2", url="/c", country="DE"),
    ]
    write_batch(conn, events, 0)
    rng = DateRange(date(2026, 11, 1), date(2026, 11, 2))
    assert reports.breakdown(conn, "s1", rng) == [
        reports.BreakdownRow("click", 2, 1), reports.BreakdownRow("view", 2, 1),
        reports.BreakdownRow("buy", 1, 1)]
    urls = reports.top(conn, "s1", rng, "url")
    assert [(r.value, r.events, r.users) for r in urls] == [("/a", 2, 2), ("/b", 2, 1),
                                                            ("/c", 1, 1)]
    refs = reports.top(conn, "s1", rng, "referrer", limit=2)
    assert [(r.value, r.events, r.users) for r in refs] == [("(none)", 3, 2), ("=cmd", 1, 0)]
    countries = reports.top(conn, "s1", rng, "country")
    assert [r.value for r in countries] == ["(none)", "US", "DE"]
    one_day = DateRange(date(2026, 11, 2), date(2026, 11, 2))
    assert reports.daily(conn, "s1", one_day) == [reports.DailyRow(date(2026, 11, 2), 1, 1, 1)]


def test_funnel_needs_strictly_later_steps_within_range(conn: sqlite3.Connection) -> None:
    t0 = day_start_ms(date(2026, 11, 3))
    events = [
        _ev(1, "s1", "a", t0 + 10, "s", "u1"), _ev(2, "s1", "b", t0 + 20, "s", "u1"),
        _ev(3, "s1", "c", t0 + 30, "s", "u1"),
        _ev(4, "s1", "a", t0 + 10, "t", "u2"), _ev(5, "s1", "b", t0 + 10, "t", "u2"),  # same ms
        _ev(6, "s1", "b", t0 + 5, "v", "u3"), _ev(7, "s1", "a", t0 + 6, "v", "u3"),   # wrong order
        _ev(8, "s1", "a", t0 + 1, "w", None), _ev(9, "s1", "b", t0 + 2, "w", None),   # no user
        _ev(10, "s1", "a", t0 - 5, "x", "u4"), _ev(11, "s1", "b", t0 + 50, "x", "u4"),  # a before
        _ev(12, "s1", "a", t0 + 40, "y", "u5"), _ev(13, "s1", "b", t0 + 86_400_000, "y", "u5"),
        _ev(14, "s1", "a", t0 + 1, "z", "u6"), _ev(15, "s1", "a", t0 + 2, "z", "u6"),
    ]
    write_batch(conn, events, 0)
    rng = DateRange(date(2026, 11, 3), date(2026, 11, 3))
    got = reports.funnel(conn, "s1", rng, ("a", "b", "c"))
    assert [(r.step, r.event_type, r.users) for r in got] == [(1, "a", 5), (2, "b", 1),
                                                              (3, "c", 1)]
    assert [r.users for r in reports.funnel(conn, "s1", rng, ("a", "a"))] == [5, 1]
    assert reports.funnel(conn, "s1", rng, ("nothing",))[0].users == 0
    assert got == [reports.FunnelRow(*r) for r in raw_report(conn, "funnel", "s1", rng,
                                                             steps=("a", "b", "c"))]
    with pytest.raises(UsageError):
        reports.funnel(conn, "s1", rng, ())


def test_funnel_steps_look_the_previous_users_up_by_key(conn: sqlite3.Connection) -> None:
    """Each later step joins the range's events to the previous step's users through an index
    (a scan of those users per event was quadratic: 48 s for one day of 10M events)."""
    for batch in _history(3, 10, 0.1, sites=1):
        write_batch(conn, batch, 0)
    conn.execute("ANALYZE")
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    rng = DateRange(END - timedelta(days=9), END)
    try:
        got = reports.funnel(conn, "s1", rng, STEPS)
    finally:
        conn.set_trace_callback(None)
    sql = next(q for q in seen if q.lstrip().upper().startswith("WITH"))
    plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    joins = [p for p in plan if p.startswith(("SCAN p", "SEARCH p", "SCAN e", "SEARCH e"))]
    assert joins and not any(p.startswith("SCAN p") for p in plan), plan
    assert got == [reports.FunnelRow(*r) for r in raw_report(conn, "funnel", "s1", rng,
                                                             steps=STEPS)]


def test_range_totals_and_previous_period(conn: sqlite3.Connection) -> None:
    for batch in _history(6, 30, 0.1, sites=1):
        write_batch(conn, batch, 0)
    rng = DateRange(END - timedelta(days=6), END)
    rt = reports.range_totals(conn, "acme-web", rng)
    assert rt.previous.range == DateRange(END - timedelta(days=13), END - timedelta(days=7))
    for part in (rt.current, rt.previous):
        assert [(part.events, part.users, part.sessions)] == raw_report(
            conn, "totals", "acme-web", part.range)
    # exact distincts, not a sum of daily distincts (returning users)
    assert rt.current.users < sum(r.users for r in reports.daily(conn, "acme-web", rng))
    assert RangeTotals.change_pct(150, 100) == 50.0 and RangeTotals.change_pct(1, 0) is None


@pytest.mark.parametrize("days", [1, 7])
@pytest.mark.parametrize("hour", [0.5, 9.75, 23.9])
def test_range_ending_today_compares_with_the_same_time(conn: sqlite3.Connection, days: int,
                                                        hour: float) -> None:
    """A range ending today (still running) is compared with the previous period up to the
    same time of its last day, exactly (raw reference), not with whole days."""
    for batch in _history(7, 20, 0.1, sites=1):
        write_batch(conn, batch, 0)
    now = day_start_ms(END) + int(hour * 3_600_000)
    rng = DateRange(END - timedelta(days=days - 1), END)
    rt = reports.range_totals(conn, "acme-web", rng, now)
    until = now - days * 86_400_000
    assert rt.previous_until_ms == until
    assert rt.previous.range == rng.previous()
    want = conn.execute(
        "SELECT count(*), count(DISTINCT user_id), count(DISTINCT session_id) FROM events "
        "WHERE site_id = 'acme-web' AND timestamp_ms BETWEEN ? AND ?",
        (rng.previous().start_ms, until)).fetchone()
    assert (rt.previous.events, rt.previous.users, rt.previous.sessions) == want
    whole = reports.totals(conn, "acme-web", rng.previous()).events
    assert (0 < want[0] < whole) if (hour, days) == (9.75, 7) else (want[0] <= whole)
    assert rt.current == reports.totals(conn, "acme-web", rng)
    # a range that ended before today compares whole days; so does one whose previous last
    # day lost its raw events to cleanup
    assert reports.range_totals(conn, "acme-web", rng, now + 86_400_000).previous_until_ms is None
    derived.set_meta(conn, derived.CLEANUP_KEY, rng.previous().end_ms + 1)
    assert reports.range_totals(conn, "acme-web", rng, now) == reports.range_totals(
        conn, "acme-web", rng)


def test_sites_ranges_and_registry(conn: sqlite3.Connection) -> None:
    clock = Clock(day_start_ms(END) + 5_000)
    assert reports.default_range(clock) == DateRange(END - timedelta(days=29), END)
    assert reports.make_range(clock) == DateRange(END - timedelta(days=29), END)
    assert reports.make_range(clock, "2026-11-01") == DateRange(date(2026, 11, 1), END)
    assert reports.make_range(clock, None, "2026-02-28").start == date(2026, 1, 30)
    for bad in (("2026-11-02", "2026-11-01"), ("2026-02-30", None), ("yesterday", None),
                (None, "2026-1-1")):
        with pytest.raises(UsageError):
            reports.make_range(clock, *bad)
    with pytest.raises(UsageError, match="no site"):
        reports.resolve_site(conn, None)
    write_batch(conn, [_ev(1, "s1", "v", 5, "s", None)], 0)
    assert reports.resolve_site(conn, None) == "s1"
    write_batch(conn, [_ev(2, "s2", "v", 5, "s", None)], 0)
    with pytest.raises(UsageError, match="several sites"):
        reports.resolve_site(conn, None)
    with pytest.raises(UsageError, match="unknown site"):
        reports.resolve_site(conn, "s3")
    assert reports.resolve_site(conn, "s2") == "s2"
    assert {"daily", "breakdown", "top-urls", "top-referrers", "top-countries",
            "top-devices", "funnel"} <= set(reports.REPORTS)
    assert reports.REPORTS["daily"].columns == ("day", "events", "users", "sessions")

    spec = reports.ReportSpec("test-extra", ("a", "b"), lambda c, p: [{"b": 2, "a": 1}, (3, 4)])
    reports.register_report(spec)
    try:
        rng = DateRange(END, END)
        assert reports.run_report(conn, "test-extra", "s1", rng) == [(1, 2), (3, 4)]
    finally:
        del reports.REPORTS["test-extra"]
    with pytest.raises(UsageError, match="unknown report"):
        reports.run_report(conn, "test-extra", "s1", DateRange(END, END))


def test_daily_empty_range_has_every_day_with_zeros(conn: sqlite3.Connection) -> None:
    write_batch(conn, [_ev(1, "s1", "v", day_start_ms(END), "s", "u")], 0)
    rng = DateRange(date(2026, 2, 27), date(2026, 3, 2))
    assert reports.daily(conn, "s1", rng) == [
        reports.DailyRow(date(2026, 2, 27) + timedelta(days=i), 0, 0, 0) for i in range(4)]
    assert reports.breakdown(conn, "s1", rng) == [] and reports.top(conn, "s1", rng, "url") == []


def test_prune_rollups_keeps_later_ranges_exact(conn: sqlite3.Connection) -> None:
    batches = _history(7, 40, 0.1, sites=1)
    for batch in batches:
        write_batch(conn, batch, 0)
    cut = END - timedelta(days=20)
    later = (DateRange(cut, END), DateRange(cut + timedelta(days=3), END - timedelta(days=2)))
    want = {r: reports.totals(conn, "acme-web", r) for r in later}
    conn.execute("BEGIN IMMEDIATE")
    assert derived.prune_rollups(conn, day_start_ms(cut) // 86_400_000) > 0
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM rollup_presence WHERE day < ?",
                        (day_start_ms(cut) // 86_400_000,)).fetchone()[0] == 0
    # raw events are still all there, so the raw reference still applies to later ranges
    assert {r: reports.totals(conn, "acme-web", r) for r in later} == want
    assert assert_reports_match(conn, later) > 10
    # late events (a backfill before and after the cut) keep later ranges exact
    extra = [e for b in _history(8, 40, 0.05, sites=1) for e in b]
    write_batch(conn, extra, 0)
    assert assert_reports_match(conn, later) > 10
