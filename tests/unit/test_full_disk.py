"""A full disk (SQLite's max_page_count on the connection stands in for it) is reported as
"disk full": the rollback that follows never replaces the original error, nothing half-written
stays, and a scheduled job's outcome says so in our words."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pulse_tui.clock import Clock
from pulse_tui.store import imports
from pulse_tui.store.connection import SQLITE_FULL, connect, describe_error, error_code
from pulse_tui.store.tx import write_transaction
from pulse_tui.worker.scheduler import JobContext, PeriodicJob, Scheduler

T0 = 1_764_000_000_000


def full_soon(path: Path, pages_left: int = 20) -> sqlite3.Connection:
    conn = connect(path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + pages_left}")
    return conn


def rows(n: int, start: int = 0) -> list[tuple[object, ...]]:
    return [(f"e{i}", "site-a", "pageview", T0 + i, f"s{i // 5}", f"u{i % 7}", "/" + "x" * 200,
             None, "US", "mobile", T0) for i in range(start, start + n)]


def test_events_batch_on_a_full_disk_raises_the_full_error(db_path: Path) -> None:
    conn = full_soon(db_path)
    imports.create_job(conn, job_id="j", kind="events", site_id="", file_name="f.csv",
                       file_size=1, source_path=None, now_ms=T0)
    with pytest.raises(sqlite3.OperationalError) as info:
        imports.write_events_batch(conn, "j", rows(5_000), [], imports.Checkpoint(5_000, 9, 9),
                                   T0)
    assert error_code(info.value) == SQLITE_FULL
    assert "cannot rollback" not in str(info.value)
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    job = imports.get_job(conn, "j")
    assert job is not None and job.processed_records == 0 and job.checkpoint_rows == 0
    conn.close()


def test_write_transaction_keeps_the_original_error(db_path: Path) -> None:
    conn = full_soon(db_path)
    conn.execute("CREATE TABLE IF NOT EXISTS filler (x TEXT)")
    with pytest.raises(sqlite3.OperationalError) as info, write_transaction(conn):
        conn.executemany("INSERT INTO filler VALUES (?)", [("y" * 4000,) for _ in range(500)])
    assert error_code(info.value) == SQLITE_FULL
    assert conn.execute("SELECT count(*) FROM filler").fetchone()[0] == 0
    assert describe_error(info.value, db_path).startswith("disk full")
    conn.close()


def test_scheduled_job_on_a_full_disk_says_disk_full(db_path: Path) -> None:
    connect(db_path).close()

    def fill(ctx: JobContext) -> str:
        ctx.conn.execute("CREATE TABLE IF NOT EXISTS filler (x TEXT)")
        with write_transaction(ctx.conn):
            ctx.conn.executemany("INSERT INTO filler VALUES (?)",
                                 [("y" * 4000,) for _ in range(500)])
        return "filled"

    outcomes: list[tuple[str, bool, str]] = []
    sched = Scheduler([PeriodicJob("fill", 60, fill)], connect=lambda: full_soon(db_path),
                      clock=Clock(T0), on_ran=lambda n, ok, out, ms: outcomes.append((n, ok, out)))
    try:
        assert sched.run_due() == ["fill"]
        assert sched.wait_idle(10)
    finally:
        assert sched.shutdown(timeout=10)
    assert len(outcomes) == 1
    name, ok, outcome = outcomes[0]
    assert not ok and outcome.startswith("error: disk full") and "rollback" not in outcome
