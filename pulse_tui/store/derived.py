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
    """Fold every event above the high-water mark into the derived tables, then re-derive the
    days whose folded events other programs deleted or changed (:func:`refold_stale`).

    Must run inside a write transaction (the caller's, so the insert and its derived rows
    commit together). Returns the number of rowids folded. ``distinct=False`` skips the
    distinct-count rollups (only for rebuild, which builds them in bulk afterwards). When the
    row at the fold mark is no longer the one that was folded there (rows deleted and inserted
    behind PULSE's back while the watch triggers were missing), rebuilds everything instead.
    """
    ensure_watch(conn)
    if not mark_ok(conn):
        log.warning("the events at the fold mark changed behind PULSE's back (rows deleted and "
                    "inserted while the watch triggers were missing): rebuilding the derived "
                    "tables from the events")
        return _rebuild(conn, now_ms)
    n = _fold_new(conn, now_ms, max_rows=max_rows, distinct=distinct)
    refold_stale(conn, now_ms)
    drop_replaced(conn)
    return n


def drop_replaced(conn: sqlite3.Connection) -> None:
    """Forget what ignored inserts of stored event_ids (duplicates) left in REPLACED_TABLE
    (inside the caller's write transaction)."""
    if _has_table(conn, REPLACED_TABLE) and conn.execute(
            f"SELECT 1 FROM {REPLACED_TABLE} LIMIT 1").fetchone() is not None:
        conn.execute(f"DELETE FROM {REPLACED_TABLE}")


def _fold_new(conn: sqlite3.Connection, now_ms: int, *, max_rows: int | None = None,
              distinct: bool = True) -> int:
    """Fold the events above the high-water mark; move the mark and its identity."""
    hwm = high_water_mark(conn)
    top = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
    if top < hwm:  # events were deleted from the top (rare); nothing new to fold
        _set_mark(conn, top)
        return 0
    if max_rows is not None:
        top = min(top, hwm + max_rows)
    lo = hwm
    while lo < top:
        hi = min(top, lo + CHUNK_ROWS)
        _fold(conn, lo, hi, now_ms, distinct=distinct)
        lo = hi
    if top > hwm or get_meta(conn, MARK_KEY) is None:
        _set_mark(conn, top)
    return top - hwm


def _needs_work(conn: sqlite3.Connection) -> bool:
    """Rows above the high-water mark, stale days, a changed mark, or missing upkeep objects."""
    return (pending_rows(conn) > 0 or _upkeep_missing(conn) or has_stale(conn)
            or not mark_ok(conn))


def catch_up_tx(conn: sqlite3.Connection, now_ms: int) -> int:
    """catch_up in its own short write transaction (the worker's path for foreign writes)."""
    if not _needs_work(conn):
        return 0
    with write_transaction(conn):
        n = catch_up(conn, now_ms)
    return n


# ------------------------------------------------------------------ fold before reading
FOLD_BUSY_MS = 2_000  # how long a reader waits for the write lock before reading around it


def fold_pending(conn: sqlite3.Connection) -> int:
    """Fold pending rows before reading: the one step every reader of derived tables takes.

    Cheap when nothing is pending (a few indexed lookups). Otherwise folds the rows other
    programs inserted and re-derives the days of rows they deleted or changed, in its own short
    write transaction, waiting at most FOLD_BUSY_MS for the write lock. A read-only file, a
    writer holding the lock longer, a full disk or a caller inside its own transaction leave
    the rows unfolded: returns how many rowids remain above the high-water mark (0 when derived
    data covers every event), so the reader adds those rows from the raw events (reports) or
    says that it cannot (retention, cohorts); :func:`stale` then says whether days of a site
    wait for re-deriving (reports read those from the raw events).
    """
    pending = pending_rows(conn)
    # files from before the partial index of unusable rows or the watch triggers get them
    # once (like a fold: derived data, in the same short write transaction)
    if conn.in_transaction or not (pending or _upkeep_missing(conn) or has_stale(conn)
                                   or not mark_ok(conn)):
        return pending
    previous = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {min(previous, FOLD_BUSY_MS)}")
    try:
        with write_transaction(conn):
            if not has_unusable_index(conn):
                conn.execute(UNUSABLE_INDEX_SQL)
            catch_up(conn, int(time.time() * 1000))
    except sqlite3.OperationalError as exc:  # read-only, locked, busy, disk full
        log.info("reading around %d unfolded event rows: %s", pending, exc)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {previous}")
    return pending_rows(conn)


# ------------------------------------------------------------------ rows other programs change
# Another program may DELETE or UPDATE events that were folded already (rowid at or below the
# high-water mark). Two triggers on ``events`` (created with the schema, and once on files from
# before them) copy the folded row as it was (DELETE, UPDATE) and as it becomes (UPDATE) into
# STALE_TABLE; the next fold re-derives those (site, day) pairs from the events
# (:func:`refold_stale`), so every number is right without rebuild-rollups. The DELETE trigger
# also lowers the high-water mark when the newest rows go: SQLite gives the next insert
# max(rowid) + 1, which would otherwise lie below the mark and never be folded. The identity
# of the newest folded row (``rowid quote(event_id)`` under MARK_KEY, moved by the triggers
# when that row is deleted or changed) catches that case when the triggers were missing:
# catch_up then rebuilds. Days whose raw events cleanup deleted (up to the recorded
# cutoff) keep their rollups, as rebuild-rollups keeps them.
#
# ``INSERT OR REPLACE`` (and ``REPLACE INTO``) over a stored event_id deletes the old row
# without firing delete triggers (SQLite fires them for REPLACE only with recursive_triggers
# on, which the other program does not set), then inserts the new row above the mark: its fold
# alone would count the event twice. A BEFORE INSERT trigger copies a folded row with the new
# row's event_id into REPLACED_TABLE (the insert may still be ignored: ``INSERT OR IGNORE`` of
# a duplicate, the importer's way); the AFTER INSERT trigger, which fires only for rows really
# inserted, moves that copy to STALE_TABLE (and the new row too when its rowid is at or below
# the mark) and lowers the mark as the DELETE trigger does. What an ignored insert left there
# is dropped by the next fold.
STALE_TABLE = "derived_stale"
REPLACED_TABLE = "derived_replaced"
REPLACED_INDEX = "idx_derived_replaced_event"
MARK_KEY = "derived_mark"
DELETE_TRIGGER = "events_derived_delete"
UPDATE_TRIGGER = "events_derived_update"
REPLACE_BEFORE_TRIGGER = "events_derived_replace_before"
REPLACE_AFTER_TRIGGER = "events_derived_replace_after"
_STALE_COLUMNS = ("site_id", "day", "session_id", "user_id", *DIMENSIONS)
_HWM_SQL = f"(SELECT CAST(value AS INTEGER) FROM pulse_meta WHERE key = '{HWM_KEY}')"
_TOP_SQL = "(SELECT coalesce(max(rowid), 0) FROM events)"
_MARK_SQL = "rowid || ' ' || quote(event_id)"
_WATCHED = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id",
            *OPTIONAL_TEXT)


def _record(side: str) -> str:
    values = ", ".join((f"{side}.site_id", f"{side}.timestamp_ms / {DAY_MS}",
                        *(f"{side}.{c}" for c in _STALE_COLUMNS[2:])))
    return (f"INSERT INTO {STALE_TABLE} ({', '.join(_STALE_COLUMNS)}) SELECT {values} "
            f"WHERE {side}.rowid <= {_HWM_SQL} AND {valid_event_sql(side)};")


# the newest rows went (deleted, or their rowid moved down): the next insert's rowid
# (max(rowid) + 1) must lie above the high-water mark
_CLAMP = (f"UPDATE pulse_meta SET value = {_TOP_SQL} "
          f"WHERE key = '{HWM_KEY}' AND CAST(value AS INTEGER) > {_TOP_SQL};")
# the remembered newest folded row changed or went: remember the newest one left
_REMARK = (f"UPDATE pulse_meta SET value = (SELECT {_MARK_SQL} FROM events "
           f"WHERE rowid <= {_HWM_SQL} ORDER BY rowid DESC LIMIT 1) "
           f"WHERE key = '{MARK_KEY}' AND value = old.rowid || ' ' || quote(old.event_id);")
_CHANGED = " OR ".join(["old.rowid IS NOT new.rowid",
                        *(f"old.{c} IS NOT new.{c} OR typeof(old.{c}) != typeof(new.{c})"
                          for c in _WATCHED)])
_STALE_COLUMNS_SQL = ("site_id TEXT NOT NULL, day INTEGER NOT NULL, session_id TEXT NOT NULL, "
                      "user_id TEXT, event_type TEXT, url TEXT, referrer TEXT, country TEXT, "
                      "device_type TEXT")
# a folded row an insert may replace: its values (``ok``: usable, so folded into the rollups)
# and its identity at the mark
_STASH = (f"INSERT INTO {REPLACED_TABLE} (event_id, mark, ok, {', '.join(_STALE_COLUMNS)}) "
          f"SELECT e.event_id, e.rowid || ' ' || quote(e.event_id), {valid_event_sql('e')}, e.site_id, "
          f"e.timestamp_ms / {DAY_MS}, "
          + ", ".join(f"e.{c}" for c in _STALE_COLUMNS[2:])
          + f" FROM events e WHERE e.event_id = new.event_id AND e.rowid <= {_HWM_SQL};")
_REPLACED = (f"INSERT INTO {STALE_TABLE} ({', '.join(_STALE_COLUMNS)}) "
             f"SELECT {', '.join(_STALE_COLUMNS)} FROM {REPLACED_TABLE} "
             "WHERE event_id = new.event_id AND ok;")
# the replaced row was the one remembered at the mark: remember the newest one left
_REMARK_REPLACED = (
    f"UPDATE pulse_meta SET value = (SELECT {_MARK_SQL} FROM events WHERE rowid <= {_HWM_SQL} "
    f"ORDER BY rowid DESC LIMIT 1) WHERE key = '{MARK_KEY}' AND value IN "
    f"(SELECT mark FROM {REPLACED_TABLE} WHERE event_id = new.event_id);")
WATCH_SQL = (
    f"CREATE TABLE IF NOT EXISTS {STALE_TABLE} ({_STALE_COLUMNS_SQL})",
    f"CREATE TABLE IF NOT EXISTS {REPLACED_TABLE} (event_id, mark TEXT, ok INTEGER NOT NULL, "
    f"{_STALE_COLUMNS_SQL.replace(' NOT NULL', '')})",
    # ignored duplicates of folded rows leave their copies here until the transaction ends:
    # every real insert after them probes this table by id (unindexed, a re-sent file's
    # duplicates made each new row after them scan them all: 26 s for 80,000 + 80,000 rows)
    f"CREATE INDEX IF NOT EXISTS {REPLACED_INDEX} ON {REPLACED_TABLE} (event_id)",
    f"CREATE TRIGGER IF NOT EXISTS {DELETE_TRIGGER} AFTER DELETE ON events "
    f"BEGIN {_record('old')} {_CLAMP} {_REMARK} END",
    f"CREATE TRIGGER IF NOT EXISTS {UPDATE_TRIGGER} AFTER UPDATE ON events "
    f"WHEN (old.rowid <= {_HWM_SQL} OR new.rowid <= {_HWM_SQL}) AND ({_CHANGED}) "
    f"BEGIN {_record('old')} {_record('new')} {_CLAMP} {_REMARK} END",
    # the importer's cost: one primary-key probe per row (the insert makes the same one)
    f"CREATE TRIGGER IF NOT EXISTS {REPLACE_BEFORE_TRIGGER} BEFORE INSERT ON events "
    f"WHEN EXISTS (SELECT 1 FROM events WHERE event_id = new.event_id "
    f"AND rowid <= {_HWM_SQL}) BEGIN {_STASH} END",
    # and one probe of the (empty) replaced-rows table
    f"CREATE TRIGGER IF NOT EXISTS {REPLACE_AFTER_TRIGGER} AFTER INSERT ON events "
    f"WHEN EXISTS (SELECT 1 FROM {REPLACED_TABLE} WHERE event_id = new.event_id) "
    f"BEGIN {_REPLACED} {_record('new')} {_CLAMP} {_REMARK_REPLACED} "
    f"DELETE FROM {REPLACED_TABLE} WHERE event_id = new.event_id; END",
)
_UPKEEP = ((STALE_TABLE, "table"), (REPLACED_TABLE, "table"), (REPLACED_INDEX, "index"),
           (DELETE_TRIGGER, "trigger"),
           (UPDATE_TRIGGER, "trigger"), (REPLACE_BEFORE_TRIGGER, "trigger"),
           (REPLACE_AFTER_TRIGGER, "trigger"), (UNUSABLE_INDEX, "index"))


def _upkeep_missing(conn: sqlite3.Connection) -> bool:
    """Whether the file lacks the stale-rows table, a watch trigger or the unusable-rows index."""
    have = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE (name, type) IN (VALUES "
        + ", ".join("(?, ?)" for _ in _UPKEEP) + ")",
        [x for pair in _UPKEEP for x in pair]).fetchone()[0]
    return have < len(_UPKEEP)


def ensure_watch(conn: sqlite3.Connection) -> None:
    """Create the stale-rows table, the watch triggers and the unusable-rows index when missing
    (inside the caller's write transaction; files from before them get them once)."""
    if _upkeep_missing(conn):
        for statement in WATCH_SQL:
            conn.execute(statement)
        conn.execute(UNUSABLE_INDEX_SQL)


def _set_mark(conn: sqlite3.Connection, rowid: int) -> None:
    """Set the high-water mark to ``rowid`` and remember which row it is."""
    set_meta(conn, HWM_KEY, rowid)
    row = conn.execute(f"SELECT {_MARK_SQL} FROM events WHERE rowid = ?", (rowid,)).fetchone()
    conn.execute("DELETE FROM pulse_meta WHERE key = ?", (MARK_KEY,))
    if row is not None and row[0] is not None:
        set_meta(conn, MARK_KEY, row[0])


def mark_ok(conn: sqlite3.Connection) -> bool:
    """Whether the row remembered at the fold mark is still there, unchanged (True when no
    mark is remembered: files from before it)."""
    mark = get_meta(conn, MARK_KEY)
    if not mark:
        return True
    head = str(mark).split(" ", 1)[0]
    if not head.lstrip("-").isdigit():
        return False
    row = conn.execute(f"SELECT {_MARK_SQL} FROM events WHERE rowid = ?", (int(head),)
                       ).fetchone()
    return row is not None and row[0] == mark


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def _history_cutoff(conn: sqlite3.Connection) -> int:
    """Events before this time (ms) may have been deleted by cleanup (0: none)."""
    try:
        return int(get_meta(conn, CLEANUP_KEY, "0") or 0)
    except ValueError:
        return 0


def has_stale(conn: sqlite3.Connection) -> bool:
    """Whether rows other programs deleted or changed wait for re-deriving."""
    return (_has_table(conn, STALE_TABLE)
            and conn.execute(f"SELECT 1 FROM {STALE_TABLE} LIMIT 1").fetchone() is not None)


def stale(conn: sqlite3.Connection, site_id: str) -> bool:
    """After :func:`fold_pending`: whether the site's derived rows could not be brought up to
    date (a read-only file, a writer holding the lock) for rows other programs deleted or
    changed, or for a changed fold mark; the reader then counts from the raw events."""
    if not mark_ok(conn):
        return True
    if not _has_table(conn, STALE_TABLE):
        return False
    return conn.execute(
        f"SELECT 1 FROM {STALE_TABLE} WHERE site_id = ? AND day * {DAY_MS} >= ? LIMIT 1",
        (site_id, _history_cutoff(conn))).fetchone() is not None


def discard_stale(conn: sqlite3.Connection) -> None:
    """Forget the recorded rows (PULSE's own deletes, which keep the rollups on purpose)."""
    if _has_table(conn, STALE_TABLE):
        conn.execute(f"DELETE FROM {STALE_TABLE}")


def refold_stale(conn: sqlite3.Connection, now_ms: int) -> int:
    """Re-derive every derived row of the (site, day) pairs recorded in STALE_TABLE from the
    events, and the sessions and first-seen times of the users and sessions involved; then
    empty the table. Inside the caller's write transaction, after the rows above the
    high-water mark are folded. Returns the number of (site, day) pairs re-derived."""
    if not has_stale(conn):
        return 0
    hwm = high_water_mark(conn)
    cutoff = _history_cutoff(conn)
    for t in ("_sd", "_se", "_sx", "_sk", "_sco", "_sgd"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{t}")
    conn.execute("CREATE TEMP TABLE _sd (site_id TEXT, day INTEGER, "
                 "PRIMARY KEY (site_id, day)) WITHOUT ROWID")
    # days whose raw events cleanup deleted keep their rollups (rebuild-rollups keeps them too)
    conn.execute(f"INSERT OR IGNORE INTO temp._sd SELECT site_id, day FROM {STALE_TABLE} "
                 f"WHERE day * {DAY_MS} >= ?", (cutoff,))
    cols = ", ".join(_STALE_COLUMNS)
    # the usable events of those days as they are now, and as the changed rows were
    conn.execute(
        f"CREATE TEMP TABLE _se AS SELECT e.site_id AS site_id, e.timestamp_ms / {DAY_MS} AS day, "
        "e.session_id AS session_id, e.user_id AS user_id, "
        + ", ".join(f"e.{d} AS {d}" for d in DIMENSIONS)
        + f", e.timestamp_ms / {HOUR_MS} AS hour FROM temp._sd d CROSS JOIN events e "
        f"ON e.site_id = d.site_id AND e.timestamp_ms BETWEEN d.day * {DAY_MS} "
        f"AND d.day * {DAY_MS} + {DAY_MS - 1} WHERE e.rowid <= ? AND {valid_event_sql('e')}",
        (hwm,))
    conn.execute(f"CREATE TEMP TABLE _sx AS SELECT {cols} FROM temp._se UNION ALL "
                 f"SELECT {cols} FROM {STALE_TABLE} s WHERE EXISTS (SELECT 1 FROM temp._sd d "
                 "WHERE d.site_id = s.site_id AND d.day = s.day)")
    days = conn.execute("SELECT site_id, day FROM temp._sd").fetchall()
    dims = ", ".join(f"'{d}'" for d in DIMENSIONS)
    conn.execute(
        "INSERT OR IGNORE INTO sites (id, name, domain, created_at) SELECT DISTINCT site_id, "
        "site_id, NULL, ? FROM temp._se", (now_ms,))
    # counts per day: replaced
    for site, day in days:
        conn.execute("DELETE FROM rollup_daily WHERE site_id = ? AND day = ?", (site, day))
        conn.execute("DELETE FROM rollup_hourly WHERE site_id = ? AND hour BETWEEN ? AND ?",
                     (site, day * 24, day * 24 + 23))
        conn.execute("DELETE FROM rollup_daily_users WHERE site_id = ? AND day = ?", (site, day))
        conn.execute("DELETE FROM rollup_daily_sessions WHERE site_id = ? AND day = ?",
                     (site, day))
        conn.execute(f"DELETE FROM rollup_daily_dims WHERE site_id = ? AND dim IN ({dims}) "
                     "AND day = ?", (site, day))
    conn.execute("INSERT INTO rollup_daily (site_id, day, events) "
                 "SELECT site_id, day, count(*) FROM temp._se GROUP BY 1, 2")
    conn.execute("INSERT INTO rollup_hourly (site_id, hour, events) "
                 "SELECT site_id, hour, count(*) FROM temp._se GROUP BY 1, 2")
    conn.execute("INSERT INTO rollup_daily_users (site_id, day, user_id, events) "
                 "SELECT site_id, day, user_id, count(*) FROM temp._se "
                 "WHERE user_id IS NOT NULL GROUP BY 1, 2, 3")
    conn.execute("INSERT INTO rollup_daily_sessions (site_id, day, session_id) "
                 "SELECT DISTINCT site_id, day, session_id FROM temp._se")
    for dim in DIMENSIONS:
        conn.execute(
            "INSERT INTO rollup_daily_dims (site_id, dim, value, day, events) "
            f"SELECT site_id, '{dim}', coalesce({dim}, ''), day, count(*) FROM temp._se "
            "GROUP BY 1, 3, 4")
    _refold_presence(conn)
    _refold_people(conn, now_ms, cutoff)
    conn.execute(f"DELETE FROM {STALE_TABLE}")
    for t in ("_sd", "_se", "_sx", "_sk", "_sco", "_sgd"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{t}")
    return len(days)


_CHAIN = ("temp._sk k CROSS JOIN rollup_presence p ON p.site_id = k.site_id AND p.dim = k.dim "
          "AND p.value = k.value AND p.entity = k.entity")


def _refold_presence(conn: sqlite3.Connection) -> None:
    """rollup_presence / rollup_distinct_gaps for the stale days: every key and entity seen
    on them (before or after the change) gets its rows of those days replaced and its whole
    chain's prev_day recomputed; the gap histogram moves by the difference."""
    conn.execute("CREATE TEMP TABLE _sk (site_id TEXT, dim TEXT, value TEXT, entity TEXT, "
                 "PRIMARY KEY (site_id, dim, value, entity)) WITHOUT ROWID")
    for dim, value, entity, cond in _distinct_sources("1"):
        conn.execute(f"INSERT OR IGNORE INTO temp._sk SELECT site_id, '{dim}', {value}, {entity} "
                     f"FROM temp._sx WHERE {cond}")
    conn.execute("CREATE TEMP TABLE _sco AS SELECT p.site_id AS site_id, p.dim AS dim, "
                 "p.value AS value, p.entity AS entity, p.day AS day, "
                 f"coalesce(p.day - p.prev_day, {GAP_NONE}) AS gap FROM {_CHAIN}")
    conn.execute(
        "DELETE FROM rollup_presence WHERE (site_id, dim, value, entity, day) IN "
        "(SELECT c.site_id, c.dim, c.value, c.entity, c.day FROM temp._sco c "
        "JOIN temp._sd d ON d.site_id = c.site_id AND d.day = c.day)")
    for dim, value, entity, cond in _distinct_sources("1"):
        conn.execute(
            "INSERT OR IGNORE INTO rollup_presence (site_id, dim, value, entity, day) "
            f"SELECT DISTINCT site_id, '{dim}', {value}, {entity}, day FROM temp._se "
            f"WHERE {cond}")
    conn.execute(
        "UPDATE rollup_presence SET prev_day = x.pd FROM (SELECT p.site_id AS site_id, "
        "p.dim AS dim, p.value AS value, p.entity AS entity, p.day AS day, lag(p.day) OVER "
        "(PARTITION BY p.site_id, p.dim, p.value, p.entity ORDER BY p.day) AS pd "
        f"FROM {_CHAIN}) AS x WHERE " + _KEY_EQ.format(a="rollup_presence", b="x")
        + " AND rollup_presence.day = x.day AND rollup_presence.prev_day IS NOT x.pd")
    conn.execute(
        "CREATE TEMP TABLE _sgd AS SELECT site_id, dim, value, day, gap, sum(d) AS d FROM ("
        "SELECT p.site_id AS site_id, p.dim AS dim, p.value AS value, p.day AS day, "
        f"coalesce(p.day - p.prev_day, {GAP_NONE}) AS gap, 1 AS d FROM {_CHAIN} "
        "UNION ALL SELECT site_id, dim, value, day, gap, -1 FROM temp._sco) "
        "GROUP BY 1, 2, 3, 4, 5 HAVING sum(d) != 0")
    conn.execute(
        "INSERT INTO rollup_distinct_gaps (site_id, dim, value, day, gap, n) "
        "SELECT site_id, dim, value, day, gap, d FROM temp._sgd WHERE true "
        "ON CONFLICT(site_id, dim, value, day, gap) DO UPDATE SET n = n + excluded.n")
    conn.execute(
        "DELETE FROM rollup_distinct_gaps WHERE n = 0 AND (site_id, dim, value, day, gap) IN "
        "(SELECT site_id, dim, value, day, gap FROM temp._sgd)")


def _refold_people(conn: sqlite3.Connection, now_ms: int, cutoff: int) -> None:
    """Sessions and first-seen times of the sessions and users on the stale rows, recomputed
    from their usable events (a session with none left goes; a first-seen time from before
    cleanup's cutoff stays, like cleanup keeps it)."""
    ok = valid_event_sql("x")
    # per user: through idx_events_site_user (the time bounds of the rule would otherwise tempt
    # the planner into the (site_id, timestamp_ms) index, a scan of the site per user)
    ok_user = ok.replace("x.timestamp_ms BETWEEN", "+x.timestamp_ms BETWEEN")
    assert ok_user != ok
    sessions = "(SELECT session_id FROM temp._sx)"
    conn.execute(
        f"DELETE FROM sessions WHERE session_id IN {sessions} AND NOT EXISTS "
        f"(SELECT 1 FROM events x WHERE x.session_id = sessions.session_id AND {ok})")
    conn.execute(
        "INSERT INTO sessions (session_id, site_id, user_id, first_event_at, last_event_at, "
        "event_count, created_at) SELECT x.session_id, min(x.site_id), max(x.user_id), "
        "min(x.timestamp_ms), max(x.timestamp_ms), count(*), ? FROM events x "
        f"WHERE x.session_id IN {sessions} AND {ok} GROUP BY x.session_id "
        "ON CONFLICT(session_id) DO UPDATE SET "
        "user_id = coalesce(excluded.user_id, sessions.user_id), "
        "first_event_at = excluded.first_event_at, last_event_at = excluded.last_event_at, "
        "event_count = excluded.event_count", (now_ms,))
    users = "(SELECT site_id, user_id FROM temp._sx WHERE user_id IS NOT NULL)"
    conn.execute(
        f"DELETE FROM user_first_seen WHERE (site_id, user_id) IN {users} "
        "AND first_seen_ms >= ? AND NOT EXISTS (SELECT 1 FROM events x WHERE "
        f"x.site_id = user_first_seen.site_id AND x.user_id = user_first_seen.user_id "
        f"AND {ok_user})", (cutoff,))
    conn.execute(
        "INSERT INTO user_first_seen (site_id, user_id, first_seen_ms, last_seen_ms) "
        "SELECT x.site_id, x.user_id, min(x.timestamp_ms), max(x.timestamp_ms) FROM "
        f"(SELECT DISTINCT site_id, user_id FROM temp._sx WHERE user_id IS NOT NULL) u "
        f"CROSS JOIN events x ON x.site_id = u.site_id AND x.user_id = u.user_id WHERE {ok_user} "
        "GROUP BY x.site_id, x.user_id "
        "ON CONFLICT(site_id, user_id) DO UPDATE SET first_seen_ms = CASE "
        "WHEN user_first_seen.first_seen_ms < ? "
        "THEN min(user_first_seen.first_seen_ms, excluded.first_seen_ms) "
        "ELSE excluded.first_seen_ms END, last_seen_ms = excluded.last_seen_ms", (cutoff,))


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
        ensure_watch(conn)
        return _rebuild(conn, now_ms)


def _rebuild(conn: sqlite3.Connection, now_ms: int) -> int:
    """:func:`rebuild` inside the caller's write transaction."""
    if mark_ok(conn):  # rows nobody folded yet count in the history that is kept
        _fold_new(conn, now_ms)
    # days other programs changed: not mistaken for history whose events cleanup deleted
    refold_stale(conn, now_ms)
    _drop_unusable_derived(conn)
    keep = history_days(conn)
    if keep:
        _save_history(conn, keep)
    for table in ROLLUP_TABLES:
        conn.execute(f"DELETE FROM {table}")
    set_meta(conn, HWM_KEY, 0)
    n = _fold_new(conn, now_ms, distinct=False)
    _rebuild_distinct(conn)
    if keep:
        _restore_history(conn)
    discard_stale(conn)  # every day is derived from the events now
    if not mark_ok(conn):
        _set_mark(conn, high_water_mark(conn))
    return n
