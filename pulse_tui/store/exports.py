"""SQL for exports: export_jobs definitions, export_runs rows, audience rows, old-run pruning."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from pulse_tui.models import ExportJobRow, ExportRun
from pulse_tui.store.tx import write_transaction

JOB_COLUMNS = ("id", "site_id", "type", "name", "format", "filters", "status", "file_url",
               "scheduled", "created_at", "completed_at", "error")
RUN_COLUMNS = ("id", "export_id", "started_at", "finished_at", "status", "file_path", "rows",
               "error")
_UPDATABLE = frozenset(JOB_COLUMNS) - {"id", "created_at"}


_JOB_SELECT = f"SELECT {', '.join(JOB_COLUMNS)} FROM export_jobs"
_RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM export_runs"


# ---------------------------------------------------------------- definitions
def site_exists(conn: sqlite3.Connection, site_id: str) -> bool:
    return conn.execute("SELECT 1 FROM sites WHERE id = ?", (site_id,)).fetchone() is not None


def get_job(conn: sqlite3.Connection, export_id: str) -> ExportJobRow | None:
    row = conn.execute(f"{_JOB_SELECT} WHERE id = ?", (export_id,)).fetchone()
    return ExportJobRow(*row) if row else None


def list_jobs(conn: sqlite3.Connection, site_id: str | None = None) -> list[ExportJobRow]:
    """Definitions by site, name, id."""
    sql, params = _JOB_SELECT, []
    if site_id is not None:
        sql += " WHERE site_id = ?"
        params.append(site_id)
    sql += " ORDER BY site_id, name, id"
    return [ExportJobRow(*r) for r in conn.execute(sql, params)]


def insert_job(conn: sqlite3.Connection, values: dict[str, Any]) -> None:
    cols = [c for c in JOB_COLUMNS if c in values]
    with write_transaction(conn):
        conn.execute(f"INSERT INTO export_jobs ({', '.join(cols)}) "
                     f"VALUES ({', '.join('?' for _ in cols)})", [values[c] for c in cols])


def update_job(conn: sqlite3.Connection, export_id: str, values: dict[str, Any]) -> bool:
    """Set the given columns (a fixed list); joins the caller's transaction. False: gone."""
    bad = set(values) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable export_jobs columns: {sorted(bad)}")
    if not values:
        return get_job(conn, export_id) is not None
    sets = ", ".join(f"{c} = ?" for c in values)
    with write_transaction(conn):
        cur = conn.execute(f"UPDATE export_jobs SET {sets} WHERE id = ?",
                           [*values.values(), export_id])
    return cur.rowcount > 0


def delete_job(conn: sqlite3.Connection, export_id: str) -> tuple[bool, list[str]]:
    """Delete a definition and its runs; returns (deleted, file paths its runs wrote)."""
    with write_transaction(conn):
        paths = [r[0] for r in conn.execute(
            "SELECT file_path FROM export_runs WHERE export_id = ? AND file_path IS NOT NULL",
            (export_id,))]
        conn.execute("DELETE FROM export_runs WHERE export_id = ?", (export_id,))
        cur = conn.execute("DELETE FROM export_jobs WHERE id = ?", (export_id,))
    return cur.rowcount > 0, paths


# ---------------------------------------------------------------- runs
def running_run(conn: sqlite3.Connection, export_id: str) -> ExportRun | None:
    row = conn.execute(f"{_RUN_SELECT} WHERE export_id = ? AND status = 'running' "
                       "ORDER BY id DESC LIMIT 1", (export_id,)).fetchone()
    return ExportRun(*row) if row else None


def interrupt_runs(conn: sqlite3.Connection, now_ms: int, message: str, *,
                   export_id: str | None = None, started_before: int | None = None) -> int:
    """Mark runs still 'running' as failed (their process died); their export becomes
    'failed' with ``message`` unless a later run exists. Joins the caller's transaction."""
    where, params = "status = 'running'", []
    if export_id is not None:
        where += " AND export_id = ?"
        params.append(export_id)
    if started_before is not None:
        where += " AND started_at < ?"
        params.append(started_before)
    with write_transaction(conn):
        ids = [r[0] for r in conn.execute(f"SELECT DISTINCT export_id FROM export_runs "
                                          f"WHERE {where}", params)]
        cur = conn.execute(f"UPDATE export_runs SET status = 'failed', finished_at = ?, "
                           f"error = ? WHERE {where}", [now_ms, message, *params])
        conn.executemany("UPDATE export_jobs SET status = 'failed', error = ? "
                         "WHERE id = ? AND status = 'running'", [(message, i) for i in ids])
    return cur.rowcount


def start_run(conn: sqlite3.Connection, export_id: str, now_ms: int) -> int:
    """Insert a 'running' run and mark the export running (inside the caller's transaction)."""
    cur = conn.execute("INSERT INTO export_runs (export_id, started_at, status) "
                       "VALUES (?, ?, 'running')", (export_id, now_ms))
    conn.execute("UPDATE export_jobs SET status = 'running' WHERE id = ?", (export_id,))
    run_id = cur.lastrowid
    assert run_id is not None
    return int(run_id)


def finish_run(conn: sqlite3.Connection, run_id: int, export_id: str, *, status: str,
               finished_at: int, file_path: str | None, file_url: str | None,
               rows: int | None, error: str | None, scheduled: str | None) -> None:
    """Record a run's end and the export's new state in one transaction: status, error,
    completed_at and file_url (completed runs only), next run (``scheduled`` JSON text)."""
    with write_transaction(conn):
        conn.execute("UPDATE export_runs SET status = ?, finished_at = ?, file_path = ?, "
                     "rows = ?, error = ? WHERE id = ?",
                     (status, finished_at, file_path, rows, error, run_id))
        if status == "completed":
            conn.execute("UPDATE export_jobs SET status = 'completed', error = NULL, "
                         "completed_at = ?, file_url = ?, scheduled = ? WHERE id = ?",
                         (finished_at, file_url, scheduled, export_id))
        else:
            conn.execute("UPDATE export_jobs SET status = ?, error = ?, scheduled = ? "
                         "WHERE id = ?", (status, error, scheduled, export_id))


def recent_runs(conn: sqlite3.Connection, export_id: str, limit: int = 20) -> list[ExportRun]:
    """Runs of one export, newest first."""
    rows = conn.execute(f"{_RUN_SELECT} WHERE export_id = ? ORDER BY started_at DESC, id DESC "
                        "LIMIT ?", (export_id, limit))
    return [ExportRun(*r) for r in rows]


def last_runs(conn: sqlite3.Connection) -> dict[str, ExportRun]:
    """The latest run of every export, by export id."""
    rows = conn.execute(f"{_RUN_SELECT} WHERE id IN (SELECT max(id) FROM export_runs "
                        "GROUP BY export_id)")
    return {r[1]: ExportRun(*r) for r in rows}


def last_files(conn: sqlite3.Connection) -> dict[str, str]:
    """The file of the latest completed run of every export, by export id."""
    rows = conn.execute("SELECT export_id, file_path FROM export_runs WHERE id IN ("
                        "SELECT max(id) FROM export_runs WHERE status = 'completed' "
                        "AND file_path IS NOT NULL GROUP BY export_id)")
    return {e: p for e, p in rows}


# ---------------------------------------------------------------- audience
def users_rows(conn: sqlite3.Connection, site_id: str, user_ids: Sequence[str]
               ) -> dict[str, tuple[Any, ...]]:
    """(name, email, company, plan, created_at, updated_at) of the users rows of the site
    (or without a site) for the given ids."""
    out: dict[str, tuple[Any, ...]] = {}
    ids = list(dict.fromkeys(u for u in user_ids if u is not None))
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows = conn.execute(
            "SELECT user_id, name, email, company, plan, created_at, updated_at FROM users "
            f"WHERE user_id IN ({', '.join('?' for _ in chunk)}) "
            "AND (site_id = ? OR site_id IS NULL)", [*chunk, site_id])
        for r in rows:
            out[r[0]] = tuple(r[1:])
    return out


# ---------------------------------------------------------------- cleanup
def old_runs(conn: sqlite3.Connection, before_ms: int) -> list[tuple[int, str, str | None]]:
    """(run id, export id, file path) of finished runs started before the cutoff."""
    return [(int(i), e, p) for i, e, p in conn.execute(
        "SELECT id, export_id, file_path FROM export_runs WHERE started_at < ? "
        "AND status != 'running' ORDER BY id", (before_ms,))]


def finished_one_off_jobs(conn: sqlite3.Connection, before_ms: int) -> list[ExportJobRow]:
    """Completed one-off exports finished before the cutoff (candidates for deletion)."""
    rows = conn.execute(
        f"{_JOB_SELECT} WHERE status = 'completed' AND completed_at < ? AND "
        "(scheduled IS NULL OR (json_valid(scheduled) AND "
        "json_extract(scheduled, '$.frequency') = 'once'))", (before_ms,))
    return [ExportJobRow(*r) for r in rows]


def runs_of(conn: sqlite3.Connection, export_ids: Iterable[str]) -> list[tuple[int, str, str | None]]:
    ids = list(export_ids)
    if not ids:
        return []
    return [(int(i), e, p) for i, e, p in conn.execute(
        "SELECT id, export_id, file_path FROM export_runs WHERE export_id IN "
        f"({', '.join('?' for _ in ids)})", ids)]


def delete_runs(conn: sqlite3.Connection, run_ids: Sequence[int], gone_urls: Sequence[str]
                ) -> int:
    """Delete runs by id and clear file_url of exports pointing at a deleted file."""
    with write_transaction(conn):
        before = conn.total_changes
        conn.executemany("DELETE FROM export_runs WHERE id = ?", [(i,) for i in run_ids])
        n = conn.total_changes - before
        conn.executemany("UPDATE export_jobs SET file_url = NULL WHERE file_url = ?",
                         [(u,) for u in gone_urls])
    return n


def delete_jobs(conn: sqlite3.Connection, export_ids: Sequence[str]) -> int:
    """Delete definitions and their remaining runs."""
    with write_transaction(conn):
        before = conn.total_changes
        conn.executemany("DELETE FROM export_jobs WHERE id = ?", [(i,) for i in export_ids])
        n = conn.total_changes - before
        conn.executemany("DELETE FROM export_runs WHERE export_id = ?",
                         [(i,) for i in export_ids])
    return n
