"""Schema v1: the seed's tables and columns, the corrections, pragmas, and every migration path
(new, empty, current, seed-only, too new, foreign or non-SQLite files, missing folder)."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from pulse_tui.errors import DatabaseError
from pulse_tui.store import connection as connection_mod
from pulse_tui.store.connection import SCHEMA_VERSION, connect

SEED_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "seed" / "pulse-data-model.txt"

# inline copy of the seed's tables and columns (so the test works without ../shared)
SEED_TABLES: dict[str, tuple[str, ...]] = {
    "events": ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id",
               "url", "referrer", "country", "device_type", "created_at"),
    "sessions": ("session_id", "site_id", "user_id", "first_event_at", "last_event_at",
                 "event_count", "created_at"),
    "users": ("user_id", "site_id", "name", "email", "company", "plan", "created_at",
              "updated_at"),
    "cohorts": ("cohort_id", "site_id", "name", "description", "criteria", "status",
                "created_at", "updated_at"),
    "cohort_members": ("member_id", "cohort_id", "session_id", "user_id", "joined_at",
                       "last_seen_at", "is_active"),
    "cohort_retention_snapshots": ("snapshot_id", "cohort_id", "site_id", "week_number",
                                   "cohort_size", "returning_users", "retention_rate",
                                   "captured_at"),
    "alert_rules": ("rule_id", "site_id", "name", "condition", "notification_type",
                    "notification_config", "status", "created_at", "updated_at"),
    "webhook_endpoints": ("id", "site_id", "url", "events", "active", "secret", "headers",
                          "created_at", "updated_at"),
    "import_jobs": ("id", "site_id", "type", "status", "file_name", "file_size",
                    "total_records", "processed_records", "failed_records", "errors",
                    "created_at", "started_at", "completed_at"),
    "export_jobs": ("id", "site_id", "type", "name", "format", "filters", "status", "file_url",
                    "scheduled", "created_at", "completed_at"),
}
SEED_INDEXES = ("idx_events_session", "idx_events_user", "idx_cohort_members_cohort",
                "idx_cohort_members_session", "idx_alert_rules_site",
                "idx_webhook_endpoints_site", "idx_import_jobs_status",
                "idx_export_jobs_status")

_CREATE_TABLE = re.compile(r"CREATE TABLE\s+(\w+)\s*\((.*?)\n\);", re.S)


def seed_ddl_from_file() -> dict[str, str] | None:
    """{table: CREATE TABLE statement} parsed from the seed document, or None without it."""
    if not SEED_FILE.is_file():
        return None
    text = SEED_FILE.read_text("utf-8")
    return {m.group(1): m.group(0) for m in _CREATE_TABLE.finditer(text)}


def columns_of_ddl(ddl: str) -> list[str]:
    body = ddl[ddl.index("(") + 1: ddl.rindex(")")]
    out = []
    for line in body.splitlines():
        line = line.split("--", 1)[0].strip().rstrip(",")
        if not line:
            continue
        first = re.split(r"[\s(]", line, maxsplit=1)[0]
        if first.upper() in {"FOREIGN", "UNIQUE", "PRIMARY", "CHECK", "CONSTRAINT"}:
            continue
        out.append(first)
    return out


def seed_tables() -> dict[str, tuple[str, ...]]:
    parsed = seed_ddl_from_file()
    if parsed is None:
        return SEED_TABLES
    return {t: tuple(columns_of_ddl(ddl)) for t, ddl in parsed.items()}


def seed_script() -> str:
    """The seed's DDL (tables and indexes) minus its broken index on a missing column."""
    parsed = seed_ddl_from_file()
    if parsed is not None:
        tables = list(parsed.values())
    else:
        tables = [
            f"CREATE TABLE {t} ({', '.join(c + ' TEXT' for c in cols)})"
            for t, cols in SEED_TABLES.items()
        ]
    indexes = [
        "CREATE INDEX idx_events_session ON events(session_id)",
        "CREATE INDEX idx_events_user ON events(user_id)",
        "CREATE INDEX idx_cohort_members_cohort ON cohort_members(cohort_id)",
    ]
    return ";\n".join(tables + indexes) + ";"


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, sorted(os.listdir(path.parent))


# ------------------------------------------------------------------------------- the seed
def test_inline_seed_copy_matches_seed_document() -> None:
    parsed = seed_ddl_from_file()
    if parsed is None:
        pytest.skip("seed document not beside the checkout")
    assert {t: tuple(columns_of_ddl(d)) for t, d in parsed.items()} == SEED_TABLES


@pytest.mark.parametrize("table", sorted(SEED_TABLES))
def test_every_seed_table_and_column_exists(conn: sqlite3.Connection, table: str) -> None:
    expected = seed_tables()[table]
    have = table_columns(conn, table)
    missing = [c for c in expected if c not in have]
    assert not missing, f"{table} lacks seed columns {missing}"
    # the seed's column order is kept (other PULSE programs may rely on SELECT *)
    assert have[: len(expected)] == list(expected)


def test_sites_table_as_settled(conn: sqlite3.Connection) -> None:
    info = {r[1]: r for r in conn.execute("PRAGMA table_info(sites)")}
    assert list(info) == ["id", "name", "domain", "created_at"]
    assert info["id"][5] == 1  # primary key
    assert info["created_at"][3] == 1  # NOT NULL


def test_retention_snapshot_table_name_and_fk(conn: sqlite3.Connection) -> None:
    assert "cohort_retention_snapshots" in tables(conn)
    assert "retention_snapshots" not in tables(conn)
    fks = conn.execute("PRAGMA foreign_key_list(cohort_retention_snapshots)").fetchall()
    assert any(r[2] == "cohorts" and r[3] == "cohort_id" for r in fks)


def test_corrected_site_timestamp_index(conn: sqlite3.Connection) -> None:
    rows = conn.execute("PRAGMA index_xinfo(idx_events_site_timestamp)").fetchall()
    keyed = [(r[2], r[3]) for r in rows if r[5] == 1]  # (column name, desc flag)
    assert keyed == [("site_id", 0), ("timestamp_ms", 1)]
    table = conn.execute(
        "SELECT tbl_name FROM sqlite_master WHERE name = 'idx_events_site_timestamp'"
    ).fetchone()[0]
    assert table == "events"


def test_seed_indexes_exist(conn: sqlite3.Connection) -> None:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert set(SEED_INDEXES) <= names


def test_pragmas_on_connect(conn: sqlite3.Connection) -> None:
    assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_bulk_connection_pragmas(db_path: Path) -> None:
    """Bulk loads get a big page cache but keep temp data (statement journals) in files: in
    memory the peak RSS of an import grew with the database (docs/benchmarks.md, Import)."""
    conn = connect(db_path, bulk=True)
    try:
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -262144
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 1  # FILE
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        conn.close()


def test_foreign_keys_enforced(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
            "created_at) VALUES ('e1', 'no-such-site', 'pageview', 1, 's1', 1)"
        )


# ------------------------------------------------------------------------------- migrations
def test_new_file_created_with_schema(db_path: Path) -> None:
    assert not db_path.exists()
    c = connect(db_path)
    try:
        assert set(SEED_TABLES) | {"sites"} <= tables(c)
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        c.close()


def test_create_false_refuses_missing_file(db_path: Path) -> None:
    with pytest.raises(DatabaseError):
        connect(db_path, create=False)
    assert not db_path.exists()


def test_empty_zero_byte_file_is_treated_as_new(db_path: Path) -> None:
    db_path.write_bytes(b"")
    c = connect(db_path)
    try:
        assert set(SEED_TABLES) | {"sites"} <= tables(c)
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        c.close()


def _insert_sample(c: sqlite3.Connection) -> None:
    c.execute("INSERT INTO sites (id, name, domain, created_at) VALUES ('s1', 'S', NULL, 5)")
    c.execute(
        "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, user_id, "
        "created_at) VALUES ('e1', 's1', 'pageview', 1000, 'sess', 'u1', 7)"
    )


def _dump(c: sqlite3.Connection) -> list[str]:
    return list(c.iterdump())


def test_current_file_is_a_noop(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = connect(db_path)
    _insert_sample(c)
    before = _dump(c)
    c.close()

    def no_migrate(conn: sqlite3.Connection) -> None:
        raise AssertionError("a current file must not be migrated")

    monkeypatch.setattr(connection_mod, "migrate", no_migrate)
    c = connect(db_path)
    try:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert _dump(c) == before
    finally:
        c.close()


def test_migrate_twice_changes_nothing(conn: sqlite3.Connection) -> None:
    _insert_sample(conn)
    before = _dump(conn)
    conn.execute("PRAGMA user_version = 0")  # pretend an old file: migrate must be idempotent
    connection_mod.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert _dump(conn) == before


def _make_seed_only(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.executescript(seed_script())
    raw.executemany(
        "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, user_id, "
        "url, referrer, country, device_type, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            ("e1", "site-a", "pageview", 1_700_000_000_000, "s1", "u1", "/", None, "US",
             "desktop", 1_700_000_000_000),
            ("e2", "site-a", "signup", 1_700_000_001_000, "s1", "u1", "/signup", None, "US",
             "desktop", 1_700_000_001_000),
            ("e3", "site-b", "pageview", 1_700_000_002_000, "s2", None, "/", None, "DE",
             "mobile", 1_700_000_002_000),
        ],
    )
    raw.execute(
        "INSERT INTO sessions VALUES ('s1', 'site-a', 'u1', 1700000000000, 1700000001000, 2, 1)"
    )
    raw.execute(
        "INSERT INTO cohorts (cohort_id, site_id, name, description, criteria, status, "
        "created_at, updated_at) VALUES ('c1', 'site-c', 'Signups', NULL, "
        "'{\"type\": \"and\", \"conditions\": []}', 'active', 1, 1)"
    )
    raw.execute(
        "INSERT INTO import_jobs (id, site_id, type, status, file_name, file_size, created_at) "
        "VALUES ('j1', 'site-a', 'events', 'completed', 'old.csv', 10, 1)"
    )
    raw.commit()
    raw.close()


def test_seed_only_file_is_adopted(db_path: Path) -> None:
    _make_seed_only(db_path)
    raw = sqlite3.connect(db_path)
    before = {t: raw.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
              for t in ("events", "sessions", "cohorts", "import_jobs")}
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 0
    raw.close()

    c = connect(db_path)
    try:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # rows kept (the seed's columns, in order, hold the same values)
        for t, rows in before.items():
            n = len(SEED_TABLES[t])
            after = [r[:n] for r in c.execute(f"SELECT * FROM {t} ORDER BY 1")]
            assert after == rows, t
        # missing tables and added columns are there
        ref = sqlite3.connect(":memory:")
        ref.executescript(connection_mod.schema_sql())
        for t in tables(ref):
            assert t in tables(c), f"table {t} not created on adoption"
            assert set(table_columns(ref, t)) <= set(table_columns(c, t)), t
        ref.close()
        assert c.execute("SELECT kind FROM cohorts").fetchone()[0] == "criteria"
        assert c.execute("SELECT duplicate_records FROM import_jobs").fetchone()[0] == 0
        # sites filled from the site ids already present (events, sessions, cohorts)
        sites = [r[0] for r in c.execute("SELECT id FROM sites ORDER BY id")]
        assert sites == ["site-a", "site-b", "site-c"]
        assert all(r[0] is not None for r in c.execute("SELECT created_at FROM sites"))
        # the corrected index exists and foreign keys hold for the adopted rows
        cols = [r[2] for r in c.execute("PRAGMA index_info(idx_events_site_timestamp)")]
        assert cols == ["site_id", "timestamp_ms"]
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
        assert c.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        c.close()


def test_seed_only_empty_database_is_adopted(db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    raw.executescript(seed_script())
    raw.close()
    c = connect(db_path)
    try:
        assert "sites" in tables(c)
        assert c.execute("SELECT count(*) FROM sites").fetchone()[0] == 0
    finally:
        c.close()


# ------------------------------------------------------------------------------- refusals
def test_non_sqlite_file_refused_untouched(db_path: Path) -> None:
    db_path.write_text("event_id,site_id\n1,a\n" * 50)
    os.utime(db_path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    before = snapshot(db_path)
    with pytest.raises(DatabaseError) as info:
        connect(db_path)
    assert "\n" not in str(info.value)
    assert str(db_path) in str(info.value)
    assert snapshot(db_path) == before


def test_foreign_sqlite_database_refused_untouched(db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TABLE foo (x INTEGER)")
    raw.execute("INSERT INTO foo VALUES (42)")
    raw.commit()
    raw.close()
    os.utime(db_path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    before = snapshot(db_path)
    with pytest.raises(DatabaseError) as info:
        connect(db_path)
    assert "\n" not in str(info.value)
    assert snapshot(db_path) == before


def test_newer_schema_refused_untouched(db_path: Path) -> None:
    c = connect(db_path)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.execute("PRAGMA journal_mode = DELETE")
    c.close()
    os.utime(db_path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    before = snapshot(db_path)
    with pytest.raises(DatabaseError) as info:
        connect(db_path)
    assert "upgrade" in str(info.value)
    assert snapshot(db_path) == before


def test_missing_folder_refused(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "pulse.db"
    with pytest.raises(DatabaseError) as info:
        connect(target)
    assert "does not exist" in str(info.value)
    assert not target.parent.exists()


def test_directory_refused(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError):
        connect(tmp_path)
