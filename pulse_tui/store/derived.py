"""Derived tables kept from the events: sessions, first-seen times and the rollups.

Every writer (importer, simulator) calls :func:`catch_up` inside the transaction that inserted
its rows, and the worker calls it for rows other programs inserted. Rows are found through a
rowid high-water mark in ``pulse_meta``, so each event is folded in exactly once and no full
rescan is ever needed. ``sessions`` rows are recomputed from the events of the touched sessions,
so they stay exact whatever order files arrive in and however often a file is imported.
"""

from __future__ import annotations

import sqlite3

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
HWM_KEY = "derived_rowid"
DIMENSIONS = ("event_type", "url", "referrer", "country", "device_type")

CHUNK_ROWS = 200_000


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


def _fold(conn: sqlite3.Connection, lo: int, hi: int, now_ms: int) -> None:
    """Fold events with lo < rowid <= hi into every derived table."""
    rng = (lo, hi)
    # sessions: recompute touched sessions from all their events (exact, idempotent)
    conn.execute(
        """
        INSERT INTO sessions (session_id, site_id, user_id, first_event_at, last_event_at,
                              event_count, created_at)
        SELECT e.session_id, min(e.site_id), max(e.user_id), min(e.timestamp_ms),
               max(e.timestamp_ms), count(*), ?
        FROM events e
        WHERE e.session_id IN (SELECT session_id FROM events WHERE rowid > ? AND rowid <= ?)
        GROUP BY e.session_id
        ON CONFLICT(session_id) DO UPDATE SET
            user_id = coalesce(excluded.user_id, sessions.user_id),
            first_event_at = excluded.first_event_at,
            last_event_at = excluded.last_event_at,
            event_count = excluded.event_count
        """,
        (now_ms, *rng),
    )
    conn.execute(
        """
        INSERT INTO user_first_seen (site_id, user_id, first_seen_ms, last_seen_ms)
        SELECT site_id, user_id, min(timestamp_ms), max(timestamp_ms)
        FROM events WHERE rowid > ? AND rowid <= ? AND user_id IS NOT NULL
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
        FROM events WHERE rowid > ? AND rowid <= ? GROUP BY 1, 2
        ON CONFLICT(site_id, day) DO UPDATE SET events = events + excluded.events
        """,
        rng,
    )
    conn.execute(
        f"""
        INSERT INTO rollup_hourly (site_id, hour, events)
        SELECT site_id, timestamp_ms / {HOUR_MS}, count(*)
        FROM events WHERE rowid > ? AND rowid <= ? GROUP BY 1, 2
        ON CONFLICT(site_id, hour) DO UPDATE SET events = events + excluded.events
        """,
        rng,
    )
    conn.execute(
        f"""
        INSERT INTO rollup_daily_users (site_id, day, user_id, events)
        SELECT site_id, timestamp_ms / {DAY_MS}, user_id, count(*)
        FROM events WHERE rowid > ? AND rowid <= ? AND user_id IS NOT NULL GROUP BY 1, 2, 3
        ON CONFLICT(site_id, day, user_id) DO UPDATE SET events = events + excluded.events
        """,
        rng,
    )
    conn.execute(
        f"""
        INSERT OR IGNORE INTO rollup_daily_sessions (site_id, day, session_id)
        SELECT DISTINCT site_id, timestamp_ms / {DAY_MS}, session_id
        FROM events WHERE rowid > ? AND rowid <= ?
        """,
        rng,
    )
    for dim in DIMENSIONS:
        conn.execute(
            f"""
            INSERT INTO rollup_daily_dims (site_id, dim, value, day, events)
            SELECT site_id, '{dim}', coalesce({dim}, ''), timestamp_ms / {DAY_MS}, count(*)
            FROM events WHERE rowid > ? AND rowid <= ? GROUP BY 1, 3, 4
            ON CONFLICT(site_id, dim, day, value) DO UPDATE SET events = events + excluded.events
            """,
            rng,
        )


def catch_up(conn: sqlite3.Connection, now_ms: int, *, max_rows: int | None = None) -> int:
    """Fold every event above the high-water mark into the derived tables.

    Must run inside a write transaction (the caller's, so the insert and its derived rows
    commit together). Returns the number of rowids folded.
    """
    hwm = high_water_mark(conn)
    top = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
    if top < hwm:  # events were deleted from the top (rare); nothing new to fold
        set_meta(conn, HWM_KEY, top)
        return 0
    if max_rows is not None:
        top = min(top, hwm + max_rows)
    lo = hwm
    while lo < top:
        hi = min(top, lo + CHUNK_ROWS)
        _fold(conn, lo, hi, now_ms)
        lo = hi
    set_meta(conn, HWM_KEY, top)
    return top - hwm


def catch_up_tx(conn: sqlite3.Connection, now_ms: int) -> int:
    """catch_up in its own short write transaction (the worker's path for foreign writes)."""
    if pending_rows(conn) == 0:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = catch_up(conn, now_ms)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return n


ROLLUP_TABLES = (
    "rollup_daily",
    "rollup_hourly",
    "rollup_daily_users",
    "rollup_daily_sessions",
    "rollup_daily_dims",
)


def rebuild(conn: sqlite3.Connection, now_ms: int) -> int:
    """Rebuild sessions, first-seen times and every rollup from the events (one transaction).

    First-seen times only ever move earlier, so they survive a rebuild after cleanup.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in ROLLUP_TABLES:
            conn.execute(f"DELETE FROM {table}")
        set_meta(conn, HWM_KEY, 0)
        n = catch_up(conn, now_ms)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return n
