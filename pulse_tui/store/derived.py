"""Derived tables kept from the events: sessions, first-seen times and the rollups.

Every writer (importer, simulator) calls :func:`catch_up` inside the transaction that inserted
its rows, and the worker calls it for rows other programs inserted. Rows are found through a
rowid high-water mark in ``pulse_meta``, so each event is folded in exactly once and no full
rescan is ever needed. ``sessions`` rows are recomputed from the events of the touched sessions,
so they stay exact whatever order files arrive in and however often a file is imported.

Usable rows: SQLite lets another program store any type in any column. :func:`valid_event_sql`
is THE definition of an event row PULSE can use (ids TEXT and non-empty, ``timestamp_ms`` an
INTEGER within SPEC 9's 2000-01-01 .. 2100-01-01, optional columns NULL or TEXT); every fold,
raw report, live-pane read, cohort and alert query keeps to it, so an unusable row is never
copied anywhere and deleting it heals everything. The partial index ``idx_events_unusable``
(schema.sql, also created by :func:`catch_up` on older files) finds them without a scan.

Readers of derived tables call :func:`fold_pending` first ("fold pending rows before
reading"): it folds what other programs inserted when the file is writable and the write lock
comes within :data:`FOLD_BUSY_MS`, and otherwise says how many rows remain unfolded, so the
reader adds them from the raw events above the high-water mark (pulse_tui.store.reports).
"""

from __future__ import annotations

import logging
import sqlite3
import time

from pulse_tui.models import describe_unusable as describe_unusable
from pulse_tui.store.tx import write_transaction

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
HWM_KEY = "derived_rowid"
DIMENSIONS = ("event_type", "url", "referrer", "country", "device_type")

CHUNK_ROWS = 200_000

# SPEC 9: event times lie within 2000-01-01 .. 2100-01-01 (both included, as the importer)
MIN_TS = 946_684_800_000
MAX_TS = 4_102_444_800_000
REQUIRED_TEXT = ("event_id", "site_id", "event_type", "session_id")
OPTIONAL_TEXT = ("url", "referrer", "country", "device_type")
UNUSABLE_INDEX = "idx_events_unusable"


def valid_event_sql(alias: str = "") -> str:
    """The SQL condition "this events row is usable" (true or false, never NULL).

    A row is usable when event_id, site_id, event_type and session_id are non-empty TEXT,
    timestamp_ms is an INTEGER in [MIN_TS, MAX_TS], user_id is NULL or non-empty TEXT and
    url, referrer, country and device_type are NULL or TEXT. (Numbers written into TEXT
    columns arrive as text through the column affinity; text that reads as an integer is
    stored as one in timestamp_ms.) ``created_at`` is not used by any number PULSE shows.
    """
    a = f"{alias}." if alias else ""
    parts = [f"typeof({a}{c}) = 'text' AND {a}{c} <> ''" for c in REQUIRED_TEXT]
    parts.append(f"typeof({a}timestamp_ms) = 'integer' "
                 f"AND {a}timestamp_ms BETWEEN {MIN_TS} AND {MAX_TS}")
    parts.append(f"({a}user_id IS NULL OR (typeof({a}user_id) = 'text' AND {a}user_id <> ''))")
    parts += [f"typeof({a}{c}) IN ('null', 'text')" for c in OPTIONAL_TEXT]
    return "(" + " AND ".join(parts) + ")"


def valid_member_sql(alias: str = "") -> str:
    """The SQL condition "this cohort_members row can be used for retention": user_id a
    non-empty TEXT and joined_at an INTEGER within MIN_TS .. MAX_TS (another program may
    store anything there; such a row is left out of retention instead of failing it)."""
    a = f"{alias}." if alias else ""
    return (f"(typeof({a}user_id) = 'text' AND {a}user_id <> '' "
            f"AND typeof({a}joined_at) = 'integer' AND {a}joined_at BETWEEN {MIN_TS} AND {MAX_TS})")


VALID_EVENT = valid_event_sql()
# the rowids of unusable rows, read through the partial index (a handful, normally none): a
# query that keeps to a covering index excludes them with ``rowid NOT IN UNUSABLE_ROWIDS``
UNUSABLE_ROWIDS = f"(SELECT rowid FROM events WHERE NOT {VALID_EVENT})"
UNUSABLE_INDEX_SQL = (f"CREATE INDEX IF NOT EXISTS {UNUSABLE_INDEX} ON events(timestamp_ms) "
                      f"WHERE NOT {VALID_EVENT}")


def has_unusable_rows(conn: sqlite3.Connection) -> bool:
    """Whether ``events`` holds any unusable row (one probe of the partial index, when it
    exists; else a scan that stops at the first)."""
    hint = f"INDEXED BY {UNUSABLE_INDEX} " if has_unusable_index(conn) else ""
    return conn.execute(f"SELECT 1 FROM events {hint}WHERE NOT {VALID_EVENT} LIMIT 1"
                        ).fetchone() is not None


def has_unusable_index(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                        (UNUSABLE_INDEX,)).fetchone() is not None


def get_meta(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM pulse_meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def set_meta(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute(
        "INSERT INTO pulse_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, str(value)),
    )


def high_water_mark(conn: sqlite3.Connection) -> int:
    return int(get_meta(conn, HWM_KEY, "0") or 0)


def pending_rows(conn: sqlite3.Connection) -> int:
    """How many event rowids lie above the high-water mark (0 when derived data is current)."""
    top = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
    return max(0, top - high_water_mark(conn))


def _fold(conn: sqlite3.Connection, lo: int, hi: int, now_ms: int, *,
          distinct: bool = True) -> None:
    """Fold events with lo < rowid <= hi into every derived table."""
    rng = (lo, hi)
    # usable rows only; the check costs a little on every row of every statement below, so
    # it is left out while the table holds no unusable row at all (the partial index says so
    # at once): then the statements are exactly what they were before the check existed
    if has_unusable_rows(conn):
        ok, okx = VALID_EVENT, valid_event_sql("x")
    else:
        ok = okx = "1"
    # sites other programs never registered (sessions reference sites; SPEC 6: unknown site
    # ids are registered)
    conn.execute(
        f"INSERT OR IGNORE INTO sites (id, name, domain, created_at) SELECT DISTINCT site_id, "
        f"site_id, NULL, ?3 FROM events WHERE rowid > ?1 AND rowid <= ?2 AND {ok}",
        (*rng, now_ms))
    # sessions: a session met for the first time (no events at or below lo) gets the range's
    # min/max/count; every other touched session is recomputed from all its events (exact
    # whatever the order files arrive in, also after a file is imported twice or the row was
    # written by another program). In-order imports mostly meet new sessions, so this avoids
    # re-reading their events through idx_events_session.
    conn.execute(
        f"""
        INSERT INTO sessions (session_id, site_id, user_id, first_event_at, last_event_at,
                              event_count, created_at)
        SELECT g.session_id,
               CASE WHEN g.old THEN (SELECT min(x.site_id) FROM events x
                                     WHERE x.session_id = g.session_id AND {okx}) ELSE g.site_id END,
               CASE WHEN g.old THEN (SELECT max(x.user_id) FROM events x
                                     WHERE x.session_id = g.session_id AND {okx}) ELSE g.user_id END,
               CASE WHEN g.old THEN (SELECT min(x.timestamp_ms) FROM events x
                                     WHERE x.session_id = g.session_id AND {okx}) ELSE g.f END,
               CASE WHEN g.old THEN (SELECT max(x.timestamp_ms) FROM events x
                                     WHERE x.session_id = g.session_id AND {okx}) ELSE g.l END,
               CASE WHEN g.old THEN (SELECT count(*) FROM events x
                                     WHERE x.session_id = g.session_id AND {okx}) ELSE g.n END,
               ?3
        FROM (SELECT session_id, min(site_id) AS site_id, max(user_id) AS user_id,
                     min(timestamp_ms) AS f, max(timestamp_ms) AS l, count(*) AS n,
                     EXISTS (SELECT 1 FROM events x WHERE x.session_id = events.session_id
                             AND x.rowid <= ?1 AND {okx}) AS old
              FROM events WHERE rowid > ?1 AND rowid <= ?2 AND {ok} GROUP BY session_id
              LIMIT -1 OFFSET 0) AS g
        WHERE true
        ON CONFLICT(session_id) DO UPDATE SET
            (user_id, first_event_at, last_event_at, event_count) = (
                SELECT coalesce(max(x.user_id), sessions.user_id), min(x.timestamp_ms),
                       max(x.timestamp_ms), count(*)
                FROM events x WHERE x.session_id = excluded.session_id AND {okx})
        """,
        (*rng, now_ms),
    )
    conn.execute(
        f"""
        INSERT INTO user_first_seen (site_id, user_id, first_seen_ms, last_seen_ms)
        SELECT site_id, user_id, min(timestamp_ms), max(timestamp_ms)
        FROM events WHERE rowid > ? AND rowid <= ? AND user_id IS NOT NULL AND {ok}
        GROUP BY site_id, user_id
        ON CONFLICT(site_id, user_id) DO UPDATE SET
            first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
            last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)
        """,
        rng,
    )
    conn.execute(
        f"""
        INSERT INTO rollup_daily (site_id, day, events)
        SELECT site_id, timestamp_ms / {DAY_MS}, count(*)
        FROM events WHERE rowid > ? AND rowid <= ? AND {ok} GROUP BY 1, 2
        ON CONFLICT(site_id, day) DO UPDATE SET events = events + excluded.events
        """,
        rng,
    )
    conn.execute(
        f"""
        INSERT INTO rollup_hourly (site_id, hour, events)
        SELECT site_id, timestamp_ms / {HOUR_MS}, count(*)
        FROM events WHERE rowid > ? AND rowid <= ? AND {ok} GROUP BY 1, 2
        ON CONFLICT(site_id, hour) DO UPDATE SET events = events + excluded.events
        """,
        rng,
    )
    conn.execute(
        f"""
        INSERT INTO rollup_daily_users (site_id, day, user_id, events)
        SELECT site_id, timestamp_ms / {DAY_MS}, user_id, count(*)
        FROM events WHERE rowid > ? AND rowid <= ? AND user_id IS NOT NULL AND {ok}
        GROUP BY 1, 2, 3
        ON CONFLICT(site_id, day, user_id) DO UPDATE SET events = events + excluded.events
        """,
        rng,
    )
    conn.execute(
        f"""
        INSERT OR IGNORE INTO rollup_daily_sessions (site_id, day, session_id)
        SELECT DISTINCT site_id, timestamp_ms / {DAY_MS}, session_id
        FROM events WHERE rowid > ? AND rowid <= ? AND {ok}
        """,
        rng,
    )
    for dim in DIMENSIONS:
        conn.execute(
            f"""
            INSERT INTO rollup_daily_dims (site_id, dim, value, day, events)
            SELECT site_id, '{dim}', coalesce({dim}, ''), timestamp_ms / {DAY_MS}, count(*)
            FROM events WHERE rowid > ? AND rowid <= ? AND {ok} GROUP BY 1, 3, 4
            ON CONFLICT(site_id, dim, day, value) DO UPDATE SET events = events + excluded.events
            """,
            rng,
        )
    if distinct:
        _fold_distinct(conn, lo, hi, ok)


# ------------------------------------------------------------------ exact distinct counts
# rollup_presence / rollup_distinct_gaps (schema.sql explains the idea). New (key, entity, day)
# rows get prev_day = the entity's latest earlier day for the key; the entity's next later day
# (only when rows arrive out of time order) gets its prev_day moved; the gap histogram receives
# +1 for every row's new gap and -1 for every moved row's old gap. Set-based, per chunk.
GAP_NONE = 1_000_000_000
DISTINCT_USERS = "user"
DISTINCT_SESSIONS = "session"

_KEY_EQ = ("{a}.site_id = {b}.site_id AND {a}.dim = {b}.dim AND {a}.value = {b}.value "
           "AND {a}.entity = {b}.entity")


def _distinct_sources(where: str) -> list[tuple[str, str, str, str]]:
    """(dim, value expression, entity column, condition) of every distinct-count key."""
    keys = [(DISTINCT_USERS, "''", "user_id", f"{where} AND user_id IS NOT NULL"),
            (DISTINCT_SESSIONS, "''", "session_id", where)]
    keys += [(dim, f"coalesce({dim}, '')", "user_id", f"{where} AND user_id IS NOT NULL")
             for dim in DIMENSIONS]
    return keys


def _fold_distinct(conn: sqlite3.Connection, lo: int, hi: int, ok: str = VALID_EVENT) -> None:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _pres (site_id TEXT, dim TEXT, value TEXT, "
        "entity TEXT, day INTEGER, last INTEGER, prev_day INTEGER, old_gap INTEGER, "
        "is_new INTEGER, PRIMARY KEY (site_id, dim, value, entity, day)) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp._pres")
    parts = [
        f"SELECT site_id, '{dim}', {value}, {entity}, timestamp_ms / {DAY_MS} FROM events "
        f"WHERE {cond}"
        for dim, value, entity, cond in _distinct_sources(f"rowid > ?1 AND rowid <= ?2 AND {ok}")
    ]
    conn.execute(
        "INSERT OR IGNORE INTO temp._pres (site_id, dim, value, entity, day, is_new) "
        f"SELECT *, 1 FROM ({' UNION ALL '.join(parts)})",
        (lo, hi),
    )
    # one seek per candidate: the key's latest stored day (events mostly arrive in time order),
    # and the prev_day that is right when no candidate of the key lies before that day: the
    # candidate day before it, else the latest stored day
    conn.execute(
        "UPDATE temp._pres SET (last, prev_day) = (SELECT max(p.day), coalesce("
        "(SELECT max(m.day) FROM temp._pres m WHERE " + _KEY_EQ.format(a="m", b="_pres")
        + " AND m.day < _pres.day), max(p.day)) FROM rollup_presence p WHERE "
        + _KEY_EQ.format(a="p", b="_pres") + ")"
    )
    if conn.execute("SELECT 1 FROM temp._pres WHERE last > day LIMIT 1").fetchone() is None:
        _fold_distinct_in_order(conn)
        return
    # backfills (a day before the latest stored one): the general path
    conn.execute("DELETE FROM temp._pres WHERE last = day")
    # skip stored days, and move the prev_day
    # of the stored day that directly follows each new one
    conn.execute(
        "DELETE FROM temp._pres WHERE last > day AND EXISTS (SELECT 1 FROM rollup_presence p "
        "WHERE " + _KEY_EQ.format(a="p", b="_pres") + " AND p.day = _pres.day)"
    )
    conn.execute(
        "INSERT OR IGNORE INTO temp._pres (site_id, dim, value, entity, day, last, old_gap, "
        f"is_new) SELECT p.site_id, p.dim, p.value, p.entity, p.day, {GAP_NONE}, "
        f"coalesce(p.day - p.prev_day, {GAP_NONE}), 0 "
        "FROM temp._pres n JOIN rollup_presence p ON " + _KEY_EQ.format(a="p", b="n")
        + " AND p.day = (SELECT min(q.day) FROM rollup_presence q WHERE "
        + _KEY_EQ.format(a="q", b="n") + " AND q.day > n.day) "
        "WHERE n.is_new = 1 AND n.last > n.day"
    )
    conn.execute(
        "UPDATE temp._pres SET prev_day = max("
        "CASE WHEN last IS NULL THEN -1 WHEN last < day THEN last ELSE "
        "coalesce((SELECT max(q.day) FROM rollup_presence q WHERE "
        + _KEY_EQ.format(a="q", b="_pres") + " AND q.day < _pres.day), -1) END, "
        "coalesce((SELECT max(m.day) FROM temp._pres m WHERE m.is_new = 1 AND "
        + _KEY_EQ.format(a="m", b="_pres") + " AND m.day < _pres.day), -1))"
    )
    conn.execute("UPDATE temp._pres SET prev_day = NULL WHERE prev_day = -1")
    conn.execute(
        "INSERT INTO rollup_presence (site_id, dim, value, entity, day, prev_day) "
        "SELECT site_id, dim, value, entity, day, prev_day FROM temp._pres WHERE is_new = 1"
    )
    conn.execute(
        "UPDATE rollup_presence SET prev_day = n.prev_day FROM temp._pres n WHERE n.is_new = 0 "
        "AND " + _KEY_EQ.format(a="rollup_presence", b="n") + " AND rollup_presence.day = n.day"
    )
    conn.execute(
        "INSERT INTO rollup_distinct_gaps (site_id, dim, value, day, gap, n) "
        "SELECT site_id, dim, value, day, gap, sum(d) FROM ("
        f" SELECT site_id, dim, value, day, coalesce(day - prev_day, {GAP_NONE}) AS gap, 1 AS d"
        " FROM temp._pres"
        " UNION ALL SELECT site_id, dim, value, day, old_gap, -1 FROM temp._pres"
        " WHERE is_new = 0"
        ") WHERE true GROUP BY site_id, dim, value, day, gap HAVING sum(d) != 0 "
        "ON CONFLICT(site_id, dim, value, day, gap) DO UPDATE SET n = n + excluded.n"
    )
    conn.execute("DELETE FROM temp._pres")


_NEW_ROWS = "FROM temp._pres WHERE last IS NULL OR last < day"


def _fold_distinct_in_order(conn: sqlite3.Connection) -> None:
    """No candidate lies before its key's latest stored day (the common, in-order case):
    candidates on that day are stored already, every other one is new with the prev_day
    computed above, and no stored row changes."""
    conn.execute(
        "INSERT INTO rollup_presence (site_id, dim, value, entity, day, prev_day) "
        f"SELECT site_id, dim, value, entity, day, prev_day {_NEW_ROWS}"
    )
    conn.execute(
        "INSERT INTO rollup_distinct_gaps (site_id, dim, value, day, gap, n) "
        f"SELECT site_id, dim, value, day, coalesce(day - prev_day, {GAP_NONE}), count(*) "
        f"{_NEW_ROWS} GROUP BY 1, 2, 3, 4, 5 "
        "ON CONFLICT(site_id, dim, value, day, gap) DO UPDATE SET n = n + excluded.n"
    )
    conn.execute("DELETE FROM temp._pres")


def _rebuild_distinct(conn: sqlite3.Connection) -> None:
    """Bulk build of rollup_presence and rollup_distinct_gaps from all events (sorts, no
    per-row seeks: much faster than folding chunk by chunk)."""
    conn.execute("DELETE FROM rollup_presence")
    conn.execute("DELETE FROM rollup_distinct_gaps")
    ok = VALID_EVENT if has_unusable_rows(conn) else "1"
    for dim, value, entity, cond in _distinct_sources(ok):
        conn.execute(
            "INSERT INTO rollup_presence (site_id, dim, value, entity, day, prev_day) "
            f"SELECT site_id, '{dim}', value, entity, day, lag(day) OVER "
            "(PARTITION BY site_id, value, entity ORDER BY day) FROM ("
            f"SELECT DISTINCT site_id, {value} AS value, {entity} AS entity, "
            f"timestamp_ms / {DAY_MS} AS day FROM events WHERE {cond})"
        )
    conn.execute(
        "INSERT INTO rollup_distinct_gaps (site_id, dim, value, day, gap, n) "
        f"SELECT site_id, dim, value, day, coalesce(day - prev_day, {GAP_NONE}), count(*) "
        "FROM rollup_presence GROUP BY 1, 2, 3, 4, 5"
    )


def catch_up(conn: sqlite3.Connection, now_ms: int, *, max_rows: int | None = None,
             distinct: bool = True) -> int:
    """Fold every event above the high-water mark into the derived tables.

    Must run inside a write transaction (the caller's, so the insert and its derived rows
    commit together). Returns the number of rowids folded. ``distinct=False`` skips the
    distinct-count rollups (only for rebuild, which builds them in bulk afterwards).
    """
    hwm = high_water_mark(conn)
    top = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
    if top > hwm and not has_unusable_index(conn):  # files from before the index: once
        conn.execute(UNUSABLE_INDEX_SQL)
    if top < hwm:  # events were deleted from the top (rare); nothing new to fold
        set_meta(conn, HWM_KEY, top)
        return 0
    if max_rows is not None:
        top = min(top, hwm + max_rows)
    lo = hwm
    while lo < top:
        hi = min(top, lo + CHUNK_ROWS)
        _fold(conn, lo, hi, now_ms, distinct=distinct)
        lo = hi
    set_meta(conn, HWM_KEY, top)
    return top - hwm


def catch_up_tx(conn: sqlite3.Connection, now_ms: int) -> int:
    """catch_up in its own short write transaction (the worker's path for foreign writes)."""
    if pending_rows(conn) == 0:
        return 0
    with write_transaction(conn):
        n = catch_up(conn, now_ms)
    return n


# ------------------------------------------------------------------ fold before reading
FOLD_BUSY_MS = 2_000  # how long a reader waits for the write lock before reading around it


def fold_pending(conn: sqlite3.Connection) -> int:
    """Fold pending rows before reading: the one step every reader of derived tables takes.

    Cheap when nothing is pending (two indexed lookups). Otherwise folds the rows other
    programs inserted, in its own short write transaction, waiting at most FOLD_BUSY_MS for
    the write lock. A read-only file, a writer holding the lock longer, a full disk or a caller
    inside its own transaction leave the rows unfolded: returns how many rowids remain above
    the high-water mark (0 when derived data covers every event), so the reader adds those
    rows from the raw events (reports) or says that it cannot (retention, cohorts).
    """
    pending = pending_rows(conn)
    # files from before the partial index of unusable rows get it once (like a fold: derived
    # data, in the same short write transaction)
    need_index = not has_unusable_index(conn)
    if (pending == 0 and not need_index) or conn.in_transaction:
        return pending
    previous = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {min(previous, FOLD_BUSY_MS)}")
    try:
        with write_transaction(conn):
            if need_index:
                conn.execute(UNUSABLE_INDEX_SQL)
            catch_up(conn, int(time.time() * 1000))
    except sqlite3.OperationalError as exc:  # read-only, locked, busy, disk full
        log.info("reading around %d unfolded event rows: %s", pending, exc)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {previous}")
    return pending_rows(conn)


# ------------------------------------------------------------------ unusable rows
def unusable_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Unusable rows of ``events`` (see :func:`valid_event_sql`): {"total": n, column: rows
    whose column breaks the rule, ...} with only the columns that do. Reads the partial index
    (files from before it: one scan)."""
    def bad(col: str) -> str:
        if col in REQUIRED_TEXT:
            return f"NOT (typeof({col}) = 'text' AND {col} <> '')"
        if col == "timestamp_ms":
            return (f"NOT (typeof(timestamp_ms) = 'integer' "
                    f"AND timestamp_ms BETWEEN {MIN_TS} AND {MAX_TS})")
        if col == "user_id":
            return "NOT (user_id IS NULL OR (typeof(user_id) = 'text' AND user_id <> ''))"
        return f"typeof({col}) NOT IN ('null', 'text')"

    fold_pending(conn)  # creates the partial index on files from before it, when writable
    cols = (*REQUIRED_TEXT, "timestamp_ms", "user_id", *OPTIONAL_TEXT)
    row = conn.execute(
        "SELECT count(*), " + ", ".join(f"coalesce(sum({bad(c)}), 0)" for c in cols)
        + f" FROM events WHERE NOT {VALID_EVENT}").fetchone()
    out = {"total": int(row[0])}
    out.update({c: int(n) for c, n in zip(cols, row[1:], strict=True) if n})
    return out


ROLLUP_TABLES = (
    "rollup_daily",
    "rollup_hourly",
    "rollup_daily_users",
    "rollup_daily_sessions",
    "rollup_daily_dims",
    "rollup_presence",
    "rollup_distinct_gaps",
)


def prune_rollups(conn: sqlite3.Connection, before_day: int) -> int:
    """Delete rollup rows of UTC days before ``before_day`` (rollup_retention_days cleanup;
    hourly rows before that day too). Distinct counts stay exact for ranges starting on or
    after ``before_day``. Call inside the caller's write transaction; returns rows deleted."""
    before = conn.total_changes
    for table in ROLLUP_TABLES:
        if table == "rollup_hourly":
            conn.execute("DELETE FROM rollup_hourly WHERE hour < ?", (before_day * 24,))
        else:
            conn.execute(f"DELETE FROM {table} WHERE day < ?", (before_day,))
    return conn.total_changes - before


KEEP_ALL_DAYS = 10**9  # a site with rollups but no events left keeps every rollup row
_PER_DAY = ("rollup_daily", "rollup_daily_users", "rollup_daily_sessions", "rollup_daily_dims",
            "rollup_presence", "rollup_distinct_gaps")


CLEANUP_KEY = "events_cleaned_before_ms"  # cleanup records its newest event-time cutoff here


def history_days(conn: sqlite3.Connection) -> dict[str, int]:
    """Sites whose rollups hold days whose raw events cleanup deleted (rollup_retention_days
    outlives events_retention_days): site -> the last day whose rollup rows a rebuild keeps as
    they are (KEEP_ALL_DAYS for a site with no events left). The border is the later of
    cleanup's newest cutoff day (recorded under CLEANUP_KEY; that day lost only part of its
    events) and the site's last rollup day without any stored event (cleanups from before the
    cutoff was recorded; a stray old event that cleanup had to keep does not move it). Days
    after the border are rebuilt from the events, so damaged rollups there are repaired.
    Call with the rollups caught up."""
    in_bounds = f"typeof(day) = 'integer' AND day BETWEEN {MIN_TS // DAY_MS} AND {MAX_TS // DAY_MS}"
    first_rollup_days = dict(conn.execute(
        f"SELECT site_id, min(day) FROM rollup_daily WHERE {in_bounds} GROUP BY site_id"
    ).fetchall())
    if not first_rollup_days:
        return {}
    cutoff_day = int(get_meta(conn, CLEANUP_KEY, "0") or 0) // DAY_MS or None
    raw_days: dict[str, set[int]] = {}
    for site, day in conn.execute(
            f"SELECT DISTINCT site_id, timestamp_ms / {DAY_MS} FROM events WHERE {VALID_EVENT}"):
        raw_days.setdefault(site, set()).add(day)
    keep: dict[str, int] = {}
    for site, first_rollup_day in first_rollup_days.items():
        days = raw_days.get(site)
        if not days:
            keep[site] = KEEP_ALL_DAYS
            continue
        border = cutoff_day if cutoff_day and first_rollup_day <= cutoff_day else None
        without_events = [d for (d,) in conn.execute(
            f"SELECT day FROM rollup_daily WHERE site_id = ? AND events > 0 AND {in_bounds}",
            (site,))
            if d not in days]
        if without_events:
            border = max(border or 0, max(without_events))
        if border is not None:
            keep[site] = border
    return keep


def record_cleanup(conn: sqlite3.Connection, cutoff_ms: int) -> None:
    """Note that events before ``cutoff_ms`` were deleted (in the deleting transaction)."""
    if cutoff_ms > int(get_meta(conn, CLEANUP_KEY, "0") or 0):
        set_meta(conn, CLEANUP_KEY, cutoff_ms)


def _save_history(conn: sqlite3.Connection, keep: dict[str, int]) -> None:
    """Copy the rollup rows a rebuild keeps (days <= keep[site]) into temp tables."""
    conn.execute("DROP TABLE IF EXISTS temp._keep")
    conn.execute("CREATE TEMP TABLE _keep (site_id TEXT PRIMARY KEY, last_day INTEGER)")
    conn.executemany("INSERT INTO temp._keep VALUES (?, ?)", keep.items())
    for table in (*_PER_DAY, "rollup_hourly"):
        day = "t.hour / 24" if table == "rollup_hourly" else "t.day"
        conn.execute(f"DROP TABLE IF EXISTS temp._hist_{table}")
        conn.execute(
            f"CREATE TEMP TABLE _hist_{table} AS SELECT t.* FROM {table} t "
            f"JOIN temp._keep k ON k.site_id = t.site_id WHERE {day} <= k.last_day")
    conn.execute("CREATE INDEX temp._hist_presence_key ON _hist_rollup_presence "
                 "(site_id, dim, value, entity, day)")


def _restore_history(conn: sqlite3.Connection) -> None:
    """After a rebuild from the events: put the kept rollup rows back in place of the rebuilt
    ones of those days, chain the rebuilt presence rows to the kept ones (an entity's previous
    day may lie in the kept history) and recompute the gap histogram of the rebuilt days."""
    for table in (*_PER_DAY, "rollup_hourly"):
        day = "hour / 24" if table == "rollup_hourly" else "day"
        if table != "rollup_distinct_gaps":
            conn.execute(
                f"DELETE FROM {table} WHERE {day} <= (SELECT k.last_day FROM temp._keep k "
                f"WHERE k.site_id = {table}.site_id)")
        else:  # recomputed below for the rebuilt days, restored for the kept ones
            conn.execute("DELETE FROM rollup_distinct_gaps WHERE site_id IN "
                         "(SELECT site_id FROM temp._keep)")
        conn.execute(f"INSERT INTO {table} SELECT * FROM temp._hist_{table}")
    conn.execute(
        "UPDATE rollup_presence SET prev_day = (SELECT max(h.day) FROM temp._hist_rollup_presence h "
        "WHERE " + _KEY_EQ.format(a="h", b="rollup_presence") + ") "
        "WHERE site_id IN (SELECT site_id FROM temp._keep) "
        "AND day > (SELECT k.last_day FROM temp._keep k WHERE k.site_id = rollup_presence.site_id) "
        "AND (prev_day IS NULL OR prev_day <= (SELECT k.last_day FROM temp._keep k "
        "WHERE k.site_id = rollup_presence.site_id))"
    )
    conn.execute(
        "INSERT INTO rollup_distinct_gaps (site_id, dim, value, day, gap, n) "
        f"SELECT p.site_id, p.dim, p.value, p.day, coalesce(p.day - p.prev_day, {GAP_NONE}), "
        "count(*) FROM rollup_presence p JOIN temp._keep k ON k.site_id = p.site_id "
        "WHERE p.day > k.last_day GROUP BY 1, 2, 3, 4, 5"
    )
    for table in ("_keep", *(f"_hist_{t}" for t in (*_PER_DAY, "rollup_hourly"))):
        conn.execute(f"DROP TABLE temp.{table}")


def _drop_unusable_derived(conn: sqlite3.Connection) -> None:
    """Derived rows that unusable events wrote before PULSE checked them (a day outside
    2000..2100, a text time): deleted, so the rebuild recomputes them from the usable rows."""
    lo_day, hi_day = MIN_TS // DAY_MS, MAX_TS // DAY_MS
    for table in ROLLUP_TABLES:
        if table == "rollup_hourly":
            bad = (f"typeof(hour) != 'integer' OR hour NOT BETWEEN {MIN_TS // HOUR_MS} "
                   f"AND {MAX_TS // HOUR_MS}")
        else:
            bad = f"typeof(day) != 'integer' OR day NOT BETWEEN {lo_day} AND {hi_day}"
        conn.execute(f"DELETE FROM {table} WHERE {bad} OR typeof(site_id) != 'text'")
    times_bad = ("typeof({c}) != 'integer' OR {c} NOT BETWEEN " f"{MIN_TS} AND {MAX_TS}")
    conn.execute("DELETE FROM user_first_seen WHERE typeof(user_id) != 'text' OR user_id = '' "
                 "OR " + times_bad.format(c="first_seen_ms") + " OR "
                 + times_bad.format(c="last_seen_ms"))
    # sessions: recomputed from their usable events (deleted when none is left)
    conn.execute(
        "DELETE FROM sessions WHERE typeof(session_id) != 'text' OR NOT EXISTS "
        f"(SELECT 1 FROM events x WHERE x.session_id = sessions.session_id "
        f"AND {valid_event_sql('x')})")
    conn.execute(
        "UPDATE sessions SET (first_event_at, last_event_at, event_count) = "
        "(SELECT min(x.timestamp_ms), max(x.timestamp_ms), count(*) FROM events x "
        f"WHERE x.session_id = sessions.session_id AND {valid_event_sql('x')}) "
        "WHERE " + times_bad.format(c="first_event_at") + " OR "
        + times_bad.format(c="last_event_at"))


def rebuild(conn: sqlite3.Connection, now_ms: int) -> int:
    """Rebuild sessions, first-seen times and every rollup from the events (one transaction).

    First-seen times only ever move earlier, so they survive a rebuild after cleanup. So does
    the rollup history of days whose raw events cleanup deleted (:func:`history_days`): those
    days keep their rollup rows as they were, and distinct counts stay exact across the border.
    """
    from pulse_tui.store.connection import _statements, schema_sql

    with write_transaction(conn):
        for statement in _statements(schema_sql()):  # all IF NOT EXISTS: adds new rollups
            conn.execute(statement)
        catch_up(conn, now_ms)  # rows nobody folded yet count in the history that is kept
        _drop_unusable_derived(conn)
        keep = history_days(conn)
        if keep:
            _save_history(conn, keep)
        for table in ROLLUP_TABLES:
            conn.execute(f"DELETE FROM {table}")
        set_meta(conn, HWM_KEY, 0)
        n = catch_up(conn, now_ms, distinct=False)
        _rebuild_distinct(conn)
        if keep:
            _restore_history(conn)
    return n
