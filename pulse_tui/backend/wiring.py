"""The one place that knows which implementation holds the events (add a backend: one line)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.sqlite import on_connection, open_sqlite
from pulse_tui.backend.sqlite.home import check_events_home
from pulse_tui.config import redact_url
from pulse_tui.errors import UsageError


def _clickhouse(path: Path, url: str, cluster: str | None, *, migrate: bool = True) -> Backends:
    from pulse_tui.backend.clickhouse import open_clickhouse  # the optional extra

    return open_clickhouse(path, url, cluster=cluster, migrate=migrate)


def _sqlite(path: Path, store: str, _cluster: str | None, *, migrate: bool = True) -> Backends:
    backends = open_sqlite(path, migrate=migrate)
    try:  # a file whose events live in ClickHouse is refused, not shown empty
        check_events_home(backends.control.conn, path, store)  # type: ignore[attr-defined]
    except BaseException:
        backends.close()
        raise
    return backends


# events_store scheme -> opener(database path, events_store, cluster, migrate=...); control data
# is always in the SQLite file (``migrate=False``: never upgrade an existing file's schema)
BACKENDS: dict[str, Callable[..., Backends]] = {
    "sqlite": _sqlite,
    "chdb": _clickhouse, "clickhouse": _clickhouse, "clickhouses": _clickhouse,
}


def open_backends(db_path: Path, events_store: str = "sqlite", *,
                  cluster: str | None = None, migrate: bool = True) -> Backends:
    """The events backend and the control store for one PULSE database (``cluster``: the
    ClickHouse cluster its schema is created on, ``clickhouse_cluster``; ``migrate=False``:
    never upgrade an existing file's schema)."""
    opener = BACKENDS.get(events_store.split(":", 1)[0].lower())
    if opener is None:
        raise UsageError(f"unknown events store {redact_url(events_store)!r} "
                         f"(known: {', '.join(sorted(BACKENDS))})")
    return opener(Path(db_path), events_store, cluster, migrate=migrate)


def backends_on(target: Backends | sqlite3.Connection) -> Backends:
    """The services' entry: ``Backends`` as given, or a bare connection to a PULSE file whose
    events live in it (tests, one-off callers): the SQLite implementation over it."""
    if isinstance(target, Backends):
        return target
    return on_connection(target)


def backends_for_thread(shared: Backends | None, conn: sqlite3.Connection) -> Backends:
    """Both interfaces over ``conn``, another connection to the same PULSE file (a worker job's
    own thread): the events where ``shared`` keeps them (``bound_to(conn)``), or in the file."""
    if shared is None:
        return on_connection(conn)
    return on_connection(conn, shared.events.bound_to(conn))


def control_conn(target: Backends | sqlite3.Connection) -> sqlite3.Connection:
    """The PULSE SQLite file's connection of ``target`` (Backends or the connection itself):
    the services that only touch control data write it with the store functions."""
    return target.conn if isinstance(target, Backends) else target
