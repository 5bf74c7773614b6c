"""Helpers for the Pilot tests: events written by a separate sqlite3 connection (another writer),
and polling that lets the app run in between."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from conftest import FIXED_NOW_MS

from pulse_tui.store.connection import connect


def init_db(path: Path) -> None:
    connect(path).close()


def insert_events(path: Path, rows: Iterable[dict]) -> int:
    """Insert events through a plain sqlite3 connection (not the app's Store); returns count."""
    rows = list(rows)
    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.executemany(
            "INSERT OR IGNORE INTO sites (id, name, domain, created_at) VALUES (?, ?, NULL, ?)",
            [(r["site_id"], r["site_id"], FIXED_NOW_MS) for r in rows],
        )
        conn.executemany(
            "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
            "user_id, url, referrer, country, device_type, created_at) "
            "VALUES (:event_id, :site_id, :event_type, :timestamp_ms, :session_id, :user_id, "
            ":url, :referrer, :country, :device_type, :timestamp_ms)",
            rows,
        )
        conn.commit()
    finally:
        conn.close()
    return len(rows)


def event(n: int, *, site: str = "acme-web", etype: str = "pageview", url: str | None = None,
          user: str | None = None, ts: int | None = None) -> dict:
    return {
        "event_id": f"evt-{n:05d}",
        "site_id": site,
        "event_type": etype,
        "timestamp_ms": ts if ts is not None else FIXED_NOW_MS - 60_000 + n * 1000,
        "session_id": f"sess-{n // 3:04d}",
        "user_id": user if user is not None else f"user-{n % 7}",
        "url": url if url is not None else f"https://{site}.example/page/{n % 5}",
        "referrer": None,
        "country": ("US", "DE", "FR")[n % 3],
        "device_type": ("desktop", "mobile", "tablet")[n % 3],
    }


async def until(pilot, predicate: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll ``predicate`` with a deadline, letting the app process messages in between."""
    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


__all__ = ["init_db", "insert_events", "event", "until"]


async def press_until(pilot, screen_type: type, *keys: str, timeout: float = 5) -> object:
    """Press ``keys``, then wait (with a deadline) until the app shows a ``screen_type`` whose
    mount handlers have run (so its first focus is set before the test types into it)."""
    from tests.conftest import async_wait_until

    if keys:
        await pilot.press(*keys)
    app = pilot.app
    await async_wait_until(lambda: isinstance(app.screen, screen_type) and app.screen.is_mounted,
                           timeout=timeout)
    return app.screen
