"""The worker on a database it cannot use (issue 15, item 6): a read-only file stops it with
the reason instead of "lease check failed" every second forever; a locked one is said once,
retried less and less often, and taken up again when it frees."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pulse_tui.config import Settings
from pulse_tui.store.connection import connect
from pulse_tui.worker import WorkerService
from pulse_tui.worker import service as service_mod
from pulse_tui.worker.events import RUNNING, STANDBY, STOPPED
from tests.conftest import wait_until


def test_embedded_worker_stops_on_a_read_only_database(
        pulse_settings: Settings, monkeypatch: pytest.MonkeyPatch,
        make_worker: Callable[..., tuple[WorkerService, Any]],
        caplog: pytest.LogCaptureFixture) -> None:
    connect(pulse_settings.db).close()
    uri = f"{Path(pulse_settings.db).resolve().as_uri()}?mode=ro"

    def read_only(path: Any, **_: Any) -> sqlite3.Connection:  # what chmod 444 gives a user
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    monkeypatch.setattr(service_mod, "connect", read_only)
    caplog.set_level(logging.INFO, logger="pulse_tui")
    worker, _ = make_worker()
    wait_until(lambda: worker.state.state == STOPPED and worker.error is not None)
    assert "read-only" in str(worker.error) and str(pulse_settings.db) in str(worker.error)
    assert "read-only" in worker.state.detail  # what the TUI's header and notice show
    assert sum("lease check failed" in r.getMessage() for r in caplog.records) == 0
    assert not any(r.exc_info for r in caplog.records)


def test_locked_database_is_said_once_then_retried_less_often(
        pulse_settings: Settings, monkeypatch: pytest.MonkeyPatch,
        make_worker: Callable[..., tuple[WorkerService, Any]],
        caplog: pytest.LogCaptureFixture) -> None:
    connect(pulse_settings.db).close()

    def impatient(path: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(path, **kwargs)
        conn.execute("PRAGMA busy_timeout = 0")  # "locked" at once, not after 10 s
        return conn

    monkeypatch.setattr(service_mod, "connect", impatient)
    calls: list[float] = []
    real_acquire = WorkerService._acquire_lease

    def counting(self: WorkerService, conn: Any) -> bool:
        calls.append(0.0)
        return real_acquire(self, conn)

    monkeypatch.setattr(WorkerService, "_acquire_lease", counting)
    holder = sqlite3.connect(pulse_settings.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    caplog.set_level(logging.INFO, logger="pulse_tui")
    try:
        worker, _ = make_worker(standby_poll=0.02)
        wait_until(lambda: len(calls) >= 5)
        assert worker.state.state == STANDBY and "locked" in worker.state.detail
        said = [r for r in caplog.records if "lease check failed" in r.getMessage()]
        assert len(said) == 1 and "locked" in said[0].getMessage()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_until(lambda: worker.state.state == RUNNING, timeout=30)
    assert any("works again" in r.getMessage() for r in caplog.records)
