"""SQL the import worker needs on ``import_jobs``: recovery after a crash, destinations, hooks."""

from __future__ import annotations

import sqlite3

from pulse_tui.store.derived import set_meta
from pulse_tui.store.imports import (  # noqa: F401 (worker API)
    JOB_COLUMNS,
    ImportJob,
    clear_source_identity,
    get_job,
    job_from_row,
    name_value,
    path_value,
    set_result_path,
    source_identity,
)
from pulse_tui.store.tx import write_transaction

UNFINISHED = ("uploading", "processing")
FINISHED = ("completed", "failed")
HOOKS_PENDING_PREFIX = "import_hooks_pending:"


def unfinished_jobs(conn: sqlite3.Connection) -> list[ImportJob]:
    """Jobs still uploading or processing (after a crash: interrupted ones), oldest first."""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM import_jobs "
        "WHERE coalesce(status, 'uploading') IN ('uploading', 'processing') "
        "ORDER BY created_at, rowid"
    ).fetchall()
    return [job_from_row(r) for r in rows]


def unplaced_jobs(conn: sqlite3.Connection) -> list[ImportJob]:
    """Finished jobs whose file has no recorded destination yet (crash before the move)."""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM import_jobs "
        "WHERE status IN ('completed', 'failed') AND result_path IS NULL "
        "AND source_path IS NOT NULL ORDER BY created_at, rowid"
    ).fetchall()
    return [job_from_row(r) for r in rows]


def jobs_with_result(conn: sqlite3.Connection, result_path: str) -> list[ImportJob]:
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM import_jobs WHERE result_path = ? ORDER BY created_at DESC",
        (path_value(result_path),),
    ).fetchall()
    return [job_from_row(r) for r in rows]


def set_destination(conn: sqlite3.Connection, job_id: str, result_path: str) -> None:
    """Record where the file goes and that the after-import hooks are still due (one commit)."""
    with write_transaction(conn):
        conn.execute("UPDATE import_jobs SET result_path = ? WHERE id = ?",
                     (path_value(result_path), job_id))
        set_meta(conn, HOOKS_PENDING_PREFIX + job_id, "1")


def hooks_pending(conn: sqlite3.Connection) -> list[str]:
    """Job ids whose after-import hooks have not run yet."""
    rows = conn.execute(
        "SELECT key FROM pulse_meta WHERE key >= ? AND key < ? ORDER BY key",
        (HOOKS_PENDING_PREFIX, HOOKS_PENDING_PREFIX + "\U0010ffff"),
    ).fetchall()
    return [r[0][len(HOOKS_PENDING_PREFIX):] for r in rows]


def clear_hooks_pending(conn: sqlite3.Connection, job_id: str) -> None:
    conn.execute("DELETE FROM pulse_meta WHERE key = ?", (HOOKS_PENDING_PREFIX + job_id,))


def mark_failed(conn: sqlite3.Connection, job_id: str, message: str, now_ms: int) -> None:
    """End a job as failed with a one-line reason (a job the worker cannot finish)."""
    conn.execute(
        "UPDATE import_jobs SET status = 'failed', message = ?, "
        "completed_at = coalesce(completed_at, ?) WHERE id = ?",
        (name_value(message)[:500], now_ms, job_id),
    )


def insert_failed_job(
    conn: sqlite3.Connection,
    job_id: str,
    *,
    kind: str,
    site_id: str,
    file_name: str,
    file_size: int,
    source_path: str,
    message: str,
    now_ms: int,
) -> None:
    """A failed job for a file the importer could not even start on."""
    conn.execute(
        "INSERT INTO import_jobs (id, site_id, type, status, file_name, file_size, total_records, "
        "processed_records, failed_records, created_at, started_at, completed_at, source_path, "
        "message) VALUES (?, ?, ?, 'failed', ?, ?, 0, 0, 0, ?, ?, ?, ?, ?)",
        (job_id, site_id, kind, name_value(file_name), file_size, now_ms, now_ms, now_ms,
         path_value(source_path), name_value(message)[:500]),
    )


def set_retried(conn: sqlite3.Connection, job_id: str, new_path: str) -> None:
    """Note on a failed job that its file went back into the inbox (as ``new_path``)."""
    conn.execute(
        "UPDATE import_jobs SET message = coalesce(message || ' ', '') || ? WHERE id = ?",
        (name_value(f"(retried as {new_path})"), job_id),
    )


def expire_lease_of(conn: sqlite3.Connection, holder: str) -> bool:
    """End ``holder``'s worker lease now (its process is known to be dead). True if it did."""
    cur = conn.execute("UPDATE worker_lease SET expires_at = 0 WHERE name = 'worker' "
                       "AND holder = ?", (holder,))
    return cur.rowcount > 0


UNMOVED_PREFIX = "import_unmoved:"


def mark_unmoved(conn: sqlite3.Connection, job_id: str, identity: str, reason: str, *,
                 result_path: str | None = None) -> None:
    """The job's file was imported but could not leave the inbox: remember which file it is
    (pulse_tui.safefs.identity) so that no later pass or restart imports it again, and say
    why on the job (once). ``result_path``: where it is linked already, if anywhere."""
    with write_transaction(conn):
        set_meta(conn, UNMOVED_PREFIX + job_id, identity)
        conn.execute("UPDATE import_jobs SET result_path = ?, "
                     "message = substr(coalesce(message || '; ', '') || ?, 1, 500) "
                     "WHERE id = ?", (path_value(result_path), name_value(reason), job_id))


def unmoved(conn: sqlite3.Connection) -> dict[str, str]:
    """job id -> identity of the file each unmoved job left in the inbox."""
    rows = conn.execute(
        "SELECT key, value FROM pulse_meta WHERE key >= ? AND key < ?",
        (UNMOVED_PREFIX, UNMOVED_PREFIX + "\U0010ffff"),
    ).fetchall()
    return {r[0][len(UNMOVED_PREFIX):]: r[1] for r in rows}


def clear_unmoved(conn: sqlite3.Connection, job_id: str) -> None:
    conn.execute("DELETE FROM pulse_meta WHERE key = ?", (UNMOVED_PREFIX + job_id,))


def set_not_moved(conn: sqlite3.Connection, job_id: str, note: str | None) -> None:
    """Nothing of this job is left to move (its file was replaced or changed): result_path ''
    so that recovery never moves the file now under that name, a note why, and the
    after-import hooks still due (one commit, like set_destination)."""
    with write_transaction(conn):
        conn.execute("UPDATE import_jobs SET result_path = '' WHERE id = ?", (job_id,))
        if note:
            conn.execute("UPDATE import_jobs SET message = "
                         "substr(coalesce(message || '; ', '') || ?, 1, 500) WHERE id = ?",
                         (name_value(note), job_id))
        set_meta(conn, HOOKS_PENDING_PREFIX + job_id, "1")
