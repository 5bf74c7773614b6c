"""The SQLite implementation of both interfaces: events and control data in one PULSE file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.sqlite.control import SqliteControl
from pulse_tui.backend.sqlite.events import SqliteEvents
from pulse_tui.store.connection import connect


def open_sqlite(path: Path, *, migrate: bool = True) -> Backends:
    """Open (checking, creating or adopting the schema) the file; DatabaseError if unusable.
    ``migrate=False`` never upgrades an existing file (the TUI checked it before it started).

    One connection serves both interfaces, so a cohort saved through the control store and the
    membership computed from the events commit together, as they always have.
    """
    conn = connect(path, migrate=migrate)
    backends = on_connection(conn)
    backends.closers.append(conn.close)
    return backends


def on_connection(conn: sqlite3.Connection, events: Any = None) -> Backends:
    """Both interfaces over a connection the caller keeps (and closes): the events in that file,
    or ``events``, an events backend holding them elsewhere (its copy for this connection)."""
    ev = SqliteEvents(conn) if events is None else events
    return Backends(events=ev, control=SqliteControl(conn, ev), conn=conn)


__all__ = ["SqliteControl", "SqliteEvents", "on_connection", "open_sqlite"]
