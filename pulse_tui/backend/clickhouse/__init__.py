"""Events in ClickHouse (``events_store`` = ``clickhouse://``, ``clickhouses://`` or ``chdb://``):
the schema (schema.py), one connection shape over chdb and clickhouse-connect (connection.py)
and the events backend (backend.py). Control data stays in the PULSE SQLite file."""

from __future__ import annotations

from pathlib import Path

from pulse_tui.backend.interface import Backends


def open_clickhouse(path: Path, url: str, *, cluster: str | None = None,
                    migrate: bool = True) -> Backends:
    """The PULSE SQLite file for control data and ClickHouse at ``url`` for the events (the
    schema is created or migrated on open; ``migrate=False`` never upgrades the SQLite file)."""
    from pulse_tui.backend.clickhouse.backend import ClickHouseEvents
    from pulse_tui.backend.clickhouse.connection import connect_clickhouse
    from pulse_tui.backend.clickhouse.schema import ensure_schema
    from pulse_tui.backend.sqlite.control import SqliteControl
    from pulse_tui.backend.sqlite.home import check_events_home
    from pulse_tui.store.connection import connect

    conn = connect(path, migrate=migrate)
    try:  # the file first: events recorded in another store are refused before any is read
        check_events_home(conn, path, url, claim=False)
        ch = connect_clickhouse(url)
    except BaseException:
        conn.close()
        raise
    try:
        ensure_schema(ch, cluster)
        check_events_home(conn, path, url)  # it works: the file now says its events are here
    except BaseException:
        ch.close()
        conn.close()
        raise
    events = ClickHouseEvents(conn, ch, cluster)
    return Backends(events=events, control=SqliteControl(conn, events),
                    closers=[conn.close, events.close], conn=conn)
