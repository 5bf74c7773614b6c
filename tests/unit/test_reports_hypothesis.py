"""Random events, batch orders and ranges: every report equals a plain-Python reference."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange
from pulse_tui.simulate import write_batch
from pulse_tui.store import reports
from pulse_tui.store.connection import connect
from tests.reference import ref_funnel, ref_ranked

DAY = 86_400_000
BASE = date(2026, 10, 28)  # ranges cross the October/November boundary
BASE_DAY = (BASE - date(1970, 1, 1)).days
SPAN = 12

TYPES = ["view", "click", "buy"]
values = st.sampled_from([None, "", "US", "=x", "de", "ü", "a b"])
event = st.fixed_dictionaries({
    "site": st.sampled_from(["s1", "s2"]),
    "etype": st.sampled_from(TYPES),
    "day": st.integers(0, SPAN - 1),
    "ms": st.integers(0, DAY - 1),
    "session": st.sampled_from(["sa", "sb", "sc", "sd", "se"]),
    "user": st.sampled_from([None, "u1", "u2", "u3", "u4", "u5"]),
    "url": values, "referrer": values, "country": values, "device_type": values,
})


def reference(evs: list[NewEvent], site: str, rng: DateRange, name: str, limit: int,
              steps: tuple[str, ...]) -> list[tuple[object, ...]]:
    sel = [e for e in evs if e.site_id == site and rng.start_ms <= e.timestamp_ms <= rng.end_ms]
    if name == "daily":
        out = []
        for i, d in enumerate(rng.each_day()):
            day = [e for e in sel if e.timestamp_ms // DAY == rng.first_day + i]
            out.append((d, len(day), len({e.user_id for e in day if e.user_id is not None}),
                        len({e.session_id for e in day})))
        return out
    if name == "funnel":
        return list(ref_funnel(sel, steps))
    if name == "breakdown":
        return list(ref_ranked(sel, "event_type"))
    return list(ref_ranked(sel, reports.TOP_DIMENSIONS[name])[:limit])


RESET = ("events", "sessions", "sites", "user_first_seen", "pulse_meta", "rollup_daily",
         "rollup_hourly", "rollup_daily_users", "rollup_daily_sessions", "rollup_daily_dims",
         "rollup_presence", "rollup_distinct_gaps")


@pytest.fixture(scope="module")
def hconn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """One database for every example, emptied before each (connect per example is slow)."""
    c = connect(tmp_path_factory.mktemp("hyp") / "h.db")
    yield c
    c.close()


@given(
    raw=st.lists(event, min_size=0, max_size=60),
    order=st.randoms(use_true_random=False),
    n_batches=st.integers(1, 4),
    ranges=st.lists(st.tuples(st.integers(-2, SPAN + 1), st.integers(0, SPAN)), min_size=1,
                    max_size=4),
    limit=st.integers(1, 4),
    steps=st.lists(st.sampled_from(TYPES), min_size=1, max_size=3),
)
def test_every_report_matches_plain_python(hconn: sqlite3.Connection, raw: list[dict], order,
                                           n_batches: int, ranges: list[tuple[int, int]],
                                           limit: int, steps: list[str]) -> None:
    evs = [NewEvent(f"e{i}", r["site"], r["etype"], (BASE_DAY + r["day"]) * DAY + r["ms"],
                    r["session"], r["user"], r["url"], r["referrer"], r["country"],
                    r["device_type"]) for i, r in enumerate(raw)]
    shuffled = list(evs) + order.sample(evs, len(evs) // 3)  # some imported twice
    order.shuffle(shuffled)
    conn = hconn
    for table in RESET:
        conn.execute(f"DELETE FROM {table}")
    size = max(1, len(shuffled) // n_batches + 1)
    for i in range(0, len(shuffled), size):
        write_batch(conn, shuffled[i:i + size], 0)
    for a, length in ranges:
        rng = DateRange(BASE + timedelta(days=a), BASE + timedelta(days=a + length))
        for site in ("s1", "s2"):
            for name in ("daily", "breakdown", "top-urls", "top-referrers", "top-countries",
                         "top-devices", "funnel"):
                got = reports.run_report(conn, name, site, rng, limit=limit, steps=tuple(steps))
                want = reference(evs, site, rng, name, limit, tuple(steps))
                assert got == want, (name, site, rng)
            t = reports.totals(conn, site, rng)
            sel = [e for e in evs
                   if e.site_id == site and rng.start_ms <= e.timestamp_ms <= rng.end_ms]
            assert (t.events, t.users, t.sessions) == (
                len(sel), len({e.user_id for e in sel if e.user_id}),
                len({e.session_id for e in sel}))
