"""Derived tables (sessions, first-seen, rollups): exactly-once catch_up, exact sessions whatever
the arrival order or writer, and rebuild == incremental."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from conftest import FIXED_NOW_MS

from pulse_tui.models import NewEvent
from pulse_tui.store import cleanup, derived
from pulse_tui.store.connection import connect
from pulse_tui.store.events import ensure_sites, insert_events

DAY_MS = 86_400_000
T0 = FIXED_NOW_MS - 10 * DAY_MS


def make_events(n: int, seed: int = 1) -> list[NewEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        site = rng.choice(["a", "b"])
        out.append(NewEvent(
            event_id=f"e{i:05d}",
            site_id=site,
            event_type=rng.choice(["pageview", "signup", "login", "purchase", "click"]),
            timestamp_ms=T0 + rng.randrange(0, 9 * DAY_MS),
            session_id=f"{site}-s{rng.randrange(0, n // 4 + 1)}",
            user_id=rng.choice([None, *[f"u{k}" for k in range(12)]]),
            url=rng.choice(["/", "/pricing", None]),
            referrer=rng.choice([None, "https://google.com/"]),
            country=rng.choice(["US", "DE", None]),
            device_type=rng.choice(["desktop", "mobile", "tablet"]),
        ))
    return out


def write(conn: sqlite3.Connection, events: list[NewEvent], *, fold: bool = True) -> int:
    conn.execute("BEGIN IMMEDIATE")
    ensure_sites(conn, {e.site_id for e in events}, FIXED_NOW_MS)
    n = insert_events(conn, events, FIXED_NOW_MS)
    if fold:
        derived.catch_up(conn, FIXED_NOW_MS)
    conn.execute("COMMIT")
    return n


def derived_state(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    out = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
           for t in derived.ROLLUP_TABLES}
    if "rollup_distinct_gaps" in out:
        # out-of-order folds leave histogram rows whose +1/-1 cancelled (n = 0); they count
        # nothing, so they are not a difference (a rebuild does not write them)
        out["rollup_distinct_gaps"] = [r for r in out["rollup_distinct_gaps"] if r[-1] != 0]
    out["sessions"] = conn.execute(
        "SELECT session_id, site_id, user_id, first_event_at, last_event_at, event_count "
        "FROM sessions ORDER BY session_id").fetchall()
    out["user_first_seen"] = conn.execute(
        "SELECT * FROM user_first_seen ORDER BY 1, 2").fetchall()
    return out


def assert_sessions_exact(conn: sqlite3.Connection) -> None:
    stored = conn.execute(
        "SELECT session_id, site_id, first_event_at, last_event_at, event_count "
        "FROM sessions ORDER BY session_id").fetchall()
    expected = conn.execute(
        "SELECT session_id, min(site_id), min(timestamp_ms), max(timestamp_ms), count(*) "
        "FROM events GROUP BY session_id ORDER BY session_id").fetchall()
    assert stored == expected


def assert_rollups_match_events(conn: sqlite3.Connection) -> None:
    assert sorted(conn.execute("SELECT site_id, day, events FROM rollup_daily")) == sorted(
        conn.execute(f"SELECT site_id, timestamp_ms / {DAY_MS}, count(*) FROM events "
                     "GROUP BY 1, 2"))
    assert sorted(conn.execute("SELECT site_id, hour, events FROM rollup_hourly")) == sorted(
        conn.execute("SELECT site_id, timestamp_ms / 3600000, count(*) FROM events "
                     "GROUP BY 1, 2"))
    for dim in derived.DIMENSIONS:
        assert sorted(conn.execute(
            "SELECT site_id, value, day, events FROM rollup_daily_dims WHERE dim = ?", (dim,)
        )) == sorted(conn.execute(
            f"SELECT site_id, coalesce({dim}, ''), timestamp_ms / {DAY_MS}, count(*) "
            "FROM events GROUP BY 1, 2, 3")), dim
    assert sorted(conn.execute(
        "SELECT site_id, user_id, first_seen_ms, last_seen_ms FROM user_first_seen")) == sorted(
        conn.execute("SELECT site_id, user_id, min(timestamp_ms), max(timestamp_ms) FROM events "
                     "WHERE user_id IS NOT NULL GROUP BY 1, 2"))


def distinct_from_gaps(conn: sqlite3.Connection, site: str, dim: str, first: int, last: int
                       ) -> int:
    return conn.execute(
        "SELECT coalesce(sum(n), 0) FROM rollup_distinct_gaps WHERE site_id = ? AND dim = ? "
        "AND value = '' AND day BETWEEN ? AND ? AND gap > day - ?",
        (site, dim, first, last, first)).fetchone()[0]


def test_catch_up_is_exactly_once(conn: sqlite3.Connection) -> None:
    events = make_events(300)
    write(conn, events)
    state = derived_state(conn)
    assert state["sessions"] and state["rollup_daily"]
    conn.execute("BEGIN IMMEDIATE")
    assert derived.catch_up(conn, FIXED_NOW_MS) == 0
    conn.execute("COMMIT")
    assert derived.catch_up_tx(conn, FIXED_NOW_MS) == 0
    assert derived_state(conn) == state
    assert derived.pending_rows(conn) == 0
    assert_rollups_match_events(conn)


def test_duplicate_batch_changes_nothing(conn: sqlite3.Connection) -> None:
    events = make_events(200)
    assert write(conn, events) == 200
    state = derived_state(conn)
    assert write(conn, events) == 0  # same event ids again: skipped
    assert derived_state(conn) == state


def test_sessions_exact_with_out_of_order_batches(conn: sqlite3.Connection) -> None:
    events = sorted(make_events(400, seed=2), key=lambda e: e.timestamp_ms, reverse=True)
    for start in range(0, len(events), 37):  # newest first, in small batches
        write(conn, events[start:start + 37])
        assert_sessions_exact(conn)
    assert_rollups_match_events(conn)


def test_sessions_exact_for_rows_from_another_connection(db_path: Path,
                                                         conn: sqlite3.Connection) -> None:
    write(conn, make_events(100, seed=3)[:50])
    # a foreign program writes straight into the file, knowing nothing of derived tables
    other = sqlite3.connect(db_path)
    other.executemany(
        "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, user_id, "
        "url, referrer, country, device_type, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [(e.event_id, e.site_id, e.event_type, e.timestamp_ms - DAY_MS, e.session_id,
          e.user_id, e.url, e.referrer, e.country, e.device_type, 1)
         for e in make_events(100, seed=3)[50:]],
    )
    other.commit()
    other.close()
    assert derived.pending_rows(conn) == 50
    assert derived.catch_up_tx(conn, FIXED_NOW_MS) == 50
    assert_sessions_exact(conn)
    assert_rollups_match_events(conn)


def test_rebuild_equals_incremental(conn: sqlite3.Connection, tmp_path: Path) -> None:
    events = make_events(600, seed=4)
    rng = random.Random(9)
    rng.shuffle(events)
    for start in range(0, len(events), 53):
        write(conn, events[start:start + 53])
    incremental = derived_state(conn)
    derived.rebuild(conn, FIXED_NOW_MS)
    assert derived_state(conn) == incremental
    # and both equal one fold of everything into a fresh file
    fresh = connect(tmp_path / "fresh.db")
    try:
        write(fresh, sorted(events, key=lambda e: e.event_id))
        assert derived_state(fresh) == incremental
    finally:
        fresh.close()


def test_rebuild_after_cleanup_keeps_the_rollup_history(conn: sqlite3.Connection) -> None:
    """Cleanup deletes old raw events but keeps their rollups; a rebuild must not lose them:
    every rollup row (distinct-count chains included) ends as it was before the cleanup."""
    events = make_events(600, seed=8)
    random.Random(2).shuffle(events)
    for start in range(0, len(events), 97):
        write(conn, events[start:start + 97])
    before = {t: rows for t, rows in derived_state(conn).items() if t in derived.ROLLUP_TABLES}
    users_before = {(site, lo): distinct_from_gaps(conn, site, "user", lo, T0 // DAY_MS + 9)
                    for site in ("a", "b") for lo in range(T0 // DAY_MS, T0 // DAY_MS + 10)}
    # mid-day cutoff: the oldest day left has lost part of its events
    cutoff = T0 + 4 * DAY_MS + DAY_MS // 2
    deleted, _, _ = cleanup.delete_old_events(conn, cutoff)
    assert deleted > 100
    cut_day = cutoff // DAY_MS
    assert derived.history_days(conn) == {"a": cut_day, "b": cut_day}

    derived.rebuild(conn, FIXED_NOW_MS)
    after = {t: rows for t, rows in derived_state(conn).items() if t in derived.ROLLUP_TABLES}
    assert after == before
    assert {k: distinct_from_gaps(conn, k[0], "user", k[1], T0 // DAY_MS + 9)
            for k in users_before} == users_before

    # a site with no events left keeps all of its rollups; the other site is still rebuilt
    # (deleted as cleanup deletes: the watch triggers' record of the rows is dropped)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM events WHERE site_id = 'b'")
    derived.discard_stale(conn)
    conn.execute("COMMIT")
    conn.execute("DELETE FROM rollup_daily WHERE site_id = 'a' AND day = ?", (cut_day + 1,))
    assert derived.history_days(conn) == {"a": cut_day, "b": derived.KEEP_ALL_DAYS}
    derived.rebuild(conn, FIXED_NOW_MS)
    assert derived_state(conn)["rollup_daily"] == before["rollup_daily"]
    # a file cleaned before the cutoff was recorded: the last day without events is the border
    # (the partial cutoff day is rebuilt from what is left of it)
    conn.execute("DELETE FROM pulse_meta WHERE key = ?", (derived.CLEANUP_KEY,))
    empty = [d for (d,) in conn.execute("SELECT day FROM rollup_daily WHERE site_id = 'a'")
             if not conn.execute(f"SELECT 1 FROM events WHERE site_id = 'a' AND timestamp_ms "
                                 f"/ {DAY_MS} = ?", (d,)).fetchone()]
    assert empty and max(empty) < cut_day
    assert derived.history_days(conn) == {"a": max(empty), "b": derived.KEEP_ALL_DAYS}
    derived.rebuild(conn, FIXED_NOW_MS)
    rebuilt = derived_state(conn)["rollup_daily"]
    assert [r for r in rebuilt if r[0] == "b" or r[1] != cut_day] == [
        r for r in before["rollup_daily"] if r[0] == "b" or r[1] != cut_day]


def test_rebuild_after_cleanup_counts_rows_nobody_folded_yet(conn: sqlite3.Connection,
                                                              db_path: Path) -> None:
    """Another program adds late events of kept days, then a rebuild runs before the worker
    folds them: they still count (they are folded into the history before it is kept)."""
    write(conn, make_events(400, seed=3))
    cutoff = T0 + 4 * DAY_MS + DAY_MS // 2
    assert cleanup.delete_old_events(conn, cutoff)[0] > 0
    cut_day = cutoff // DAY_MS
    before = conn.execute("SELECT events FROM rollup_daily WHERE site_id = 'a' AND day = ?",
                          (cut_day - 1,)).fetchone()[0]
    other = sqlite3.connect(db_path)
    other.executemany(
        "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, user_id, "
        "created_at) VALUES (?, 'a', 'pageview', ?, ?, ?, 1)",
        [(f"late{i}", (cut_day - i % 2) * DAY_MS + DAY_MS * 3 // 4, f"late-s{i}", f"late-u{i}")
         for i in range(10)])
    other.commit()
    other.close()
    assert derived.pending_rows(conn) == 10
    derived.rebuild(conn, FIXED_NOW_MS)
    assert derived.pending_rows(conn) == 0
    assert conn.execute("SELECT count(*) FROM rollup_daily_users WHERE user_id LIKE 'late-u%'"
                        ).fetchone()[0] == 10
    assert conn.execute("SELECT events FROM rollup_daily WHERE site_id = 'a' AND day = ?",
                        (cut_day - 1,)).fetchone()[0] == before + 5


@pytest.mark.skipif(not hasattr(derived, "DISTINCT_USERS"), reason="no distinct rollups")
@pytest.mark.parametrize("dim, column", [("user", "user_id"), ("session", "session_id")])
def test_distinct_counts_over_day_ranges_are_exact(conn: sqlite3.Connection, dim: str,
                                                   column: str) -> None:
    events = make_events(500, seed=5)
    random.Random(1).shuffle(events)  # out of time order: prev_day must be moved correctly
    for start in range(0, len(events), 71):
        write(conn, events[start:start + 71])
    first_day, last_day = T0 // DAY_MS, T0 // DAY_MS + 9
    for site in ("a", "b"):
        for lo in range(first_day, last_day + 1, 2):
            for hi in range(lo, last_day + 1, 3):
                expected = conn.execute(
                    f"SELECT count(DISTINCT {column}) FROM events WHERE site_id = ? AND "
                    f"timestamp_ms / {DAY_MS} BETWEEN ? AND ?", (site, lo, hi)).fetchone()[0]
                assert distinct_from_gaps(conn, site, dim, lo, hi) == expected, (site, lo, hi)


def test_deleting_top_rows_does_not_break_catch_up(conn: sqlite3.Connection) -> None:
    write(conn, make_events(20, seed=6))
    conn.execute("DELETE FROM events WHERE rowid = (SELECT max(rowid) FROM events)")
    conn.execute("BEGIN IMMEDIATE")
    assert derived.catch_up(conn, FIXED_NOW_MS) == 0
    conn.execute("COMMIT")
    write(conn, make_events(40, seed=6)[20:])
    assert derived.pending_rows(conn) == 0
