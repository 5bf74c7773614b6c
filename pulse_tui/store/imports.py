"""SQL for imports: import_jobs rows and checkpoints, batch writes of events/users/members, rejects."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from pulse_tui.models import BatchOutcome, Checkpoint, ImportJob
from pulse_tui.store import derived
from pulse_tui.store.events import ensure_sites, insert_rows
from pulse_tui.store.tx import rollback_quietly, write_transaction

ERRORS_SAMPLE = 20  # rejects kept in import_jobs.errors (the rest live in import_rejects)

RejectRow = tuple[int, str | None, str | None, str]  # line, column, value, reason


JOB_COLUMNS = (  # in ImportJob's field order; rows other programs wrote may hold NULLs
    "id, site_id, type, coalesce(status, 'uploading'), file_name, file_size, total_records, "
    "coalesce(processed_records, 0), coalesce(failed_records, 0), "
    "coalesce(duplicate_records, 0), errors, created_at, started_at, completed_at, "
    "source_path, result_path, checkpoint_rows, checkpoint_offset, checkpoint_line, message"
)


# ------------------------------------------------------------------ file names and paths
# A file name may hold bytes that are not UTF-8 (Python keeps them as surrogates, which SQLite
# text cannot hold). ``file_name`` stores the name as shown to people (such bytes as \xNN);
# ``source_path`` / ``result_path`` store the path itself: text when it is UTF-8, else its
# bytes as a BLOB, so it round-trips exactly (job_from_row turns it back into a str).
SOURCE_IDENTITY_PREFIX = "import_source:"  # pulse_meta: the file a job reads (dev:ino:size:mtime)


def path_value(path: str | os.PathLike[str] | None) -> str | bytes | None:
    """A path as stored in import_jobs (text, or a BLOB of its bytes when it is not UTF-8)."""
    if path is None:
        return None
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def name_value(name: str) -> str:
    """A file name as stored in ``file_name``: bytes that are not UTF-8 shown as \\xNN."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def _path_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return str(value)


def job_from_row(row: Sequence[Any]) -> ImportJob:
    values = list(row)
    values[14] = _path_text(values[14])  # source_path
    values[15] = _path_text(values[15])  # result_path
    if isinstance(values[4], bytes):  # file_name written by another program
        values[4] = values[4].decode("utf-8", "backslashreplace")
    return ImportJob(*values)


def get_job(conn: sqlite3.Connection, job_id: str) -> ImportJob | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM import_jobs WHERE id = ?",
                       (job_id,)).fetchone()
    return job_from_row(row) if row else None


def source_identity(conn: sqlite3.Connection, job_id: str) -> str | None:
    """What the job's file was when the job opened it (see pulse_tui.safefs.identity)."""
    row = conn.execute("SELECT value FROM pulse_meta WHERE key = ?",
                       (SOURCE_IDENTITY_PREFIX + job_id,)).fetchone()
    return row[0] if row else None


def clear_source_identity(conn: sqlite3.Connection, job_id: str) -> None:
    conn.execute("DELETE FROM pulse_meta WHERE key = ?", (SOURCE_IDENTITY_PREFIX + job_id,))


def list_jobs(conn: sqlite3.Connection, *, limit: int = 100) -> list[ImportJob]:
    return [job_from_row(r) for r in conn.execute(
        f"SELECT {JOB_COLUMNS} FROM import_jobs ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (limit,),
    )]


def create_job(conn: sqlite3.Connection, *, job_id: str, kind: str, site_id: str,
               file_name: str, file_size: int, source_path: str | None, now_ms: int,
               identity: str | None = None) -> None:
    """A new job in state 'uploading' (its own short transaction); ``identity`` records which
    file it reads, so a resume can tell whether the file changed meanwhile."""
    with write_transaction(conn):
        conn.execute(
            "INSERT INTO import_jobs (id, site_id, type, status, file_name, file_size, "
            "total_records, processed_records, failed_records, created_at, source_path) "
            "VALUES (?, ?, ?, 'uploading', ?, ?, 0, 0, 0, ?, ?)",
            (job_id, site_id, kind, name_value(file_name), file_size, now_ms,
             path_value(source_path)),
        )
        if identity is not None:
            conn.execute("INSERT OR REPLACE INTO pulse_meta (key, value) VALUES (?, ?)",
                         (SOURCE_IDENTITY_PREFIX + job_id, identity))


def start_job(conn: sqlite3.Connection, job_id: str, *, kind: str, now_ms: int,
              note: str | None = None) -> None:
    """uploading -> processing (the header was read and is usable)."""
    with write_transaction(conn):
        conn.execute(
            "UPDATE import_jobs SET status = 'processing', type = ?, "
            "started_at = coalesce(started_at, ?), message = ? WHERE id = ?",
            (kind, now_ms, note, job_id),
        )


def fail_job(conn: sqlite3.Connection, job_id: str, message: str, now_ms: int,
             *, kind: str | None = None) -> None:
    """The whole file could not be imported: status 'failed' with a one-line message."""
    with write_transaction(conn):
        conn.execute(
            "UPDATE import_jobs SET status = 'failed', message = ?, completed_at = ?, "
            "type = coalesce(?, type), errors = ? WHERE id = ?",
            (name_value(message), now_ms, kind, json.dumps(
                [{"line": None, "column": None, "value": None,
                  "reason": name_value(message)}]), job_id),
        )


def finish_job(conn: sqlite3.Connection, job_id: str, now_ms: int) -> None:
    """processing -> completed; fills ``errors`` with a bounded sample of the rejects."""
    with write_transaction(conn):
        sample = [
            {"line": r[0], "column": r[1], "value": r[2], "reason": r[3]}
            for r in conn.execute(
                "SELECT line, column_name, value, reason FROM import_rejects WHERE job_id = ? "
                "ORDER BY line LIMIT ?", (job_id, ERRORS_SAMPLE))
        ]
        conn.execute(
            "UPDATE import_jobs SET status = 'completed', completed_at = ?, errors = ?, "
            "total_records = coalesce(processed_records, 0) + duplicate_records "
            "+ coalesce(failed_records, 0) WHERE id = ?",
            (now_ms, json.dumps(sample) if sample else None, job_id),
        )


def _record(conn: sqlite3.Connection, job_id: str, rejects: Sequence[RejectRow],
            outcome: BatchOutcome, cp: Checkpoint, site_id: str | None) -> None:
    """Append rejects and move the job's counters and checkpoint (caller's transaction)."""
    if rejects:
        conn.executemany(
            "INSERT INTO import_rejects (job_id, line, column_name, value, reason) "
            "VALUES (?, ?, ?, ?, ?)",
            [(job_id, *r) for r in rejects],
        )
    conn.execute(
        """
        UPDATE import_jobs SET
            processed_records = coalesce(processed_records, 0) + ?,
            duplicate_records = duplicate_records + ?,
            failed_records = coalesce(failed_records, 0) + ?,
            total_records = coalesce(processed_records, 0) + duplicate_records
                            + coalesce(failed_records, 0) + ? + ? + ?,
            checkpoint_rows = checkpoint_rows + ?,
            checkpoint_offset = ?,
            checkpoint_line = ?,
            site_id = CASE WHEN site_id = '' AND ? IS NOT NULL THEN ? ELSE site_id END
        WHERE id = ?
        """,
        (outcome.processed, outcome.duplicates, outcome.failed,
         outcome.processed, outcome.duplicates, outcome.failed,
         cp.rows, cp.offset, cp.line, site_id, site_id, job_id),
    )


class EventsTx:
    """Several parsed batches of events written in ONE write transaction.

    ``add`` inserts a batch (sites, INSERT OR IGNORE events, rejects) and remembers its
    checkpoint; ``commit`` folds the new rows into the derived tables (``derived.catch_up``),
    moves the job's counters and checkpoint to the last batch added, and commits; so events,
    derived rows, rejects and checkpoint always commit together. Fewer, larger transactions
    are what make bulk imports fast: every COMMIT writes each page it dirtied to the WAL, and
    the random-key indexes dirty most of their leaf pages in every transaction.
    """

    def __init__(self, conn: sqlite3.Connection, job_id: str, now_ms: int) -> None:
        self.conn, self.job_id, self.now_ms = conn, job_id, now_ms
        self.processed = self.duplicates = self.failed = self.records = 0
        self._cp: Checkpoint | None = None
        self._site: str | None = None
        self._sites: set[str] = set()
        conn.execute("BEGIN IMMEDIATE")
        self.open = True

    def add(self, rows: Sequence[tuple[Any, ...]], rejects: Sequence[RejectRow],
            cp: Checkpoint) -> None:
        conn = self.conn
        if rows:
            sites = {r[1] for r in rows} - self._sites
            if sites:
                ensure_sites(conn, sites, self.now_ms)
                self._sites |= sites
            inserted = insert_rows(conn, rows)  # staged: see insert_rows
            self.processed += inserted
            self.duplicates += len(rows) - inserted
            if self._site is None:
                self._site = rows[0][1]
        if rejects:
            conn.executemany(
                "INSERT INTO import_rejects (job_id, line, column_name, value, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                [(self.job_id, *r) for r in rejects],
            )
        self.failed += len(rejects)
        self.records += cp.rows
        self._cp = Checkpoint(self.records, cp.offset, cp.line)

    def commit(self) -> BatchOutcome:
        """Fold, record the counters and checkpoint, COMMIT (ROLLBACK if any of it fails)."""
        conn = self.conn
        try:
            if self.processed:
                derived.catch_up(conn, self.now_ms)
            elif self.duplicates:  # what the duplicates left in derived_replaced (catch_up
                derived.drop_replaced(conn)  # drops it too)
            outcome = BatchOutcome(self.processed, self.duplicates, self.failed)
            if self._cp is not None:
                _record(conn, self.job_id, (), outcome, self._cp, self._site)
            conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        self.open = False
        return outcome

    def rollback(self) -> None:
        if self.open:
            self.open = False
            rollback_quietly(self.conn)  # never masks the error that got us here


def write_events_batch(conn: sqlite3.Connection, job_id: str, rows: Sequence[tuple[Any, ...]],
                       rejects: Sequence[RejectRow], cp: Checkpoint, now_ms: int,
                       lines: Sequence[int] = ()) -> BatchOutcome:
    """One transaction: sites, INSERT OR IGNORE events, derived catch-up, rejects, checkpoint.

    ``rows`` are tuples in events column order (event_id .. device_type, created_at).
    Rows whose event_id is already stored (or repeated in the batch) count as duplicates.
    (``lines``: unused here, every writer of ``WRITERS`` takes them.)
    """
    tx = EventsTx(conn, job_id, now_ms)
    try:
        tx.add(rows, rejects, cp)
    except BaseException:
        tx.rollback()
        raise
    return tx.commit()


_UPSERT_USER = """
INSERT INTO users (user_id, site_id, name, email, company, plan, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(user_id) DO UPDATE SET
    site_id = coalesce(excluded.site_id, users.site_id),
    name = excluded.name, email = excluded.email, company = excluded.company,
    plan = excluded.plan, updated_at = excluded.updated_at
WHERE excluded.updated_at > users.updated_at
"""


def write_users_batch(conn: sqlite3.Connection, job_id: str, rows: Sequence[tuple[Any, ...]],
                      rejects: Sequence[RejectRow], cp: Checkpoint, now_ms: int,
                      lines: Sequence[int] = ()) -> BatchOutcome:
    """Upsert users by user_id (a newer updated_at wins; an older or equal one is a duplicate).
    (``lines``: unused here, every writer of ``WRITERS`` takes them.)"""
    with write_transaction(conn):
        changed = 0
        if rows:
            ensure_sites(conn, {r[1] for r in rows if r[1]}, now_ms)
            before = conn.total_changes
            conn.executemany(_UPSERT_USER, rows)
            changed = conn.total_changes - before
        outcome = BatchOutcome(changed, len(rows) - changed, len(rejects))
        first_site = next((r[1] for r in rows if r[1]), None)
        _record(conn, job_id, rejects, outcome, cp, first_site)
    return outcome


# member rows: member_id, cohort_id, session_id, user_id, joined_at, last_seen_at, is_active;
# a missing joined_at is the import time for a new member and kept for an existing one
_UPSERT_MEMBER = """
INSERT INTO cohort_members (member_id, cohort_id, session_id, user_id, joined_at, last_seen_at,
                            is_active)
VALUES (?1, ?2, ?3, ?4, coalesce(?5, ?8), coalesce(?6, ?5, ?8), ?7)
ON CONFLICT(member_id) DO UPDATE SET
    cohort_id = excluded.cohort_id,
    session_id = coalesce(excluded.session_id, cohort_members.session_id),
    user_id = excluded.user_id,
    joined_at = coalesce(?5, cohort_members.joined_at),
    last_seen_at = coalesce(?6, ?5, cohort_members.last_seen_at),
    is_active = excluded.is_active
WHERE cohort_members.cohort_id IS NOT excluded.cohort_id
   OR cohort_members.user_id IS NOT excluded.user_id
   OR (excluded.session_id IS NOT NULL
       AND cohort_members.session_id IS NOT excluded.session_id)
   OR (?5 IS NOT NULL AND cohort_members.joined_at IS NOT ?5)
   OR (coalesce(?6, ?5) IS NOT NULL AND cohort_members.last_seen_at IS NOT coalesce(?6, ?5))
   OR cohort_members.is_active IS NOT excluded.is_active
"""


def write_members_batch(conn: sqlite3.Connection, job_id: str, rows: Sequence[tuple[Any, ...]],
                        rejects: Sequence[RejectRow], cp: Checkpoint, now_ms: int,
                        lines: Sequence[int]) -> BatchOutcome:
    """Upsert members by member_id into existing static cohorts; other rows are rejected.

    ``lines`` gives each row's line (for the rejects this function adds).
    """
    with write_transaction(conn):
        ids = sorted({r[1] for r in rows})
        cohorts: dict[str, tuple[str, str]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for cid, kind, site in conn.execute(
                    f"SELECT cohort_id, kind, site_id FROM cohorts WHERE cohort_id IN ({marks})",
                    chunk):
                cohorts[cid] = (kind, site)
        good: list[tuple[Any, ...]] = []
        all_rejects = list(rejects)
        first_site: str | None = None
        for row, line in zip(rows, lines, strict=True):
            found = cohorts.get(row[1])
            if found is None:
                all_rejects.append((line, "cohort_id", row[1], (
                    f"unknown cohort {row[1]!r}: create it first as a static cohort with "
                    "that id (TUI: 3 Cohorts, N), then import this file again")))
            elif found[0] != "static":
                all_rejects.append((line, "cohort_id", row[1],
                                    f"cohort {row[1]!r} is a criteria cohort: its members are "
                                    "computed; only static cohorts take imported members"))
            else:
                good.append((*row, now_ms))
                first_site = first_site or found[1]
        changed = 0
        if good:
            before = conn.total_changes
            conn.executemany(_UPSERT_MEMBER, good)
            changed = conn.total_changes - before
        all_rejects.sort(key=lambda r: r[0])
        outcome = BatchOutcome(changed, len(good) - changed, len(all_rejects))
        _record(conn, job_id, all_rejects, outcome, cp, first_site)
    return outcome


class BatchWriter(Protocol):
    """Stores one parsed batch of an import kind's rows with its rejects, the job's counters
    and checkpoint, in one transaction; ``lines`` are the lines the rows start on."""

    def __call__(self, conn: sqlite3.Connection, job_id: str, rows: Sequence[tuple[Any, ...]],
                 rejects: Sequence[RejectRow], cp: Checkpoint, now_ms: int,
                 lines: Sequence[int]) -> BatchOutcome: ...


# The SQLite batch writers by the name an import kind gives (pulse_tui/ingest/kinds.py:
# ImportKind.writer). A kind with a table of its own adds its writer here.
WRITERS: dict[str, BatchWriter] = {
    "events": write_events_batch,
    "users": write_users_batch,
    "cohort_members": write_members_batch,
}

# Writers whose batches the importer may gather into one long transaction (EventsTx: parsed in
# chunks, committed every batch_size rows or MAX_TX_SECONDS) when the rows go into this file.
STREAMED_WRITERS: dict[str, type[EventsTx]] = {"events": EventsTx}


def iter_rejects(conn: sqlite3.Connection, job_id: str) -> Iterator[RejectRow]:
    """The job's rejected rows in line order."""
    yield from conn.execute(
        "SELECT line, column_name, value, reason FROM import_rejects WHERE job_id = ? "
        "ORDER BY line, rowid", (job_id,))


def reject_count(conn: sqlite3.Connection, job_id: str) -> int:
    return conn.execute("SELECT count(*) FROM import_rejects WHERE job_id = ?",
                        (job_id,)).fetchone()[0]


def set_result_path(conn: sqlite3.Connection, job_id: str, path: str | None) -> None:
    """Where the worker moved the file (processed/ or failed/)."""
    with write_transaction(conn):
        conn.execute("UPDATE import_jobs SET result_path = ? WHERE id = ?",
                     (path_value(path), job_id))
