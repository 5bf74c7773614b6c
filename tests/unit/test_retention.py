"""Retention on real SQLite: a hand-built dataset known cell by cell (acquisition and saved
cohorts), week boundaries, unfinished weeks, snapshots, cleanup, drill-down, static cohorts."""

from __future__ import annotations

import json
import sqlite3
from datetime import date

import pytest

from pulse_tui.clock import Clock, parse_instant
from pulse_tui.errors import ValidationError
from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange
from pulse_tui.simulate import write_batch
from pulse_tui.store import cohorts as cohorts_store
from pulse_tui.store import retention
from tests.unit.test_retention_reference import clean_events_before

NOW = parse_instant("2026-11-25T12:00:00Z")  # a Wednesday; the current week began 11-23
CLOCK = Clock(NOW)
SITE = "s1"
N = [None] * 13


def t(text: str) -> int:
    return parse_instant(text)


_n = 0


def ev(user: str | None, when: str, site: str = SITE, etype: str = "view") -> NewEvent:
    global _n
    _n += 1
    return NewEvent(f"e{_n}", site, etype, t(when), f"s{_n}", user)


# user -> event times on SITE; the first one decides the acquisition week
EVENTS: dict[str | None, list[str]] = {
    # week of 2026-10-26: a, b, c, i
    "a": ["2026-10-26T00:00:00Z", "2026-11-02T10:00:00Z", "2026-11-03T09:00:00Z",
          "2026-11-16T00:00:00Z"],
    "b": ["2026-11-01T23:59:59.999Z", "2026-11-02T00:00:00Z"],  # Sunday 23:59:59.999 | Monday
    "c": ["2026-10-28T12:00:00Z", "2026-11-18T08:00:00Z", "2026-11-24T08:00:00Z"],
    "i": ["2026-10-27T10:00:00Z", "2026-11-03T10:00:00Z"],
    # week of 2026-11-02: d, e (Sunday 23:59:59.999), h
    "d": ["2026-11-03T10:00:00Z", "2026-11-10T10:00:00Z", "2026-11-17T10:00:00Z",
          "2026-11-24T10:00:00Z"],
    "e": ["2026-11-08T23:59:59.999Z"],
    "h": ["2026-11-04T12:00:00Z", "2026-11-11T11:00:00Z", "2026-11-18T13:00:00Z"],
    # week of 2026-11-09: nobody new, anonymous traffic only
    None: ["2026-11-10T10:00:00Z", "2026-11-11T10:00:00Z"],
    # current week
    "f": ["2026-11-23T08:00:00Z"],
}

EXPECTED_ACQ = {
    "2026-10-26": (4, [1.0, 3 / 4, 0.0, 2 / 4, *N[4:]]),   # week 4 (current) not ended
    "2026-11-02": (3, [1.0, 2 / 3, 2 / 3, *N[3:]]),
    "2026-11-09": (0, [0.0, 0.0, *N[2:]]),                 # empty cohort
}


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    events = [ev(u, w) for u, times in EVENTS.items() for w in times]
    # another site's traffic never counts for SITE (a returns there in week 2)
    events += [ev("a", "2026-11-10T10:00:00Z", site="other"),
               ev("g", "2026-11-10T10:00:00Z", site="other")]
    write_batch(conn, events, NOW)
    return conn


def acq(conn: sqlite3.Connection, start: str, end: str, now: int = NOW
        ) -> dict[str, tuple[int, list[float | None]]]:
    rows = retention.acquisition_rows(conn, SITE, date.fromisoformat(start),
                                      date.fromisoformat(end), now)
    return {r.label: (r.size, r.rates()) for r in rows}


def add_cohort(conn: sqlite3.Connection, cid: str, members: list[tuple[str | None, str, int]],
               kind: str = "static") -> None:
    """A cohort with (user_id, joined_at, is_active) members, written directly."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, updated_at, kind) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (cid, SITE, f"cohort {cid}", json.dumps({"type": "and", "conditions": []}), NOW, NOW,
         kind))
    conn.executemany(
        "INSERT INTO cohort_members (member_id, cohort_id, session_id, user_id, joined_at, "
        "last_seen_at, is_active) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(f"{cid}-{n}", cid, None if u else "sess-x", u, t(j), t(j), a)
         for n, (u, j, a) in enumerate(members)])
    conn.execute("COMMIT")


X_MEMBERS = [
    ("a", "2026-10-26T00:00:00Z", 1),
    ("b", "2026-11-01T23:59:59.999Z", 1),
    ("h", "2026-11-04T12:00:00Z", 1),     # windows start at noon: days straddle boundaries
    ("i", "2026-10-27T10:00:00Z", 0),     # inactive: not counted
    (None, "2026-10-26T00:00:00Z", 1),    # a member without user_id: counted in size only
]
# week -> (eligible, returning); weeks 4.. have no eligible member yet
EXPECTED_X = {0: (3, 3), 1: (3, 1), 2: (3, 1), 3: (1, 1)}


def saved(conn: sqlite3.Connection, cid: str, now: int = NOW) -> retention.RetentionRow:
    (row,) = retention.saved_cohort_rows(conn, now, cohort_ids=[cid])
    return row


def cells_of(row: retention.RetentionRow) -> dict[int, tuple[int, int]]:
    return {c.week_number: (c.base, c.returning) for c in row.cells if c.returning is not None}


# ---------------------------------------------------------------------------- acquisition
def test_acquisition_grid_cell_by_cell(db: sqlite3.Connection) -> None:
    assert acq(db, "2026-10-26", "2026-11-10") == EXPECTED_ACQ


def test_acquisition_looks_each_user_day_up_by_key(db: sqlite3.Connection) -> None:
    """The user-days find their user's first-seen week through user_first_seen's primary key
    (joined to the materialized cohort users instead, SQLite scanned them once per user-day and
    never finished at 10M events)."""
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    try:
        assert acq(db, "2026-10-26", "2026-11-10") == EXPECTED_ACQ
    finally:
        db.set_trace_callback(None)
    sql = next(q for q in seen if "rollup_daily_users" in q and q.lstrip().startswith("WITH"))
    plan = [r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}")]
    assert any(p.startswith("SEARCH f USING PRIMARY KEY") for p in plan), plan
    assert plan.count("SCAN c") <= 1, plan  # the cohort sizes only, never inside the join


def test_range_selects_weeks_by_monday_and_counts_returns_after_to(
        db: sqlite3.Connection) -> None:
    # Mondays in [10-27, 11-08] -> only 11-02; its week-2 returns (11-16..22) lie after --to
    assert acq(db, "2026-10-27", "2026-11-08") == {"2026-11-02": EXPECTED_ACQ["2026-11-02"]}
    assert acq(db, "2026-10-27", "2026-11-01") == {}  # no Monday in the range


def test_current_week_cohort_and_unfinished_weeks(db: sqlite3.Connection) -> None:
    assert acq(db, "2026-11-23", "2026-11-25") == {"2026-11-23": (1, [1.0, *N[1:]])}
    # one millisecond before week 3 of the first cohort ends it is still unknown
    before = t("2026-11-23T00:00:00Z") - 1
    got = acq(db, "2026-10-26", "2026-10-26", now=before)["2026-10-26"]
    assert got == (4, [1.0, 3 / 4, 0.0, *N[3:]])
    got = acq(db, "2026-10-26", "2026-10-26", now=before + 1)["2026-10-26"]
    assert got[1][3] == 2 / 4


def test_cells_carry_counts_and_dates(db: sqlite3.Connection) -> None:
    (row,) = retention.acquisition_rows(db, SITE, date(2026, 10, 26), date(2026, 10, 26), NOW)
    cell = row.cells[3]
    assert (cell.returning, cell.base) == (2, 4)
    assert (cell.start, cell.last_day) == (date(2026, 11, 16), date(2026, 11, 22))
    assert cell.end_ms == t("2026-11-23T00:00:00Z")
    assert retention.cell_users(db, row, 3, NOW) == ["a", "c"]
    assert retention.cell_users(db, row, 1, NOW) == ["a", "b", "i"]
    assert retention.cell_users(db, row, 0, NOW) == ["a", "b", "c", "i"]
    assert retention.cell_users(db, row, 4, NOW) == []  # not ended


def test_report_rows_and_registry(db: sqlite3.Connection) -> None:
    from pulse_tui.store.reports import REPORTS, run_report

    rng = DateRange(date(2026, 10, 26), date(2026, 11, 10))
    rows = run_report(db, "retention", SITE, rng, now_ms=NOW)
    assert REPORTS["retention"].columns == ("cohort", "size", *(f"week_{k}" for k in range(13)))
    assert rows == [(label, size, *rates) for label, (size, rates) in EXPECTED_ACQ.items()]


def test_cleanup_of_raw_events_keeps_acquisition_retention(db: sqlite3.Connection) -> None:
    add_cohort(db, "Y", [("a", "2026-10-26T00:00:00Z", 1), ("b", "2026-11-01T23:59:59.999Z", 1)])
    before_y = cells_of(saved(db, "Y"))
    assert before_y == {0: (2, 2), 1: (2, 1), 2: (2, 0), 3: (1, 1)}
    clean_events_before(db, t("2026-11-20T00:00:00Z"))
    assert db.execute("SELECT count(*) FROM events WHERE user_id = 'a'").fetchone()[0] == 0
    assert acq(db, "2026-10-26", "2026-11-10") == EXPECTED_ACQ
    # windows aligned to whole days (or decided by whole days) stay exact from the rollups
    assert cells_of(saved(db, "Y")) == before_y


# ---------------------------------------------------------------------------- saved cohorts
def test_saved_cohort_windows_relative_to_joined_at(db: sqlite3.Connection) -> None:
    add_cohort(db, "X", X_MEMBERS)
    row = saved(db, "X")
    assert row.size == 4  # active member rows
    assert cells_of(row) == EXPECTED_X
    assert row.cells[2].complete and not row.cells[3].complete
    # h returned only on days that straddle its window-1 boundaries, outside window 1
    assert retention.saved_cell_users(db, "X", 1, NOW) == ["a"]
    assert retention.saved_cell_users(db, "X", 2, NOW) == ["h"]
    assert retention.saved_cell_users(db, "X", 0, NOW) == ["a", "b", "h"]
    # window span dates: earliest member's start .. latest member's end
    assert row.cells[0].start_ms == t("2026-10-26T00:00:00Z")
    assert row.cells[0].end_ms == t("2026-11-11T12:00:00Z")


def test_window_end_is_exclusive(db: sqlite3.Connection) -> None:
    add_cohort(db, "X", X_MEMBERS)
    # h's window 2 ends exactly at NOW: eligible at NOW, not a millisecond before
    assert cells_of(saved(db, "X", NOW - 1))[2] == (2, 0)
    assert cells_of(saved(db, "X", NOW))[2] == (3, 1)


def test_snapshots_written_replaced_and_equal_to_the_grid(db: sqlite3.Connection) -> None:
    add_cohort(db, "X", X_MEMBERS)
    assert retention.snapshot_cohort(db, "X", CLOCK) == 4
    rows = db.execute(
        "SELECT snapshot_id, week_number, cohort_size, eligible, returning_users, "
        "retention_rate, captured_at FROM cohort_retention_snapshots WHERE cohort_id = 'X' "
        "ORDER BY week_number").fetchall()
    assert [(k, size, e, r, rate) for _, k, size, e, r, rate, _ in rows] == [
        (k, 4, e, r, r / e) for k, (e, r) in EXPECTED_X.items()]
    assert all(at == NOW for *_, at in rows)
    ids = [r[0] for r in rows]
    # membership changes (h leaves, d joins): recompute replaces rows, same snapshot ids
    db.execute("UPDATE cohort_members SET is_active = 0 WHERE cohort_id = 'X' AND user_id = 'h'")
    db.execute("INSERT INTO cohort_members VALUES ('X-d', 'X', NULL, 'd', ?, ?, 1)",
               (t("2026-11-03T10:00:00Z"), NOW))
    later = Clock(NOW + 1000)
    retention.snapshot_cohort(db, "X", later)
    rows2 = db.execute(
        "SELECT snapshot_id, week_number, cohort_size, eligible, returning_users, captured_at "
        "FROM cohort_retention_snapshots WHERE cohort_id = 'X' ORDER BY week_number").fetchall()
    assert [r[0] for r in rows2] == ids
    assert all(r[5] == NOW + 1000 for r in rows2)
    stored = retention.read_cohort_snapshots(db, SITE)
    assert [r.key for r in stored] == ["X"]
    assert stored[0].rates() == saved(db, "X", NOW + 1000).rates()
    assert stored[0].size == 4 and stored[0].captured_at == NOW + 1000
    # d (joined 11-03 10:00) returned exactly at 11-10 10:00 (window 1 starts) and 11-17 10:00
    # (window 2 starts; it ended 11-24 10:00): a, b, d eligible in weeks 0..2
    assert cells_of(stored[0]) == {0: (3, 3), 1: (3, 2), 2: (3, 1), 3: (1, 1)}


def test_rows_only_once_eligible_and_stale_weeks_removed(db: sqlite3.Connection) -> None:
    add_cohort(db, "Z", [("f", "2026-11-23T08:00:00Z", 1)])
    assert retention.snapshot_cohort(db, "Z", CLOCK) == 0  # no window has ended
    add_cohort(db, "W", [("a", "2026-10-26T00:00:00Z", 1)])
    assert retention.snapshot_cohort(db, "W", CLOCK) == 4
    db.execute("UPDATE cohort_members SET joined_at = ? WHERE cohort_id = 'W'",
               (t("2026-11-16T00:00:00Z"),))
    retention.snapshot_cohort(db, "W", CLOCK)
    assert db.execute("SELECT week_number, eligible, returning_users FROM "
                      "cohort_retention_snapshots WHERE cohort_id = 'W'").fetchall() == [(0, 1, 1)]


def test_membership_change_hook_keeps_snapshots_current(
        db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cohorts_store, "MEMBERSHIP_CHANGED_HOOKS",
                        [retention.on_membership_changed])
    cohort = cohorts_store.create_cohort(
        db, CLOCK, site_id=SITE, name="buyers",
        criteria={"type": "and", "conditions": [
            {"property": "event_type", "operator": "equals", "value": "purchase"}]})
    assert db.execute("SELECT count(*) FROM cohort_retention_snapshots").fetchone()[0] == 0
    write_batch(db, [ev("a", "2026-10-30T00:00:00Z", etype="purchase")], NOW)
    cohorts_store.refresh_cohort(db, CLOCK, cohort.cohort_id)
    stored = retention.read_cohort_snapshots(db, SITE)
    live = saved(db, cohort.cohort_id)
    assert [r.key for r in stored] == [cohort.cohort_id]
    assert stored[0].rates() == live.rates() and stored[0].size == live.size == 1
    assert cells_of(live) == {0: (1, 1), 1: (1, 1), 2: (1, 0), 3: (1, 1)}


# ---------------------------------------------------------------------------- snapshots & grid
def test_snapshot_all_and_load_grid(db: sqlite3.Connection) -> None:
    add_cohort(db, "X", X_MEMBERS)
    empty = retention.load_grid(db, SITE, date(2026, 10, 26), date(2026, 11, 10))
    assert empty.captured_at is None and all(r.size == 0 for r in empty.acquisition)
    text = retention.snapshot_all(db, CLOCK)
    assert "1 cohort(s)" in text and "2 site(s)" in text
    g = retention.load_grid(db, SITE, date(2026, 10, 26), date(2026, 11, 10))
    assert {r.label: (r.size, r.rates()) for r in g.acquisition} == EXPECTED_ACQ
    assert g.captured_at == NOW
    live = retention.compute_grid(db, SITE, date(2026, 10, 26), date(2026, 11, 10), NOW)
    assert [r.rates() for r in g.rows] == [r.rates() for r in live.rows]
    assert [r.key for r in g.cohorts] == ["X"]
    current = retention.refresh_site(db, SITE, CLOCK, date(2026, 11, 23), date(2026, 11, 25))
    assert [(r.label, r.size, r.rates()) for r in current.acquisition] == [
        ("2026-11-23", 1, [1.0, *N[1:]])]


# ---------------------------------------------------------------------------- static cohorts
def test_save_cell_as_static_cohort(db: sqlite3.Connection) -> None:
    (row,) = retention.acquisition_rows(db, SITE, date(2026, 10, 26), date(2026, 10, 26), NOW)
    users = retention.cell_users(db, row, 3, NOW)
    cid = cohorts_store.create_static_cohort(db, SITE, "returned in week 3", users, NOW)
    c = cohorts_store.get_cohort(db, cid)
    assert (c.kind, c.site_id, c.name, c.status) == ("static", SITE, "returned in week 3",
                                                     "active")
    assert json.loads(c.criteria_text) == {"type": "and", "conditions": []}
    members = db.execute("SELECT member_id, user_id, joined_at, is_active FROM cohort_members "
                         "WHERE cohort_id = ? ORDER BY user_id", (cid,)).fetchall()
    assert members == [
        (cohorts_store.member_id(cid, "a"), "a", t("2026-10-26T00:00:00Z"), 1),
        (cohorts_store.member_id(cid, "c"), "c", t("2026-10-28T12:00:00Z"), 1)]
    with pytest.raises(ValidationError):
        cohorts_store.create_static_cohort(db, SITE, "  ", users, NOW)
    with pytest.raises(ValidationError):
        cohorts_store.create_static_cohort(db, "nope", "x", users, NOW)


# ------------------------------------------------------------------ other programs' member rows
@pytest.mark.parametrize("user, joined", [
    ("z", "yesterday"), ("z", b"\x00\x01"), ("z", 2**63 - 1), ("z", 1.5e300),
    (b"z", None), ("", None),
], ids=["text-time", "blob-time", "huge-time", "real-time", "blob-user", "empty-user"])
def test_foreign_member_rows_of_wrong_type_leave_retention_exact(
        db: sqlite3.Connection, user: object, joined: object) -> None:
    """A cohort_members row another program wrote with a wrong type (joined_at text, a BLOB,
    2^63-1; user_id not text) is left out of saved-cohort retention: every cohort's rows are
    what they are without it, and the snapshot job does not fail."""
    add_cohort(db, "X", X_MEMBERS)
    add_cohort(db, "Y", X_MEMBERS[:2])
    reference = retention.saved_cohort_rows(db, NOW, site_id=SITE)
    db.execute(
        "INSERT INTO cohort_members (member_id, cohort_id, user_id, joined_at, last_seen_at, "
        "is_active) VALUES ('bad', 'Y', ?, ?, ?, 1)",
        (user, t("2026-11-02T00:00:00Z") if joined is None else joined,
         t("2026-11-02T00:00:00Z")))
    rows = retention.saved_cohort_rows(db, NOW, site_id=SITE)
    assert [[c.rate for c in r.cells] for r in rows] == [
        [c.rate for c in r.cells] for r in reference]
    assert "1 cohort(s)" not in retention.snapshot_all(db, CLOCK)  # both cohorts, no error
    assert db.execute("SELECT count(DISTINCT cohort_id) FROM cohort_retention_snapshots"
                      ).fetchone()[0] == 2
    read = retention.read_cohort_snapshots(db, SITE)
    assert [r.key for r in read] == ["X", "Y"]
