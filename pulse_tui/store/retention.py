"""Weekly retention: acquisition and saved-cohort grids, their snapshots, cell drill-down.

Definitions (SPEC 8/9). All days and weeks are UTC.

*Acquisition cohorts*: users grouped by the ISO week (Monday start) of their first event on the
site (``user_first_seen``, which cleanup never touches). ``week_k`` counts the cohort's users with
an event in the k-th calendar week after it (``rollup_daily_users``: distinct users per UTC day,
kept for ``rollup_retention_days``, so raw-event cleanup does not change the grid). A range
selects the weeks whose Monday lies in [from, to]; returns after --to count. A week that has not
ended (relative to the clock) is None, except ``week_0``, which is 1.0 whenever size > 0 (every
member had an event in it by definition). An empty week (size 0) has 0.0 in ended weeks.

*Saved cohorts*: active ``cohort_members`` rows with a user_id (distinct users, earliest
``joined_at`` when a user has two rows). Window k is ``[joined_at + 7k days, joined_at +
7(k+1) days)``; ``eligible`` = members whose window k has ended, ``returning_users`` = those of
them with an event of the cohort's site in it, rate = returning / eligible; ``cohort_size`` =
active member rows. A snapshot row is written once eligible > 0.

Exactness vs rollups for saved cohorts: windows start at ``joined_at`` (any millisecond), so
they do not align with UTC days. A UTC day lying wholly inside a window is decided from
``rollup_daily_users`` alone; a day that straddles a window boundary is split exactly with the
raw events of that user and day (each such user's events are read once) whenever they are
complete, i.e. their count equals the rollup's ``events`` for that user-day (cleanup deletes by
event time, so old days lose their raw rows). Only for a straddling day whose raw events are gone does the day count
for the window holding the larger part of it (ties: the later one) — the sole approximation,
limited to windows older than the raw-event retention whose only activity was on a boundary day.
Members whose joined_at is midnight UTC never straddle, so their retention is exact forever.
One set-based statement per grid: the rollup user-days of the members' span are scanned once
(for all cohorts of the site) and joined to the members.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from pulse_tui.backend.interface import OutsideEvents
from pulse_tui.clock import DAY_MS, WEEK_MS, Clock
from pulse_tui.models import (
    _EPOCH,
    ACQUISITION,
    SAVED,
    WEEKS,
    RetentionCell,
    RetentionGrid,
    RetentionRow,
    _day_date,
)
from pulse_tui.store import derived
from pulse_tui.store.tx import write_transaction as _write

log = logging.getLogger(__name__)

SNAPSHOT_WEEKS = 26  # acquisition weeks (ending with the current one) kept in snapshots



# ---------------------------------------------------------------------------- dataclasses
# ---------------------------------------------------------------------------- week helpers
def _day_number(d: date) -> int:
    return (d - _EPOCH).days


def week_index(day: int) -> int:
    """ISO week number since the epoch (Monday start) of a UTC day number (1970-01-01 = 0)."""
    return (day + 3) // 7


def monday_day(week: int) -> int:
    return 7 * week - 3


def monday_of(d: date) -> date:
    return d - timedelta(days=d.weekday())


def weeks_in_range(start: date, end: date) -> list[int]:
    """Week indexes whose Monday lies in [start, end]."""
    lo = (_day_number(start) + 3 + 6) // 7
    hi = (_day_number(end) + 3) // 7
    return list(range(lo, hi + 1))


# ---------------------------------------------------------------------------- acquisition
# c: the cohort users (first seen in the weeks asked for); each user-day of the range is then
# matched to its user's first-seen week. The user-days look their user up in user_first_seen by
# its primary key: joined to the materialized c instead, SQLite scanned c once per user-day
# (no automatic index: 60,000 users times 370,000 user-days at 10M events never finished).
def _week_of(alias: str = "") -> str:
    return f"({alias}first_seen_ms / {DAY_MS} + 3) / 7"


_ACQ_SQL = f"""
WITH c(user_id, w) AS MATERIALIZED (
  SELECT user_id, {_week_of()} FROM user_first_seen
  WHERE site_id = :site AND first_seen_ms >= :fs_lo AND first_seen_ms < :fs_hi
)
SELECT w, -1, count(*) FROM c GROUP BY w
UNION ALL
SELECT w, k, count(DISTINCT user_id) FROM (
  SELECT {_week_of('f.')} AS w, (r.day + 3) / 7 - {_week_of('f.')} AS k, r.user_id AS user_id
  FROM rollup_daily_users r CROSS JOIN user_first_seen f
    ON f.site_id = r.site_id AND f.user_id = r.user_id
  WHERE r.site_id = :site AND r.day BETWEEN :day_lo AND :day_hi
    AND f.first_seen_ms >= :fs_lo AND f.first_seen_ms < :fs_hi
)
WHERE k BETWEEN 1 AND {WEEKS - 1}
GROUP BY w, k
"""


# rows other programs inserted that could not be folded yet (read-only file, lock held): the
# same query over first-seen times and user-days that include them, read from the raw events
_UNFOLDED = f"events WHERE rowid > :hwm AND {derived.VALID_EVENT} AND site_id = :site AND user_id IS NOT NULL"
_FIRST_SEEN_UNFOLDED = (
    "(SELECT site_id, user_id, min(first_seen_ms) AS first_seen_ms FROM (SELECT site_id, "
    "user_id, first_seen_ms FROM user_first_seen WHERE site_id = :site UNION ALL SELECT "
    f"site_id, user_id, timestamp_ms FROM {_UNFOLDED}) GROUP BY site_id, user_id)")
_ACQ_SQL_UNFOLDED = (
    _ACQ_SQL
    .replace("FROM user_first_seen\n", f"FROM {_FIRST_SEEN_UNFOLDED}\n")
    .replace("CROSS JOIN user_first_seen f", f"CROSS JOIN {_FIRST_SEEN_UNFOLDED} f")
    .replace("FROM rollup_daily_users r", "FROM (SELECT site_id, day, user_id FROM "
             "rollup_daily_users WHERE site_id = :site UNION SELECT site_id, timestamp_ms / "
             f"{DAY_MS}, user_id FROM {_UNFOLDED}) r")
)


def acquisition_rows(conn: sqlite3.Connection, site_id: str, start: date, end: date,
                     now_ms: int, *, events: OutsideEvents | None = None) -> list[RetentionRow]:
    """Weekly acquisition cohorts whose Monday lies in [start, end], oldest first (SPEC 8/9).
    Rows other programs inserted count also when they cannot be folded (read around)."""
    unfolded = derived.fold_pending(conn)  # first-seen times and user-days: others' rows too
    weeks = weeks_in_range(start, end)
    if not weeks:
        return []
    counts: dict[tuple[int, int], int] = {}
    params = {
        "site": site_id,
        "fs_lo": monday_day(weeks[0]) * DAY_MS,
        "fs_hi": (monday_day(weeks[-1]) + 7) * DAY_MS,
        "day_lo": monday_day(weeks[0]) + 7,
        "day_hi": min(monday_day(weeks[-1]) + 7 * WEEKS - 1, now_ms // DAY_MS),
    }
    sql = _ACQ_SQL
    if unfolded:
        sql = _ACQ_SQL_UNFOLDED
        params["hwm"] = derived.high_water_mark(conn)
    # ``events``: the events backend when the events are not in this file (the same counts)
    found = (events.acquisition_counts(params, WEEKS) if events is not None
             else conn.execute(sql, params))
    for w, k, n in found:
        counts[(w, k)] = n
    rows = []
    for w in weeks:
        size = counts.get((w, -1), 0)
        cells = []
        for k in range(WEEKS):
            lo = (monday_day(w) + 7 * k) * DAY_MS
            hi = lo + WEEK_MS
            if k == 0 and size > 0:
                returning: int | None = size
            elif hi <= now_ms:
                returning = counts.get((w, k), 0)
            else:
                returning = None
            cells.append(RetentionCell(k, lo, hi, returning, size))
        label = _day_date(monday_day(w)).isoformat()
        rows.append(RetentionRow(ACQUISITION, label, label, site_id, size, tuple(cells)))
    return rows


def acquisition_cell_users(conn: sqlite3.Connection, site_id: str, cohort_week: date | str,
                           week_number: int, *, events: OutsideEvents | None = None) -> list[str]:
    """User ids of one acquisition cell (cohort week's Monday, k): cohort users with an event in
    week k (k = 0: every cohort user), sorted."""
    derived.fold_pending(conn)
    monday = date.fromisoformat(cohort_week) if isinstance(cohort_week, str) else cohort_week
    first = _day_number(monday_of(monday))
    fs = (first * DAY_MS, (first + 7) * DAY_MS)
    if events is not None:
        return events.acquisition_cell_users(site_id, fs, week_number)
    if week_number == 0:
        sql = ("SELECT user_id FROM user_first_seen WHERE site_id = ? AND first_seen_ms >= ? "
               "AND first_seen_ms < ? ORDER BY user_id")
        return [r[0] for r in conn.execute(sql, (site_id, *fs))]
    day = first + 7 * week_number
    sql = ("SELECT DISTINCT r.user_id FROM rollup_daily_users r JOIN user_first_seen f "
           "ON f.site_id = r.site_id AND f.user_id = r.user_id WHERE r.site_id = ? "
           "AND r.day BETWEEN ? AND ? AND f.first_seen_ms >= ? AND f.first_seen_ms < ? "
           "ORDER BY r.user_id")
    return [r[0] for r in conn.execute(sql, (site_id, day, day + 6, *fs))]


# ---------------------------------------------------------------------------- saved cohorts
# m: members (cohort, user, joined_at); r: the rollup user-days touching some window of the
# member, with kb = the window holding the day's last millisecond and b = that window's start.
# A day with b <= day start lies wholly inside window kb; otherwise b splits it between windows
# kb-1 and kb (s: decided by the raw events when all n of them remain, else by the larger part).
_SAVED_CTES = f"""
m(cohort_id, user_id, j) AS MATERIALIZED (
  SELECT cm.cohort_id, cm.user_id, min(cm.joined_at) FROM cohort_members cm
  WHERE cm.cohort_id IN (SELECT value FROM json_each(:cohorts)) AND cm.is_active = 1
    AND {derived.valid_member_sql("cm")}
  GROUP BY cm.cohort_id, cm.user_id
),
r(cohort_id, user_id, j, ds, n, kb, b) AS MATERIALIZED (
  SELECT cohort_id, user_id, j, ds, n, kb, j + kb * {WEEK_MS} FROM (
    SELECT m.cohort_id, m.user_id, m.j, d.day * {DAY_MS} AS ds, d.events AS n,
           ((d.day + 1) * {DAY_MS} - 1 - m.j) / {WEEK_MS} AS kb
    FROM rollup_daily_users d CROSS JOIN m ON m.user_id = d.user_id
    WHERE d.site_id = :site AND d.day BETWEEN :day_lo AND :day_hi
      AND (d.day + 1) * {DAY_MS} > m.j AND d.day * {DAY_MS} < m.j + {WEEKS * WEEK_MS}
  )
),
s0(cohort_id, user_id, j, kb, ds, b, n) AS MATERIALIZED (
  SELECT cohort_id, user_id, j, kb, ds, b, n FROM r WHERE b > ds
),
raw(cohort_id, user_id, ds, raw, pre) AS MATERIALIZED (
  SELECT s0.cohort_id, s0.user_id, s0.ds, count(*), sum(e.timestamp_ms < s0.b)
  FROM (SELECT DISTINCT user_id FROM s0) su
  CROSS JOIN events e ON e.site_id = :site AND e.user_id = su.user_id
  CROSS JOIN s0 ON s0.user_id = e.user_id
    AND s0.ds = e.timestamp_ms - e.timestamp_ms % {DAY_MS}
  GROUP BY s0.cohort_id, s0.user_id, s0.ds
),
s(cohort_id, user_id, j, kb, ds, b, n, raw, pre) AS (
  SELECT s0.cohort_id, s0.user_id, s0.j, s0.kb, s0.ds, s0.b, s0.n, coalesce(raw.raw, 0),
         coalesce(raw.pre, 0)
  FROM s0 LEFT JOIN raw ON raw.cohort_id = s0.cohort_id AND raw.user_id = s0.user_id
    AND raw.ds = s0.ds
),
hits(cohort_id, user_id, j, k) AS (
  SELECT cohort_id, user_id, j, kb FROM r WHERE b <= ds AND kb < {WEEKS}
  UNION ALL
  SELECT cohort_id, user_id, j, kb - 1 FROM s WHERE kb >= 1 AND CASE
    WHEN raw = n THEN pre > 0 ELSE (b - ds) * 2 > {DAY_MS} END
  UNION ALL
  SELECT cohort_id, user_id, j, kb FROM s WHERE kb < {WEEKS} AND CASE
    WHEN raw = n THEN raw > pre ELSE (b - ds) * 2 <= {DAY_MS} END
)
"""

_SAVED_SQL = f"""
WITH {_SAVED_CTES},
ks(k) AS (SELECT value FROM generate_series(0, {WEEKS - 1}))
SELECT 'r', cohort_id, k, count(DISTINCT user_id) FROM hits
WHERE j + (k + 1) * {WEEK_MS} <= :now GROUP BY cohort_id, k
UNION ALL
SELECT 'e', m.cohort_id, ks.k, count(*) FROM m CROSS JOIN ks
WHERE m.j + (ks.k + 1) * {WEEK_MS} <= :now GROUP BY m.cohort_id, ks.k
UNION ALL
SELECT 'j', cohort_id, min(j), max(j) FROM m GROUP BY cohort_id
UNION ALL
SELECT 'n', cohort_id, count(*), 0 FROM m GROUP BY cohort_id
"""

_CELL_SQL = f"""
WITH {_SAVED_CTES}
SELECT DISTINCT user_id FROM hits
WHERE k = :k AND j + (k + 1) * {WEEK_MS} <= :now ORDER BY user_id
"""


def _has_generate_series(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT value FROM generate_series(0, 0)").fetchall()
        return True
    except sqlite3.OperationalError:
        return False


def _saved_sql(conn: sqlite3.Connection) -> str:
    if _has_generate_series(conn):
        return _SAVED_SQL
    # builds without the series extension: a literal VALUES list
    values = ", ".join(f"({k})" for k in range(WEEKS))
    return _SAVED_SQL.replace(f"SELECT value FROM generate_series(0, {WEEKS - 1})",
                              f"VALUES {values}")


def _cohort_info(conn: sqlite3.Connection, cohort_ids: Sequence[str] | None,
                 site_id: str | None, include_archived: bool
                 ) -> list[tuple[str, str, str, int]]:
    """(cohort_id, site_id, name, active member rows) of the chosen cohorts, by name."""
    sql = ("SELECT c.cohort_id, c.site_id, c.name, (SELECT count(*) FROM cohort_members cm "
           "WHERE cm.cohort_id = c.cohort_id AND cm.is_active = 1) FROM cohorts c WHERE 1")
    params: list[object] = []
    if cohort_ids is not None:
        sql += " AND c.cohort_id IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(list(cohort_ids)))
    if site_id is not None:
        sql += " AND c.site_id = ?"
        params.append(site_id)
    if not include_archived:
        sql += " AND coalesce(c.status, 'active') <> 'archived'"
    sql += " ORDER BY c.name, c.cohort_id"
    return [tuple(r) for r in conn.execute(sql, params)]  # type: ignore[misc]


def _span(conn: sqlite3.Connection, cohort_ids: list[str]) -> tuple[int, int] | None:
    row = conn.execute(
        "SELECT min(joined_at), max(joined_at) FROM cohort_members WHERE cohort_id IN "
        f"(SELECT value FROM json_each(?)) AND is_active = 1 AND {derived.valid_member_sql()}",
        (json.dumps(cohort_ids),)).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])


def saved_cohort_rows(conn: sqlite3.Connection, now_ms: int, *, site_id: str | None = None,
                      cohort_ids: Sequence[str] | None = None,
                      include_archived: bool = False, events: OutsideEvents | None = None
                      ) -> list[RetentionRow]:
    """Retention rows of saved cohorts (of a site, or the given ids), by name then id.

    One statement per site: the site's rollup user-days over the members' span are scanned once
    for all its cohorts.
    """
    derived.fold_pending(conn)
    info = _cohort_info(conn, cohort_ids, site_id, include_archived)
    by_site: dict[str, list[str]] = {}
    for cid, site, _, _ in info:
        by_site.setdefault(site, []).append(cid)
    returning: dict[tuple[str, int], int] = {}
    eligible: dict[tuple[str, int], int] = {}
    joined: dict[str, tuple[int, int]] = {}
    users: dict[str, int] = {}
    sql = _saved_sql(conn)
    for site, ids in by_site.items():
        span = _span(conn, ids)
        if span is None:
            continue
        params = {
            "cohorts": json.dumps(ids), "site": site, "now": now_ms,
            "day_lo": span[0] // DAY_MS,
            "day_hi": min((span[1] + WEEKS * WEEK_MS) // DAY_MS, now_ms // DAY_MS),
        }
        found = (events.saved_retention(site, _members(conn, ids), now_ms, WEEKS)
                 if events is not None else conn.execute(sql, params))
        for tag, cid, a, b in found:
            if tag == "r":
                returning[(cid, a)] = b
            elif tag == "e":
                eligible[(cid, a)] = b
            elif tag == "j":
                joined[cid] = (a, b)
            else:
                users[cid] = a
    rows = []
    for cid, site, name, active in info:
        lo, hi = joined.get(cid, (now_ms, now_ms))
        cells = []
        for k in range(WEEKS):
            n = eligible.get((cid, k), 0)
            cells.append(RetentionCell(
                k, lo + k * WEEK_MS, hi + (k + 1) * WEEK_MS,
                returning.get((cid, k), 0) if n else None, n,
                complete=n > 0 and n == users.get(cid, 0)))
        rows.append(RetentionRow(SAVED, cid, name, site, active, tuple(cells)))
    return rows


def saved_cell_users(conn: sqlite3.Connection, cohort_id: str, week_number: int,
                     now_ms: int, *, events: OutsideEvents | None = None) -> list[str]:
    """User ids of one saved-cohort cell: eligible members who returned in window k, sorted."""
    derived.fold_pending(conn)
    info = _cohort_info(conn, [cohort_id], None, True)
    if not info or not 0 <= week_number < WEEKS:
        return []
    site = info[0][1]
    span = _span(conn, [cohort_id])
    if span is None:
        return []
    params = {
        "cohorts": json.dumps([cohort_id]), "site": site, "now": now_ms, "k": week_number,
        "day_lo": span[0] // DAY_MS,
        "day_hi": min((span[1] + WEEKS * WEEK_MS) // DAY_MS, now_ms // DAY_MS),
    }
    if events is not None:
        return events.saved_cell_users(site, _members(conn, [cohort_id]), now_ms,
                                       week_number, WEEKS)
    return [r[0] for r in conn.execute(_CELL_SQL, params)]


def _members(conn: sqlite3.Connection, cohort_ids: list[str]) -> list[tuple[str, str, int]]:
    """(cohort_id, user_id, joined_at) of the active members (the ``m`` of _SAVED_CTES)."""
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT cohort_id, user_id, min(joined_at) FROM cohort_members WHERE cohort_id IN "
        "(SELECT value FROM json_each(?)) AND is_active = 1 AND user_id IS NOT NULL "
        "GROUP BY cohort_id, user_id", (json.dumps(cohort_ids),))]


def cell_users(conn: sqlite3.Connection, row: RetentionRow, week_number: int,
               now_ms: int, *, events: OutsideEvents | None = None) -> list[str]:
    """User ids behind a grid cell (either kind of row), sorted; [] where nothing ended."""
    if row.kind == ACQUISITION:
        if week_number > 0 and row.cells[week_number].returning is None:
            return []
        return acquisition_cell_users(conn, row.site_id, row.key, week_number, events=events)
    return saved_cell_users(conn, row.key, week_number, now_ms, events=events)


# ---------------------------------------------------------------------------- the grid
def compute_grid(conn: sqlite3.Connection, site_id: str, start: date, end: date,
                 now_ms: int, *, events: OutsideEvents | None = None) -> RetentionGrid:
    """Live grid (no snapshots): acquisition weeks of [start, end] and the site's saved cohorts
    (archived ones left out)."""
    return RetentionGrid(site_id, start, end,
                         tuple(acquisition_rows(conn, site_id, start, end, now_ms,
                                                events=events)),
                         tuple(saved_cohort_rows(conn, now_ms, site_id=site_id, events=events)),
                         None)


def load_grid(conn: sqlite3.Connection, site_id: str, start: date, end: date
              ) -> RetentionGrid:
    """The grid from snapshots (what the pane shows first): acquisition weeks of [start, end]
    and the site's saved cohorts. Weeks or cohorts never snapshotted have size 0 and None cells
    with ``captured_at`` None; call :func:`refresh_site` to recompute."""
    acq = read_acquisition_snapshots(conn, site_id, start, end)
    saved = read_cohort_snapshots(conn, site_id)
    stamps = [r.captured_at for r in (*acq, *saved) if r.captured_at is not None]
    return RetentionGrid(site_id, start, end, tuple(acq), tuple(saved),
                         min(stamps) if stamps else None)


def refresh_site(conn: sqlite3.Connection, site_id: str, clock: Clock, start: date,
                 end: date, *, events: OutsideEvents | None = None) -> RetentionGrid:
    """Recompute on demand: snapshot the site's cohorts and the acquisition weeks of
    [start, end], then return the grid as stored."""
    now = clock.now_ms()
    snapshot_acquisition(conn, site_id, now, start, end, events=events)
    ids = [r[0] for r in _cohort_info(conn, None, site_id, False)]
    snapshot_cohorts(conn, clock, ids, events=events)
    return load_grid(conn, site_id, start, end)


# ---------------------------------------------------------------------------- snapshots
def _ensure_tables(conn: sqlite3.Connection) -> None:
    """Files created before the retention table was added to schema v1 (unreleased) get it."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'acquisition_retention'"
                    ).fetchone():
        return
    from pulse_tui.store.connection import _statements, schema_sql

    for stmt in _statements(schema_sql()):
        if "acquisition_retention" in stmt:
            conn.execute(stmt)


def snapshot_id(cohort_id: str, week_number: int) -> str:
    """Stable id of a cohort's week row (the same row is replaced on recompute)."""
    return f"{cohort_id}:{week_number}"


def snapshot_cohorts(conn: sqlite3.Connection, clock: Clock, cohort_ids: Iterable[str], *,
                     events: OutsideEvents | None = None) -> int:
    """Recompute and store the retention rows of these cohorts; returns rows written.

    Computed without the write lock, then written in one short transaction per call: one row
    per week with eligible > 0 (replaced in place: same snapshot_id), stale weeks removed.
    """
    ids = list(dict.fromkeys(cohort_ids))
    if not ids:
        return 0
    now = clock.now_ms()
    rows = saved_cohort_rows(conn, now, cohort_ids=ids, include_archived=True, events=events)
    written = 0
    with _write(conn):
        present = {r[0] for r in conn.execute(
            "SELECT cohort_id FROM cohorts WHERE cohort_id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),))}
        for row in rows:
            if row.key not in present:  # deleted meanwhile
                continue
            keep = [c for c in row.cells if c.returning is not None and c.base > 0]
            conn.execute(
                "DELETE FROM cohort_retention_snapshots WHERE cohort_id = ? AND week_number NOT "
                "IN (SELECT value FROM json_each(?))",
                (row.key, json.dumps([c.week_number for c in keep])))
            conn.executemany(
                """
                INSERT INTO cohort_retention_snapshots (snapshot_id, cohort_id, site_id,
                  week_number, cohort_size, returning_users, retention_rate, captured_at,
                  eligible)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(cohort_id, week_number) DO UPDATE SET
                  site_id = excluded.site_id, cohort_size = excluded.cohort_size,
                  returning_users = excluded.returning_users,
                  retention_rate = excluded.retention_rate,
                  captured_at = excluded.captured_at, eligible = excluded.eligible
                """,
                [(snapshot_id(row.key, c.week_number), row.key, row.site_id, c.week_number,
                  row.size, c.returning, c.rate, now, c.base) for c in keep])
            written += len(keep)
    return written


def snapshot_cohort(conn: sqlite3.Connection, cohort_id: str, clock: Clock, *,
                    events: OutsideEvents | None = None) -> int:
    """Recompute and store one cohort's retention rows; returns rows written."""
    return snapshot_cohorts(conn, clock, [cohort_id], events=events)


def snapshot_acquisition(conn: sqlite3.Connection, site_id: str, now_ms: int,
                         start: date | None = None, end: date | None = None, *,
                         events: OutsideEvents | None = None) -> int:
    """Store the acquisition weeks of [start, end] (default: the last SNAPSHOT_WEEKS weeks up
    to today): week 0 always, week k once ended. Replaces those weeks' rows; returns rows."""
    today = _day_date(now_ms // DAY_MS)
    end = end or today
    start = start or monday_of(today) - timedelta(weeks=SNAPSHOT_WEEKS - 1)
    rows = acquisition_rows(conn, site_id, start, end, now_ms, events=events)
    if not rows:
        return 0
    values = [(site_id, r.key, c.week_number, r.size, c.returning, now_ms)
              for r in rows for c in r.cells
              if c.returning is not None or c.week_number == 0]
    _ensure_tables(conn)
    with _write(conn):
        conn.execute(
            "DELETE FROM acquisition_retention WHERE site_id = ? AND cohort_week BETWEEN ? AND ?",
            (site_id, rows[0].key, rows[-1].key))
        conn.executemany(
            "INSERT INTO acquisition_retention (site_id, cohort_week, week_number, size, "
            "returning_users, captured_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(s, w, k, n, 0 if ret is None else ret, t) for s, w, k, n, ret, t in values])
    return len(values)


def read_acquisition_snapshots(conn: sqlite3.Connection, site_id: str, start: date,
                               end: date) -> list[RetentionRow]:
    """Acquisition rows of [start, end] as last snapshotted (weeks missing from the snapshot:
    size 0, None cells, captured_at None)."""
    weeks = weeks_in_range(start, end)
    if not weeks:
        return []
    labels = [_day_date(monday_day(w)).isoformat() for w in weeks]
    stored: dict[tuple[str, int], tuple[int, int, int]] = {}
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'acquisition_retention'"
                    ).fetchone():
        for wk, k, size, ret, at in conn.execute(
                "SELECT cohort_week, week_number, size, returning_users, captured_at "
                "FROM acquisition_retention WHERE site_id = ? AND cohort_week BETWEEN ? AND ?",
                (site_id, labels[0], labels[-1])):
            stored[(wk, k)] = (size, ret, at)
    rows = []
    for w, label in zip(weeks, labels, strict=True):
        head = stored.get((label, 0))
        size = head[0] if head else 0
        cells = []
        for k in range(WEEKS):
            lo = (monday_day(w) + 7 * k) * DAY_MS
            got = stored.get((label, k))
            if k == 0 and got is not None and size == 0 and lo + WEEK_MS > got[2]:
                got = None  # an empty week still running when captured
            cells.append(RetentionCell(k, lo, lo + WEEK_MS, got[1] if got else None, size))
        rows.append(RetentionRow(ACQUISITION, label, label, site_id, size, tuple(cells),
                                 head[2] if head else None))
    return rows


def read_cohort_snapshots(conn: sqlite3.Connection, site_id: str, *,
                          include_archived: bool = False) -> list[RetentionRow]:
    """Saved-cohort rows of the site from cohort_retention_snapshots, by name then id (a cohort
    without snapshot rows has None cells and captured_at None)."""
    info = _cohort_info(conn, None, site_id, include_archived)
    stored: dict[str, dict[int, tuple[int, int, int, int]]] = {}
    for cid, k, size, ret, elig, at in conn.execute(
            "SELECT s.cohort_id, s.week_number, s.cohort_size, s.returning_users, s.eligible, "
            "s.captured_at FROM cohort_retention_snapshots s JOIN cohorts c "
            "ON c.cohort_id = s.cohort_id WHERE c.site_id = ?", (site_id,)):
        stored.setdefault(cid, {})[k] = (size, ret, elig, at)
    spans = {cid: (lo, hi) for cid, lo, hi in conn.execute(
        "SELECT cm.cohort_id, min(cm.joined_at), max(cm.joined_at) FROM cohort_members cm "
        "JOIN cohorts c ON c.cohort_id = cm.cohort_id WHERE c.site_id = ? AND cm.is_active = 1 "
        f"AND {derived.valid_member_sql('cm')} GROUP BY cm.cohort_id", (site_id,))}
    rows = []
    for cid, site, name, active in info:
        weeks = stored.get(cid, {})
        full = max((v[2] for v in weeks.values()), default=0)
        lo, hi = spans.get(cid, (0, -WEEK_MS))
        cells = []
        for k in range(WEEKS):
            got = weeks.get(k)
            start_ms, end_ms = lo + k * WEEK_MS, hi + (k + 1) * WEEK_MS
            if got is None:
                cells.append(RetentionCell(k, start_ms, end_ms, None, 0, complete=False))
            else:
                cells.append(RetentionCell(k, start_ms, end_ms, got[1], got[2],
                                           complete=got[2] == full))
        size = next(iter(weeks.values()))[0] if weeks else active
        captured = min((v[3] for v in weeks.values()), default=None)
        rows.append(RetentionRow(SAVED, cid, name, site, size, tuple(cells), captured))
    return rows


def snapshot_all(conn: sqlite3.Connection, clock: Clock, *,
                 events: OutsideEvents | None = None) -> str:
    """The daily job: every cohort's rows and each site's recent acquisition weeks; one line."""
    now = clock.now_ms()
    cohort_ids = [r[0] for r in conn.execute("SELECT cohort_id FROM cohorts ORDER BY cohort_id")]
    cohort_rows = 0
    # one site at a time keeps each write transaction short
    by_site: dict[str, list[str]] = {}
    for cid, site in conn.execute("SELECT cohort_id, site_id FROM cohorts"):
        by_site.setdefault(site, []).append(cid)
    for ids in by_site.values():
        cohort_rows += snapshot_cohorts(conn, clock, ids, events=events)
    sites = [r[0] for r in conn.execute("SELECT id FROM sites ORDER BY id")]
    acq_rows = sum(snapshot_acquisition(conn, s, now, events=events) for s in sites)
    return (f"retention: {len(cohort_ids)} cohort(s), {cohort_rows} week row(s); "
            f"{len(sites)} site(s), {acq_rows} acquisition cell(s)")


# ---------------------------------------------------------------------------- hooks
def on_membership_changed(conn: sqlite3.Connection, clock: Clock, cohort_ids: list[str], *,
                          events: OutsideEvents | None = None) -> None:
    """``cohorts.MEMBERSHIP_CHANGED_HOOKS`` entry: re-snapshot the cohorts that changed."""
    n = snapshot_cohorts(conn, clock, cohort_ids, events=events)
    log.info("retention snapshots of %d changed cohort(s): %d row(s)", len(cohort_ids), n)


# ---------------------------------------------------------------------------- report
REPORT_COLUMNS: tuple[str, ...] = ("cohort", "size", *(f"week_{k}" for k in range(WEEKS)))


def retention_report(conn: sqlite3.Connection, params: Any) -> list[dict[str, object]]:
    """The ``retention`` report (SPEC 8/9): acquisition weeks of the range, computed live."""
    rows = acquisition_rows(conn, params.site_id, params.range.start, params.range.end,
                            params.now_ms, events=params.events)
    out = []
    for r in rows:
        item: dict[str, object] = {"cohort": r.label, "size": r.size}
        for c in r.cells:
            item[f"week_{c.week_number}"] = c.rate
        out.append(item)
    return out
