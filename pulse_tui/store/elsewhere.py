"""Which PULSE files of this process keep their events in another store (ClickHouse).

When ``events_store`` is not ``sqlite``, the events backend registers itself here for its SQLite
file. The store functions that read events (cohort membership, alert metrics, cleanup, the
retention grid) ask :func:`events_of` first, so every caller (the TUI, the CLI, the worker's
jobs on their own connections) reads the events where they are, never the file's empty table.
With nothing registered (the default) this costs one dict lookup.
"""

from __future__ import annotations

import sqlite3
from typing import Any

_BY_FILE: dict[str, Any] = {}


def _file_of(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else ""


def register(conn: sqlite3.Connection, events: Any) -> None:
    _BY_FILE[_file_of(conn)] = events


def unregister(conn: sqlite3.Connection, events: Any) -> None:
    key = _file_of(conn)
    if _BY_FILE.get(key) is events:
        del _BY_FILE[key]


def events_of(conn: sqlite3.Connection) -> Any | None:
    """The events backend holding this file's events in this process, or None (SQLite)."""
    if not _BY_FILE:
        return None
    return _BY_FILE.get(_file_of(conn))
