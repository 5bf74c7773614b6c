"""SQL for ``scheduler_jobs``: the worker's periodic jobs' last run, outcome and next due time."""

from __future__ import annotations

import sqlite3

from pulse_tui.models import SchedulerJobRow


def list_jobs(conn: sqlite3.Connection) -> list[SchedulerJobRow]:
    """Every recorded periodic job, by name (the Jobs pane reads this)."""
    rows = conn.execute(
        "SELECT name, last_run_at, last_duration_ms, last_outcome, next_run_at "
        "FROM scheduler_jobs ORDER BY name"
    ).fetchall()
    return [SchedulerJobRow(*r) for r in rows]


def load_states(conn: sqlite3.Connection) -> dict[str, SchedulerJobRow]:
    return {row.name: row for row in list_jobs(conn)}


def ensure_job(conn: sqlite3.Connection, name: str, next_run_at: int) -> None:
    """Create the row of a job seen for the first time (due at ``next_run_at``)."""
    conn.execute(
        "INSERT INTO scheduler_jobs (name, next_run_at) VALUES (?, ?) "
        "ON CONFLICT(name) DO NOTHING",
        (name, next_run_at),
    )


def record_run(
    conn: sqlite3.Connection,
    name: str,
    *,
    last_run_at: int,
    duration_ms: int,
    outcome: str,
    next_run_at: int,
) -> None:
    """Store one finished run (an autocommit statement; the row is created when missing)."""
    conn.execute(
        """
        INSERT INTO scheduler_jobs (name, last_run_at, last_duration_ms, last_outcome, next_run_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT(name) DO UPDATE SET
            last_run_at = excluded.last_run_at,
            last_duration_ms = excluded.last_duration_ms,
            last_outcome = excluded.last_outcome,
            next_run_at = excluded.next_run_at
        """,
        (name, last_run_at, duration_ms, outcome, next_run_at),
    )


def set_next_run(conn: sqlite3.Connection, name: str, next_run_at: int) -> None:
    """Make a job due at ``next_run_at`` (e.g. "run now" from the Jobs pane)."""
    ensure_job(conn, name, next_run_at)
    conn.execute("UPDATE scheduler_jobs SET next_run_at = ? WHERE name = ?", (next_run_at, name))
