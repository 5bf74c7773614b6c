"""SQL for events and sites: writing batches, tailing new rows, counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from pulse_tui.models import SEARCH_SCAN, Event, NewEvent, Site
from pulse_tui.store.derived import VALID_EVENT

EVENT_COLUMNS = (
    "event_id, site_id, event_type, timestamp_ms, session_id, user_id, url, referrer, "
    "country, device_type, created_at"
)

_STAGE = "pulse_events_stage"
STAGE_ROWS = 10_000


def insert_rows(conn: sqlite3.Connection, rows: Sequence[Sequence[object]]) -> int:
    """INSERT OR IGNORE events rows (``EVENT_COLUMNS`` order) inside the caller's transaction,
    in arrival order (the first of repeated ids wins); returns how many were inserted.

    Staged: the rows go into a temp table, then into ``events`` with one INSERT ... SELECT per
    ``STAGE_ROWS``. ``events`` has INSERT triggers (derived.REPLACE_BEFORE_TRIGGER), and a
    statement on a table with triggers keeps a statement journal of the pages it changes:
    one statement per row (executemany) copied the index pages at every row, making the
    import about twice as slow; one per chunk copies each page once. The count is the
    statements' own rows (rowcount), never what the triggers write."""
    if not rows:
        return 0
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ({EVENT_COLUMNS})")
    inserted = 0
    for i in range(0, len(rows), STAGE_ROWS):
        conn.executemany(f"INSERT INTO temp.{_STAGE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         rows[i:i + STAGE_ROWS])
        inserted += conn.execute(
            f"INSERT OR IGNORE INTO events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} "
            f"FROM temp.{_STAGE} ORDER BY rowid").rowcount
        conn.execute(f"DELETE FROM temp.{_STAGE}")
    return inserted


def ensure_sites(conn: sqlite3.Connection, site_ids: Iterable[str], now_ms: int) -> int:
    """Register unknown site ids (name = id). Returns how many were new."""
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO sites (id, name, domain, created_at) VALUES (?, ?, NULL, ?)",
        [(s, s, now_ms) for s in set(site_ids) if s],
    )
    return conn.total_changes - before


def insert_events(conn: sqlite3.Connection, events: Sequence[NewEvent], now_ms: int) -> int:
    """INSERT OR IGNORE a batch (inside the caller's transaction); returns rows inserted.

    Rows whose event_id is already stored are skipped: the difference is the duplicates.
    """
    return insert_rows(
        conn,
        [
            (
                e.event_id, e.site_id, e.event_type, e.timestamp_ms, e.session_id, e.user_id,
                e.url, e.referrer, e.country, e.device_type, now_ms,
            )
            for e in events
        ],
    )


def _event(row: Sequence) -> Event:
    return Event(*row)


# the newest arrivals a site-filtered tail reads by rowid before it turns to the site's index
TAIL_WINDOW = 50_000


def tail_events(
    conn: sqlite3.Connection,
    *,
    after_seq: int = 0,
    site_id: str | None = None,
    limit: int = 500,
) -> list[Event]:
    """Newest usable events (``derived.VALID_EVENT``) by arrival (rowid), newest first, only
    those with rowid > after_seq.

    With a site, the newest ``TAIL_WINDOW`` arrivals are read backwards by rowid first (left to
    itself SQLite takes the site's index and sorts all of the site's rows: 3 s for a site's 3.3M
    of 10M events); only when they hold fewer than ``limit`` of the site's events are the older
    ones read through the site's index (a rare site: few rows to sort)."""
    if not site_id:
        sql = (f"SELECT rowid, {EVENT_COLUMNS} FROM events WHERE rowid > ? AND {VALID_EVENT} "
               "ORDER BY rowid DESC LIMIT ?")
        return [_event(r) for r in conn.execute(sql, (after_seq, limit))]
    top = conn.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
    lo = max(after_seq, top - TAIL_WINDOW)
    recent = (f"SELECT rowid, {EVENT_COLUMNS} FROM events NOT INDEXED WHERE rowid > ? "
              f"AND site_id = ? AND {VALID_EVENT} ORDER BY rowid DESC LIMIT ?")
    rows = [_event(r) for r in conn.execute(recent, (lo, site_id, limit))]
    if len(rows) < limit and lo > after_seq:
        older = (f"SELECT rowid, {EVENT_COLUMNS} FROM events WHERE rowid > ? AND rowid <= ? "
                 f"AND site_id = ? AND {VALID_EVENT} ORDER BY rowid DESC LIMIT ?")
        rows += [_event(r) for r in conn.execute(older, (after_seq, lo, site_id,
                                                         limit - len(rows)))]
    return rows



_SEARCH_HAY = " || ' ' || ".join(
    f"coalesce({c}, '')" for c in ("event_type", "site_id", "user_id", "url", "referrer",
                                   "country", "device_type", "session_id", "event_id"))


def search_events(
    conn: sqlite3.Connection,
    *,
    text: str = "",
    event_type: str | None = None,
    site_id: str | None = None,
    scan: int = SEARCH_SCAN,
    limit: int = 300,
) -> list[Event]:
    """The newest events (by arrival) among the last ``scan`` arrivals whose type, site, user,
    url, referrer, country, device, session or event id contains ``text`` (ASCII letters
    case-insensitive), optionally of one type: what the Live filter finds in the database."""
    top = conn.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
    sql = f"SELECT rowid, {EVENT_COLUMNS} FROM events WHERE rowid > ?"
    params: list[object] = [top - scan]
    if site_id:
        sql += " AND site_id = ?"
        params.append(site_id)
    if event_type:
        sql += " AND event_type = ?"
        params.append(event_type)
    if text:
        sql += f" AND instr(lower({_SEARCH_HAY}), lower(?)) > 0"
        params.append(text)
    sql += " ORDER BY rowid DESC LIMIT ?"
    params.append(limit)
    return [_event(r) for r in conn.execute(sql, params)]






def list_sites(conn: sqlite3.Connection) -> list[Site]:
    return [Site(*r) for r in conn.execute(
        "SELECT id, name, domain, created_at FROM sites ORDER BY id"
    )]


def rows_after(conn: sqlite3.Connection, after_rowid: int, limit: int
               ) -> list[tuple[object, ...]]:
    """(rowid, event_id .. device_type, created_at) of the events after a rowid, in arrival
    order (copy-events)."""
    return conn.execute(f"SELECT rowid, {EVENT_COLUMNS} FROM events WHERE rowid > ? "
                        "ORDER BY rowid LIMIT ?", (after_rowid, limit)).fetchall()


def all_users(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    """Every users row in the seed's column order (copy-events)."""
    return conn.execute("SELECT user_id, site_id, name, email, company, plan, created_at, "
                        "updated_at FROM users ORDER BY user_id").fetchall()


def upsert_sites(conn: sqlite3.Connection, rows: Sequence[tuple[str, str | None, str | None]],
                 now_ms: int) -> None:
    """(id, name, domain) sites: new ones inserted, existing ones keep a name/domain they have."""
    conn.executemany(
        "INSERT INTO sites (id, name, domain, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET name = coalesce(sites.name, excluded.name), "
        "domain = coalesce(sites.domain, excluded.domain)",
        [(s, n, d, now_ms) for s, n, d in rows],
    )


def insert_new_users(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """users rows (user_id, site_id, name, email, company, plan, created_at, updated_at); a
    user_id already stored is left as it is."""
    conn.executemany(
        """
        INSERT INTO users (user_id, site_id, name, email, company, plan, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(user_id) DO NOTHING
        """,
        rows,
    )


def newest_seq(conn: sqlite3.Connection) -> int:
    """The newest arrival number (rowid; never reused: cleanup keeps the top row)."""
    return conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]


def data_mark(conn: sqlite3.Connection) -> str:
    """A mark of the events and users rows that any writer's change moves and that means the
    same on every connection and across restarts (newest event rowid, users count and newest
    update), unlike :func:`data_version`; the periodic cohort job keeps it in pulse_meta."""
    top = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
    n, last = conn.execute("SELECT count(*), coalesce(max(updated_at), 0) FROM users").fetchone()
    return f"{top}:{n}:{last}"


def data_version(conn: sqlite3.Connection) -> int:
    """SQLite's PRAGMA data_version: changes when another connection commits (cheap)."""
    return conn.execute("PRAGMA data_version").fetchone()[0]
