"""The guard against a mixed setup: a PULSE file and the events store it was used with.

The file records where its events live (``pulse_meta`` row ``events_store``, see
``pulse_tui.store.events_home``): nothing for its own events table, or the identity of the
ClickHouse store that ``copy-events`` or the first ClickHouse-configured process used. A process
configured with another store is refused before it reads or writes a single event, in words
naming both stores and how to switch, instead of showing zeros or importing into the wrong one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pulse_tui.config import events_store_identity
from pulse_tui.errors import DatabaseError
from pulse_tui.store import events_home

HOW = "(or set events_store in the config file, or PULSE_EVENTS_STORE)"


def _flag_value(identity: str) -> str:
    """What to type after --events-store for a recorded identity (a server's user and
    password are never recorded: the operator fills them in)."""
    if identity.startswith(("clickhouse://", "clickhouses://")):
        scheme, rest = identity.split("://", 1)
        return f"{scheme}://USER:PASSWORD@{rest}"
    return identity


def check_events_home(conn: sqlite3.Connection, db: Path | str, events_store: str, *,
                      claim: bool = True, moving: bool = False) -> None:
    """Refuse (DatabaseError, exit 1) when the file's events live elsewhere than
    ``events_store`` says; when a ClickHouse store first uses the file, record it there
    (``claim``; skipped on a file this process may not write). ``moving``: copy-events, for
    which the file's own events are expected."""
    configured = events_store_identity(events_store)
    recorded = events_home.recorded(conn)
    if recorded is None:
        if configured == "sqlite":
            return
        if not moving and events_home.has_own_events(conn):
            raise DatabaseError(
                f"{db} keeps its events in the file itself (events_store = sqlite), not in "
                f"the configured events store {configured}: copy them there first with "
                f"pulse-tui copy-events --to URL, or run with --events-store sqlite {HOW}")
        if claim:
            try:
                events_home.record(conn, configured)
            except sqlite3.OperationalError:  # a read-only file: nothing to record
                pass
        return
    if recorded == configured:
        return
    now = ("events_store = sqlite, which holds none of them" if configured == "sqlite"
           else f"the events store {configured}")
    raise DatabaseError(
        f"{db}: its events live in the ClickHouse events store {recorded} (recorded in the "
        f"file when copy-events or a process configured with it first used the file), but "
        f"this process is configured with {now}; run with --events-store "
        f"{_flag_value(recorded)} {HOW}")
