"""The Live pane's site-filtered tail: the newest arrivals read by rowid first, the older ones
through the site's index only when needed; always the plain "newest of the site" answer."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import events as store_events
from pulse_tui.store.events import tail_events

T0 = 1_764_000_000_000


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sites=st.lists(st.sampled_from(["a", "b", "rare"]), min_size=1, max_size=60),
       window=st.integers(1, 70), after=st.integers(0, 60), limit=st.integers(1, 25))
def test_site_tail_is_the_newest_of_the_site(conn: sqlite3.Connection, sites: list[str],
                                             window: int, after: int, limit: int) -> None:
    conn.execute("DELETE FROM events")
    write_batch(conn, [NewEvent(f"e{i}", s, "view", T0 + i, f"s{i}")
                       for i, s in enumerate(sites)], 0)
    rows = [(r[0], r[1]) for r in conn.execute("SELECT rowid, site_id FROM events")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_events, "TAIL_WINDOW", window)
        for site in ("a", "b", "rare"):
            want = sorted((rid for rid, s in rows if s == site and rid > after),
                          reverse=True)[:limit]
            got = tail_events(conn, after_seq=after, site_id=site, limit=limit)
            assert [e.seq for e in got] == want


def test_a_busy_site_reads_the_newest_arrivals_by_rowid(conn: sqlite3.Connection) -> None:
    write_batch(conn, [NewEvent(f"e{i}", "a" if i % 3 else "b", "view", T0 + i, f"s{i}")
                       for i in range(300)], 0)
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        got = tail_events(conn, site_id="a", limit=50)
    finally:
        conn.set_trace_callback(None)
    assert len(got) == 50
    sql = [q for q in seen if "NOT INDEXED" in q]
    assert len(sql) == 1 and not any("rowid <=" in q for q in seen), seen  # no second query
    plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql[0]}")]
    assert plan == ["SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"], plan
