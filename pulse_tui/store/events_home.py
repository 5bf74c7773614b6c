"""Where this PULSE file's events live: the ``events_store`` row of ``pulse_meta``.

Absent means the file's own ``events`` table (SQLite, the default). ``copy-events`` and the
first process configured with a ClickHouse store that opens the file write the store's
identity there (no user or password: see ``config.events_store_identity``), so a process
configured otherwise is refused in words instead of showing zeros or importing into the wrong
store (``pulse_tui.backend.sqlite.home``).
"""

from __future__ import annotations

import sqlite3

from pulse_tui.store.derived import get_meta, set_meta
from pulse_tui.store.tx import write_transaction

KEY = "events_store"


def recorded(conn: sqlite3.Connection) -> str | None:
    """The recorded events store identity, or None (the file's own events table)."""
    return get_meta(conn, KEY) or None


def record(conn: sqlite3.Connection, identity: str) -> None:
    with write_transaction(conn):
        set_meta(conn, KEY, identity)


def has_own_events(conn: sqlite3.Connection) -> bool:
    """True when the file's own events table holds a row (one index probe)."""
    return conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None


def forget(conn: sqlite3.Connection) -> None:
    """Back to the file's own events table (copy-events could not open its target)."""
    with write_transaction(conn):
        conn.execute("DELETE FROM pulse_meta WHERE key = ?", (KEY,))
