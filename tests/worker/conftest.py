"""Fixtures for the worker tests: a worker factory that records events, CSV writers, DB reads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.worker import WorkerService

HEADER = "event_id,event_type,timestamp_ms,session_id,site_id,user_id\n"
BASE_TS = 1_764_000_000_000


def event_rows(start: int, count: int, *, prefix: str = "e") -> str:
    return "".join(f"{prefix}{i},pageview,{BASE_TS + i * 1000},s{i // 20},site1,u{i % 50}\n"
                   for i in range(start, start + count))


def write_events(path: Path, count: int, *, prefix: str = "e", bad: int = 0) -> Path:
    """An events CSV with ``count`` good rows and ``bad`` rows with an invalid timestamp."""
    body = HEADER + event_rows(0, count, prefix=prefix)
    body += "".join(f"{prefix}bad{i},click,not-a-time,s1,site1,u1\n" for i in range(bad))
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(body, encoding="utf-8")
    tmp.rename(path)  # appears complete, like rsync does
    return path


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def scalar(db: Path, sql: str, *args: Any) -> Any:
    rows = query(db, sql, *args)
    return rows[0][0] if rows else None


class Recorder:
    """Collects worker events (thread-safe) for assertions."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self._lock = threading.Lock()

    def __call__(self, event: object) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, cls: type) -> list[Any]:
        with self._lock:
            return [e for e in self.events if isinstance(e, cls)]


@pytest.fixture
def make_worker(pulse_settings: Settings, fixed_clock: Clock
                ) -> Iterator[Callable[..., tuple[WorkerService, Recorder]]]:
    started: list[WorkerService] = []

    def factory(settings: Settings | None = None, *, start: bool = True, **kwargs: Any
                ) -> tuple[WorkerService, Recorder]:
        recorder = Recorder()
        kwargs.setdefault("jobs", [])
        kwargs.setdefault("after_import", [])
        kwargs.setdefault("standby_poll", 0.05)
        kwargs.setdefault("rescan_interval", 0.5)
        worker = WorkerService(settings or pulse_settings, fixed_clock, recorder, **kwargs)
        started.append(worker)
        if start:
            worker.start()
        return worker, recorder

    yield factory
    for worker in started:
        assert worker.stop(timeout=10), "worker did not stop"
