"""The SQLite implementation of both interfaces: events and control data in one PULSE file."""

from __future__ import annotations

from pathlib import Path

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
    return Backends(events=SqliteEvents(conn), control=SqliteControl(conn), closers=[conn.close])


__all__ = ["SqliteControl", "SqliteEvents", "open_sqlite"]
