"""Opening a PULSE database: checks before touching it, pragmas, and the schema migrations."""

from __future__ import annotations

import os
import sqlite3
import time
from importlib import resources
from pathlib import Path

from pulse_tui.errors import DatabaseError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000

# tables that make a SQLite file a PULSE database (the seed's core)
PULSE_MARKER_TABLES = {"events", "sessions", "users", "cohorts", "import_jobs"}

# the seed declares this index on a column that does not exist; the right one is on timestamp_ms
_SITE_TS_INDEX = "idx_events_site_timestamp"


def schema_sql() -> str:
    return resources.files("pulse_tui.store").joinpath("schema.sql").read_text("utf-8")


def apply_pragmas(conn: sqlite3.Connection, *, bulk: bool = False) -> None:
    """WAL, a busy timeout and foreign keys on every connection; bigger cache for bulk loads."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise DatabaseError(f"cannot switch the database to WAL mode (got {mode})")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    if bulk:
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB for random-key B-tree inserts
        # temp files, not memory: a statement journal keeps a copy of every page an
        # INSERT ... SELECT changes, so in memory the peak grew with the database (a 2M-row
        # import: 884 MB peak RSS in memory, 371 MB with files, same speed; docs/benchmarks.md)
        conn.execute("PRAGMA temp_store = FILE")


def inspect(path: Path) -> tuple[int, set[str]]:
    """(user_version, table names) read without modifying the file, or a DatabaseError.

    Only SQLite touches the file: never a plain open()/close() of it, because closing any file
    descriptor of a database releases every POSIX lock this process holds on it, including the
    locks of live connections in other threads (a way to corrupt the database).
    """
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a database file")
    if not os.access(path, os.R_OK):
        raise DatabaseError(f"{path}: permission denied")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                r[0]
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not r[0].startswith("sqlite_")
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise DatabaseError(f"{path} is not a SQLite database; refusing to touch it") from exc
        if "locked" in str(exc) or "busy" in str(exc):
            raise DatabaseError(f"{path}: database is locked by another process") from exc
        raise DatabaseError(f"{path}: cannot read the database ({exc})") from exc
    return version, tables


def connect(path: str | Path, *, create: bool = True, bulk: bool = False) -> sqlite3.Connection:
    """Open ``path`` as a PULSE database, creating or adopting the schema as needed.

    Refuses (DatabaseError, one line) a file that is not SQLite, a non-empty SQLite file without
    PULSE tables, a schema newer than this program, or a missing folder; such files are never
    modified.
    """
    path = Path(path)
    exists = path.exists()
    if not exists:
        if not create:
            raise DatabaseError(f"{path}: no such database")
        if not path.parent.is_dir():
            raise DatabaseError(f"{path}: folder {path.parent} does not exist")
        version, tables = 0, set()
    else:
        version, tables = inspect(path)
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{path} has schema version {version}, newer than this pulse-tui knows "
                f"({SCHEMA_VERSION}); upgrade pulse-tui"
            )
        if tables and not (tables & PULSE_MARKER_TABLES):
            raise DatabaseError(
                f"{path} is a SQLite database without PULSE tables; refusing to modify it"
            )
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise DatabaseError(f"{path}: cannot open ({exc})") from exc
    try:
        apply_pragmas(conn, bulk=bulk)
        if version < SCHEMA_VERSION:
            migrate(conn)
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise DatabaseError(f"{path}: database is locked by another process") from exc
        raise DatabaseError(f"{path}: {exc}") from exc
    except DatabaseError:
        conn.close()
        raise
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, object]]:
    return [(r[1], r[2], r[4]) for r in conn.execute(f'PRAGMA table_info("{table}")')]


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction (new, seed-only or older files)."""
    reference = sqlite3.connect(":memory:")
    reference.executescript(schema_sql())
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current >= SCHEMA_VERSION:  # another process migrated while we waited
            conn.execute("COMMIT")
            return
        existing = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        # 1. columns this program adds to tables that already exist (seed-only files)
        for table in sorted(existing):
            if not reference.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)
            ).fetchone():
                continue
            have = {name for name, _, _ in _columns(conn, table)}
            for name, decl, default in _columns(reference, table):
                if name not in have:
                    clause = f" DEFAULT {default}" if default is not None else ""
                    notnull = " NOT NULL" if default is not None and _is_notnull(reference, table, name) else ""
                    conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {decl}{notnull}{clause}')
        # 2. the seed's mis-declared index, if a program managed to create something under its name
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type='index' AND name=?", (_SITE_TS_INDEX,)
        ).fetchone()
        if row and row[0] and "timestamp_ms" not in row[0]:
            conn.execute(f"DROP INDEX {_SITE_TS_INDEX}")
        # 3. every table and index (IF NOT EXISTS)
        for statement in _statements(schema_sql()):
            conn.execute(statement)
        # the partial index of unusable event rows (pulse_tui.store.derived.valid_event_sql)
        from pulse_tui.store.derived import UNUSABLE_INDEX_SQL
        conn.execute(UNUSABLE_INDEX_SQL)
        # 4. sites referenced by existing rows
        conn.execute(
            """
            INSERT OR IGNORE INTO sites (id, name, domain, created_at)
            SELECT site_id, site_id, NULL, ?
            FROM (SELECT DISTINCT site_id FROM events UNION SELECT DISTINCT site_id FROM sessions
                  UNION SELECT DISTINCT site_id FROM cohorts)
            WHERE typeof(site_id) = 'text' AND site_id != ''
            """,
            (int(time.time() * 1000),),
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already
            conn.execute("ROLLBACK")
        raise
    finally:
        reference.close()


def _is_notnull(conn: sqlite3.Connection, table: str, column: str) -> bool:
    for r in conn.execute(f'PRAGMA table_info("{table}")'):
        if r[1] == column:
            return bool(r[3])
    return False


def _statements(script: str) -> list[str]:
    """Split the schema script into statements (it has no semicolons inside literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def database_file(conn: sqlite3.Connection) -> str:
    """The path of the connection's main database file ("" for an in-memory one)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else ""
