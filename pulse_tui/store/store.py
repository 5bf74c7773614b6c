"""The async Store the TUI reads through: one aiosqlite connection, change detection.

Every query is a plain function in this package taking a ``sqlite3.Connection`` (the CLI and
the worker call the same functions); the Store runs them on aiosqlite's connection thread, so
the UI never blocks and there is only one implementation of each query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from pulse_tui.clock import Clock
from pulse_tui.models import Event, Site
from pulse_tui.store import events as events_sql
from pulse_tui.store.connection import connect

T = TypeVar("T")


class Store:
    """Async facade over one PULSE database file."""

    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.clock = clock or Clock.from_env()
        self._db: aiosqlite.Connection | None = None
        self._seen_version: int | None = None
        self._own_writes = 0
        self._seen_own_writes = 0

    async def open(self) -> Store:
        """Open (checking, creating or adopting the schema); raises DatabaseError."""
        path = self.path
        # never upgrades a file: the TUI checked it before taking the screen (SPEC 10)
        db = aiosqlite.Connection(lambda: connect(path, migrate=False), iter_chunk_size=256)
        self._db = await db
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` on the connection's thread."""
        if self._db is None:
            raise RuntimeError("store is not open")
        db = self._db
        # aiosqlite queues callables on its thread; _execute is that queue's entry point
        return await db._execute(lambda: fn(db._conn, *args, **kwargs))  # noqa: SLF001

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like run, for functions that write: our own commits also count as a change."""
        result = await self.run(fn, *args, **kwargs)
        self._own_writes += 1
        return result

    # ------------------------------------------------------------------ change detection
    async def changed(self) -> bool:
        """True when another connection committed (PRAGMA data_version) or we wrote."""
        version = await self.run(_data_version)
        own = self._own_writes
        first = self._seen_version is None
        changed = not first and (version != self._seen_version or own != self._seen_own_writes)
        self._seen_version = version
        self._seen_own_writes = own
        return changed

    # ------------------------------------------------------------------ queries
    async def tail_events(self, *, after_seq: int = 0, site_id: str | None = None,
                          limit: int = 500) -> list[Event]:
        return await self.run(events_sql.tail_events, after_seq=after_seq, site_id=site_id,
                              limit=limit)

    async def search_events(self, *, text: str = "", event_type: str | None = None,
                            site_id: str | None = None, limit: int = 300) -> list[Event]:
        return await self.run(events_sql.search_events, text=text, event_type=event_type,
                              site_id=site_id, limit=limit)

    async def sites(self) -> list[Site]:
        return await self.run(events_sql.list_sites)


def _data_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA data_version").fetchone()[0]
