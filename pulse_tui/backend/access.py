"""The async door the TUI reaches data through: one database thread, change detection.

The interfaces are synchronous (the CLI and the worker call them directly); the TUI must never
block its event loop, so :class:`Store` runs every call on one dedicated thread (SQLite
connections belong to the thread that opened them) and awaits the result::

    rows = await app.store.read(lambda d: d.events.daily(site_id, rng))
    await app.store.write(lambda d: d.control.delete_rule(rule_id))

``write`` counts our own commits as a change even when the call was cancelled or failed, so the
panes reload after it either way (the write may have committed on the database thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pulse_tui.backend.interface import Backends, ChangeToken
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import Clock
from pulse_tui.errors import ReadOnlyError
from pulse_tui.models import Site

T = TypeVar("T")


class Store:
    """Async facade over one PULSE database: its events backend and its control store."""

    def __init__(self, path: Path, clock: Clock | None = None, *,
                 events_store: str = "sqlite", cluster: str | None = None,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self.clock = clock or Clock.from_env()
        self.events_store = events_store
        self.cluster = cluster
        self.read_only = read_only
        self._backends: Backends | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._seen_token: ChangeToken | None = None
        self._first = True
        self._own_writes = 0
        self._seen_own_writes = 0

    async def open(self) -> Store:
        """Open (checking, creating or adopting the schema); raises DatabaseError."""
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pulse-db")
        try:
            # never upgrades a file: the TUI checked it before taking the screen (SPEC 10)
            self._backends = await self._on_thread(
                lambda: open_backends(self.path, self.events_store, cluster=self.cluster,
                                      migrate=False))
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise
        return self

    async def close(self) -> None:
        backends, thread = self._backends, self._thread
        self._backends = None
        self._thread = None
        if thread is None:
            return
        if backends is not None:
            await asyncio.get_running_loop().run_in_executor(thread, backends.close)
        thread.shutdown(wait=True)

    @property
    def is_open(self) -> bool:
        return self._backends is not None

    async def _on_thread(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def read(self, fn: Callable[[Backends], T]) -> T:
        """Run ``fn(backends)`` on the database thread."""
        backends = self._backends
        if backends is None:
            raise RuntimeError("store is not open")
        return await self._on_thread(lambda: fn(backends))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(connection, *args)`` with the PULSE file's raw sqlite3 connection, on the database
        thread: for tests and diagnostics only (the app and the panes use read and write; a test
        proves it). Control data always lives in that file, whatever holds the events."""
        return await self.read(lambda d: fn(d.conn, *args, **kwargs))

    async def write(self, fn: Callable[[Backends], T]) -> T:
        """Like read, for calls that write: our own commit also counts as a change (counted in
        ``finally``: a write that was cancelled or failed may have committed meanwhile).
        A read-only store refuses (ReadOnlyError) before anything runs."""
        if self.read_only:
            raise ReadOnlyError("read-only session: nothing can be changed here")
        try:
            return await self.read(fn)
        finally:
            self._own_writes += 1

    # ------------------------------------------------------------------ change detection
    async def changed(self) -> bool:
        """True when another writer committed (the backend's change token) or we wrote."""
        token = await self.read(lambda d: d.events.change_token())
        own = self._own_writes
        changed = not self._first and (token != self._seen_token or own != self._seen_own_writes)
        self._first = False
        self._seen_token = token
        self._seen_own_writes = own
        return changed

    # ------------------------------------------------------------------ what the shell reads
    async def sites(self) -> list[Site]:
        return await self.read(lambda d: d.events.sites())
