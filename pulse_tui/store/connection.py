"""Opening a PULSE database: checks before touching it, pragmas, and the schema migrations."""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pulse_tui.errors import DatabaseError
from pulse_tui.store.tx import rollback_quietly

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000

# a file is adopted only when it holds the seed's events table with all of these columns
# (SPEC 10, "Adopting a file"), or is new or empty
SEED_EVENTS_COLUMNS = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id",
                       "user_id", "url", "referrer", "country", "device_type", "created_at")

# tables every PULSE file at SCHEMA_VERSION holds (those of schema version 1; later rollups are
# added by IF NOT EXISTS where they are used): a file whose user_version another program set
# without them still needs migrating
CORE_TABLES = frozenset((
    "sites", "events", "sessions", "users", "cohorts", "cohort_members",
    "cohort_retention_snapshots", "alert_rules", "webhook_endpoints", "import_jobs",
    "import_rejects", "export_jobs", "export_runs", "alert_history", "webhook_deliveries",
    "worker_lease", "scheduler_jobs", "pulse_meta", "user_first_seen", "rollup_daily",
    "rollup_hourly", "rollup_daily_users", "rollup_daily_sessions", "rollup_daily_dims"))

# the one command that upgrades a file for the commands that only read
UPGRADE_COMMAND = "pulse-tui migrate"

# the seed declares this index on a column that does not exist; the right one is on timestamp_ms
_SITE_TS_INDEX = "idx_events_site_timestamp"


@dataclass(frozen=True, slots=True)
class FileState:
    """What a database file holds, read without modifying it."""

    version: int  # PRAGMA user_version
    tables: frozenset[str]
    objects: int  # tables, indexes, views and triggers (0: an empty database)
    events_columns: frozenset[str]  # lower-case column names of `events` (empty: no table)
    events_shape: str = ""  # why `events` is not an ordinary table ("" when it is)

    @property
    def empty(self) -> bool:
        return self.objects == 0

    @property
    def missing_events_columns(self) -> list[str]:
        return [c for c in SEED_EVENTS_COLUMNS if c not in self.events_columns]

    @property
    def is_pulse(self) -> bool:
        """Empty, or the seed's events table with all of the seed's columns."""
        return self.empty or (bool(self.events_columns) and not self.missing_events_columns
                              and not self.events_shape)

    @property
    def needs_migration(self) -> bool:
        """An older schema, or a user_version without PULSE's tables (set by another program)."""
        return (self.version < SCHEMA_VERSION
                or not CORE_TABLES <= {t.lower() for t in self.tables})


def schema_sql() -> str:
    return resources.files("pulse_tui.store").joinpath("schema.sql").read_text("utf-8")


def apply_pragmas(conn: sqlite3.Connection, *, bulk: bool = False,
                  require_wal: bool = True, set_wal: bool = True) -> None:
    """WAL, a busy timeout and foreign keys on every connection; bigger cache for bulk loads.

    ``require_wal=False`` (commands that only read): a file that cannot be switched to WAL
    (read-only file or folder) is read in the journal mode it has; ``set_wal=False`` leaves
    the journal mode as it is (a read-only command on a file in rollback-journal mode).
    """
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL" if set_wal
                            else "PRAGMA journal_mode").fetchone()[0]
    except sqlite3.OperationalError:
        if require_wal:
            raise
        mode = "wal"  # left as it is
    if str(mode).lower() != "wal" and require_wal:
        raise DatabaseError(f"cannot switch the database to WAL mode (got {mode}); is the file "
                            "or its folder read-only?")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    if bulk:
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB for random-key B-tree inserts
        # temp files, not memory: a statement journal keeps a copy of every page an
        # INSERT ... SELECT changes, so in memory the peak grew with the database (a 2M-row
        # import: 884 MB peak RSS in memory, 371 MB with files, same speed; docs/benchmarks.md)
        conn.execute("PRAGMA temp_store = FILE")


def inspect(path: Path) -> FileState:
    """What ``path`` holds (user_version, tables, events columns), read without modifying it,
    or a DatabaseError.

    Only SQLite touches the file: never a plain open()/close() of it, because closing any file
    descriptor of a database releases every POSIX lock this process holds on it, including the
    locks of live connections in other threads (a way to corrupt the database).
    """
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a database file")
    if not os.access(path, os.R_OK):
        raise DatabaseError(f"{path}: permission denied")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if not Path(f"{path}-wal").exists():
        # nothing in a -wal: the file alone holds every page. A first look without locks, so a
        # WAL file gets no -wal/-shm created beside it by a look that must change nothing (a
        # writer changing the file meanwhile can make it fail: then the plain look below)
        try:
            return _inspect_uri(f"{uri}&immutable=1")
        except sqlite3.Error:
            pass
    try:
        return _inspect_uri(uri)
    except sqlite3.Error as exc:
        raise DatabaseError(describe_error(exc, path)) from exc


def _inspect_uri(uri: str) -> FileState:
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return _file_state(conn)
    finally:
        conn.close()


def _file_state(conn: sqlite3.Connection) -> FileState:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    rows = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    names = [(kind, name) for kind, name in rows if not str(name).startswith("sqlite_")]
    tables = frozenset(name for kind, name in names if kind == "table")
    events = next((t for t in tables if t.lower() == "events"), None)
    columns: frozenset[str] = frozenset()
    shape = ""
    if events is not None:
        columns = frozenset(str(r[1]).lower()
                            for r in conn.execute(f'PRAGMA table_info("{events}")'))
        listed = conn.execute("SELECT type, wr FROM pragma_table_list WHERE schema = 'main' "
                              "AND name = ?", (events,)).fetchone()
        if listed and listed[0] == "virtual":
            shape = "a virtual table"
        elif listed and listed[1]:
            shape = "a WITHOUT ROWID table"
    return FileState(version, tables, len(names), columns, shape)


def _refuse_foreign(path: Path, state: FileState) -> None:
    """A DatabaseError (nothing touched) unless ``state`` is a file PULSE may adopt."""
    if state.is_pulse:
        return
    if not state.events_columns:
        raise DatabaseError(f"{path} is a SQLite database of another program (no PULSE events "
                            "table); refusing to touch it")
    if state.events_shape:
        raise DatabaseError(f"{path} is a SQLite database of another program (its events table "
                            f"is {state.events_shape}, not the seed's); refusing to touch it")
    raise DatabaseError(
        f"{path} is a SQLite database of another program (its events table lacks the PULSE "
        f"columns {', '.join(state.missing_events_columns)}); refusing to touch it")


def upgrade_message(path: Path, version: int) -> str:
    what = (f"needs upgrading from schema {version} to {SCHEMA_VERSION}"
            if version < SCHEMA_VERSION else
            f"lacks PULSE's tables (its user_version {version} was set by another program)")
    return (f"{path} {what}, and this "
            f"command only reads: run `{UPGRADE_COMMAND} --db {path}` once (it changes the "
            "file; `pulse-tui backup` copies it first), then run this again")


def connect(path: str | Path, *, create: bool = True, bulk: bool = False,
            migrate: bool = True, keep_journal_mode: bool = False) -> sqlite3.Connection:
    """Open ``path`` as a PULSE database, creating or adopting the schema as needed.

    Refuses (DatabaseError, one line) a file that is not SQLite, a SQLite file that is neither
    empty nor holds the seed's events table with all of the seed's columns, a schema newer than
    this program, or a missing folder; such files are never modified.

    ``migrate=False`` is for the commands that only read: a new or empty file still gets the
    schema, but a file holding data at an older schema is refused untouched (DatabaseError
    naming ``pulse-tui migrate``), and a file the process cannot write is read in the journal
    mode it has. ``keep_journal_mode`` (``report``, the TUI's first look) leaves a file that
    holds data in its journal mode (rollback journal stays) instead of switching it to WAL.
    """
    path = Path(path)
    exists = path.exists()
    if not exists:
        if not create:
            raise DatabaseError(f"{path}: no such database")
        if not path.parent.is_dir():
            raise DatabaseError(f"{path}: folder {path.parent} does not exist")
        state = FileState(0, frozenset(), 0, frozenset())
    else:
        state = inspect(path)
        _refuse_foreign(path, state)
        if state.version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{path} has schema version {state.version}, newer than this pulse-tui knows "
                f"({SCHEMA_VERSION}); upgrade pulse-tui"
            )
        if state.needs_migration and not state.empty and not migrate:
            raise DatabaseError(upgrade_message(path, state.version))
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise DatabaseError(describe_error(exc, path)) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if state.needs_migration:
            # before the switch to WAL: a file that cannot be adopted is left as it was
            migrate_schema(conn, path, allow_data=migrate)
        apply_pragmas(conn, bulk=bulk, require_wal=migrate,
                      set_wal=not (keep_journal_mode and exists and not state.empty))
    except sqlite3.Error as exc:
        conn.close()
        raise DatabaseError(describe_error(exc, path)) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection (SQLite ``mode=ro``) to a PULSE file of any schema this program
    knows, old ones included: for copying a file as it is (``pulse-tui backup``)."""
    path = Path(path)
    if not path.exists():
        raise DatabaseError(f"{path}: no such database")
    state = inspect(path)
    _refuse_foreign(path, state)
    if state.version > SCHEMA_VERSION:
        raise DatabaseError(f"{path} has schema version {state.version}, newer than this "
                            f"pulse-tui knows ({SCHEMA_VERSION}); upgrade pulse-tui")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise DatabaseError(describe_error(exc, path)) from exc
    return conn


# SQLite's primary result codes (the low byte of sqlite_errorcode)
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN = 10, 11, 13, 14
SQLITE_NOTADB = 26
SQLITE_READONLY_DIRECTORY = SQLITE_READONLY | (6 << 8)  # an extended code


def error_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of ``exc`` (None when it has none)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def describe_error(exc: BaseException, path: str | Path | None = None) -> str:
    """One line in our words for a sqlite3 error (read-only, locked, damaged, disk full ...),
    keeping SQLite's own message at the end."""
    where = str(path) if path is not None else "the database"
    code = error_code(exc)
    text = str(exc)
    if getattr(exc, "sqlite_errorcode", None) == SQLITE_READONLY_DIRECTORY:
        what = (f"cannot open {where}: it is in WAL mode and its folder is read-only for this "
                "user, so SQLite cannot create the -shm file it needs even to read; make the "
                "folder writable, or copy the file (with its -wal) to one that is")
    elif code == SQLITE_FULL:
        what = f"disk full: cannot write {where}; free some space, then run this again"
    elif code == SQLITE_READONLY:
        what = f"cannot write {where}: the file or its folder is read-only for this user"
    elif code == SQLITE_CANTOPEN:
        what = (f"cannot open {where} or its -wal/-shm files; check the permissions of the "
                "file and its folder")
    elif code in (SQLITE_BUSY, SQLITE_LOCKED):
        what = f"{where} is locked by another process; try again"
    elif code == SQLITE_CORRUPT:
        what = f"{where} is damaged; restore it from a backup"
    elif code == SQLITE_NOTADB:
        what = f"{where} is not a SQLite database; refusing to touch it"
    elif code == SQLITE_IOERR:
        what = f"input/output error on {where}"
    elif code == SQLITE_PERM:
        what = f"{where}: permission denied"
    else:
        what = f"database error on {where}"
    return f"{what} ({text})" if text else what


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, object]]:
    return [(r[1], r[2], r[4]) for r in conn.execute(f'PRAGMA table_info("{table}")')]


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction (new, seed-only or older files)."""
    migrate_schema(conn, Path("the database"))


def migrate_schema(conn: sqlite3.Connection, path: Path, *, allow_data: bool = True) -> None:
    """:func:`migrate`, checking again inside the transaction that the file may be adopted
    (another program may have changed it since :func:`inspect`); ``allow_data=False`` only
    creates the schema in an empty file. Nothing changes when it refuses."""
    reference = sqlite3.connect(":memory:")
    reference.executescript(schema_sql())
    conn.execute("BEGIN IMMEDIATE")
    try:
        state = _file_state(conn)
        if not state.needs_migration:  # another process migrated while we waited
            conn.execute("COMMIT")
            return
        _refuse_foreign(path, state)
        if not state.empty and not allow_data:
            raise DatabaseError(upgrade_message(path, state.version))
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
        # the partial index of unusable event rows (pulse_tui.store.derived.valid_event_sql),
        # the table and triggers that record events other programs delete or change
        from pulse_tui.store.derived import ensure_watch
        ensure_watch(conn)
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
        rollback_quietly(conn)
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
