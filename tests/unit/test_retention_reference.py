"""Retention against a plain-Python reference over random events (hypothesis): acquisition and
saved-cohort grids, with boundary-heavy timestamps and raw-event cleanup."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pulse_tui.clock import DAY_MS, WEEK_MS, parse_instant
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import derived, retention
from pulse_tui.store.connection import connect

NOW = parse_instant("2026-11-25T12:00:00Z")
SITE = "s1"
USERS = [f"u{i}" for i in range(6)]
START_DAY = NOW // DAY_MS - 16 * 7
EPOCH = date(1970, 1, 1)

# times of day that sit on or next to a UTC day boundary, noon, or anywhere
tod = st.one_of(st.sampled_from([0, 1, DAY_MS - 1, DAY_MS // 2, DAY_MS // 2 - 1]),
                st.integers(0, DAY_MS - 1))
instant = st.builds(lambda d, ms: (START_DAY + d) * DAY_MS + ms, st.integers(0, 16 * 7), tod)
event = st.tuples(st.sampled_from(USERS + [None]), st.sampled_from([SITE, SITE, "other"]),
                  instant)


_TEMPLATE: list[Path] = []
# a RAM-backed folder when there is one: per-example files without fsync costs
_FAST_DIR = "/dev/shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None


def _template() -> Path:
    """An empty migrated database, made once per process and copied per example (fast)."""
    if not _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="pulse-retention-", dir=_FAST_DIR)
        atexit.register(shutil.rmtree, folder, True)
        path = Path(folder) / "template.db"
        conn = connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


@contextmanager
def database(events: list[tuple[str | None, str, int]]) -> Iterator[sqlite3.Connection]:
    with tempfile.TemporaryDirectory(dir=_FAST_DIR) as tmp:
        shutil.copyfile(_template(), Path(tmp) / "r.db")
        conn = connect(Path(tmp) / "r.db")
        try:
            batch = [NewEvent(f"e{n}", site, "view", ts, f"s{n}", user)
                     for n, (user, site, ts) in enumerate(events)]
            if batch:
                write_batch(conn, batch, NOW)
            yield conn
        finally:
            conn.close()


def site_events(events: list[tuple[str | None, str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for user, site, ts in events:
        if user is not None and site == SITE:
            out.setdefault(user, []).append(ts)
    return out


def ref_acquisition(events: list[tuple[str | None, str, int]], start: date, end: date
                    ) -> dict[str, tuple[int, list[float | None]]]:
    """Straight from the definitions: ISO weeks by Monday, any event in week k."""
    by_user = site_events(events)
    out = {}
    d = start
    while d <= end:
        if d.weekday() == 0:
            lo = (d - EPOCH).days * DAY_MS
            members = [u for u, ts in by_user.items() if lo <= min(ts) < lo + WEEK_MS]
            rates: list[float | None] = []
            for k in range(13):
                w_lo, w_hi = lo + k * WEEK_MS, lo + (k + 1) * WEEK_MS
                if k == 0 and members:
                    rates.append(1.0)
                elif w_hi > NOW:
                    rates.append(None)
                elif not members:
                    rates.append(0.0)
                else:
                    back = sum(any(w_lo <= x < w_hi for x in by_user[u]) for u in members)
                    rates.append(back / len(members))
            out[d.isoformat()] = (len(members), rates)
        d += timedelta(days=1)
    return out


def ref_saved(events: list[tuple[str | None, str, int]],
              members: dict[str, tuple[int, bool]]) -> dict[int, tuple[int, int]]:
    """week -> (eligible, returning) for active members with windows from joined_at."""
    by_user = site_events(events)
    out = {}
    for k in range(13):
        eligible = returning = 0
        for u, (j, active) in members.items():
            if not active or j + (k + 1) * WEEK_MS > NOW:
                continue
            eligible += 1
            returning += any(j + k * WEEK_MS <= x < j + (k + 1) * WEEK_MS
                             for x in by_user.get(u, []))
        if eligible:
            out[k] = (eligible, returning)
    return out


def add_members(conn: sqlite3.Connection, members: dict[str, tuple[int, bool]]) -> None:
    conn.execute("INSERT OR IGNORE INTO sites (id, created_at) VALUES (?, 0)", (SITE,))
    conn.execute("INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, "
                 "updated_at, kind) VALUES ('c', ?, 'c', ?, 0, 0, 'static')",
                 (SITE, json.dumps({"type": "and", "conditions": []})))
    conn.executemany("INSERT INTO cohort_members VALUES (?, 'c', NULL, ?, ?, ?, ?)",
                     [(f"m{u}", u, j, j, int(a)) for u, (j, a) in members.items()])


def computed_saved(conn: sqlite3.Connection) -> dict[int, tuple[int, int]]:
    (row,) = retention.saved_cohort_rows(conn, NOW, cohort_ids=["c"])
    return {c.week_number: (c.base, c.returning) for c in row.cells if c.returning is not None}


range_days = st.tuples(st.integers(0, 16 * 7), st.integers(0, 40))


def clean_events_before(conn: sqlite3.Connection, before_ms: int) -> None:
    """Delete events as cleanup does: rollups and first-seen times stay (a plain DELETE by
    another program would be re-derived from what is left)."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM events WHERE timestamp_ms < ?", (before_ms,))
    derived.record_cleanup(conn, before_ms)
    derived.discard_stale(conn)
    conn.execute("COMMIT")


@given(st.lists(event, max_size=40), range_days, st.none() | st.integers(0, 16 * 7))
def test_acquisition_matches_reference(events: list[tuple[str | None, str, int]],
                                       rng: tuple[int, int], cleanup_day: int | None) -> None:
    start = EPOCH + timedelta(days=START_DAY + rng[0])
    end = start + timedelta(days=rng[1])
    expected = ref_acquisition(events, start, end)
    with database(events) as conn:
        if cleanup_day is not None:  # cleanup never changes acquisition retention
            clean_events_before(conn, (START_DAY + cleanup_day) * DAY_MS + 3_600_000)
        rows = retention.acquisition_rows(conn, SITE, start, end, NOW)
        assert {r.label: (r.size, r.rates()) for r in rows} == expected
        for r in rows:
            for c in r.cells:
                if c.rate is not None and c.base:
                    assert c.returning == round(c.rate * c.base)


# joined_at: on a day boundary, at noon, a millisecond off, or anywhere
joined = st.builds(lambda d, ms: (START_DAY + d) * DAY_MS + ms, st.integers(0, 16 * 7), tod)


@given(st.lists(event, max_size=40),
       st.dictionaries(st.sampled_from(USERS), st.tuples(joined, st.booleans()), max_size=6))
def test_saved_cohort_matches_reference(events: list[tuple[str | None, str, int]],
                                        members: dict[str, tuple[int, bool]]) -> None:
    # events exactly at window boundaries of the members, and a millisecond before them
    for u, (j, _) in list(members.items())[:3]:
        for k in (1, 2):
            events = [*events, (u, SITE, j + k * WEEK_MS), (u, SITE, j + (k + 2) * WEEK_MS - 1)]
    events = [e for e in events if e[2] <= NOW]
    with database(events) as conn:
        add_members(conn, members)
        assert computed_saved(conn) == ref_saved(events, members)


@given(st.lists(event, max_size=40),
       st.dictionaries(st.sampled_from(USERS),
                       st.tuples(st.integers(0, 16 * 7).map(lambda d: (START_DAY + d) * DAY_MS),
                                 st.booleans()), max_size=6),
       st.integers(0, 16 * 7))
def test_saved_cohort_with_day_aligned_joins_survives_cleanup(
        events: list[tuple[str | None, str, int]], members: dict[str, tuple[int, bool]],
        cleanup_day: int) -> None:
    with database(events) as conn:
        add_members(conn, members)
        clean_events_before(conn, (START_DAY + cleanup_day) * DAY_MS + 5_000_000)
        assert computed_saved(conn) == ref_saved(events, members)
