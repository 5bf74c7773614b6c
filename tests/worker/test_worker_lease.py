"""One worker per database (lease, standby, takeover) and one database per import folder."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pulse_tui.config import Settings
from pulse_tui.store import lease
from pulse_tui.store.connection import connect
from pulse_tui.worker import ImportFinished, WorkerState
from tests.conftest import wait_until
from tests.worker.conftest import scalar, write_events


def test_two_workers_never_both_import(make_worker, pulse_settings: Settings) -> None:
    a, rec_a = make_worker()
    wait_until(lambda: a.state.state == "running")
    b, rec_b = make_worker()
    wait_until(lambda: b.state.state == "standby")
    assert b.state.detail.startswith("lease held by pid ")
    for i in range(4):
        write_events(pulse_settings.import_dir / "events" / f"f{i}.csv", 20, prefix=f"f{i}-")
    wait_until(lambda: len(rec_a.of(ImportFinished)) == 4)
    assert rec_b.of(ImportFinished) == [] and b.state.state == "standby"
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 4
    # a stopped worker releases the lease; the standby takes over at once
    assert a.stop()
    assert a.state.state == "stopped"
    wait_until(lambda: b.state.state == "running")
    write_events(pulse_settings.import_dir / "events" / "later.csv", 5, prefix="l")
    wait_until(lambda: rec_b.of(ImportFinished))
    assert len(rec_a.of(ImportFinished)) == 4
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 85
    states = [e.state for e in rec_b.of(WorkerState)]
    assert states[:2] == ["standby", "running"]


def test_standby_logs_once_and_takes_over_an_expired_lease(
        make_worker, pulse_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    conn = connect(pulse_settings.db)
    now = int(time.time() * 1000)
    assert lease.try_acquire(conn, "dead-worker", now_ms=now, pid=4242, host="elsewhere",
                             ttl_ms=2500)
    conn.close()
    caplog.set_level(logging.INFO, logger="pulse_tui.worker")
    worker, rec = make_worker()
    wait_until(lambda: worker.state.state == "standby")
    assert worker.state.detail == "lease held by pid 4242 on host elsewhere"
    write_events(pulse_settings.import_dir / "events" / "waiting.csv", 3)
    wait_until(lambda: worker.state.state == "running", timeout=10)
    wait_until(lambda: rec.of(ImportFinished))
    standby_lines = [r for r in caplog.records if r.getMessage().startswith("standby:")]
    assert len(standby_lines) == 1  # about 50 polls, one line
    holder = scalar(pulse_settings.db, "SELECT holder FROM worker_lease")
    assert holder == worker.holder


def test_import_dir_shared_by_two_databases_is_refused(make_worker, pulse_settings: Settings,
                                                       tmp_path: Path) -> None:
    a, _ = make_worker()
    wait_until(lambda: a.state.state == "running")
    other = replace(pulse_settings, db=tmp_path / "other.db")
    b, rec_b = make_worker(other)
    wait_until(lambda: b.state.state == "stopped" and b.error is not None)
    assert "is in use by the worker of database" in b.state.detail
    assert str(pulse_settings.db.resolve()) in b.state.detail
    assert a.state.state == "running"
    # b gave its own database's lease back
    assert scalar(other.db, "SELECT count(*) FROM worker_lease") == 0
