"""The import-kind registry (pulse_tui/ingest/kinds.py): a new kind is one entry, or one entry
and one writer, and the real importer, the SQLite events backend and the worker's inbox take it
from there. Two toy kinds are registered by the tests themselves:

- ``pageviews_lite``: a narrower CSV (no event_type) completed into events rows: the registry
  entry is all it takes; its imports give exactly what the same rows give as ``events``;
- ``notes``: rows of a table the test creates, written by a writer the test registers in
  ``store.imports.WRITERS`` (the second file a kind with a table of its own touches).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pulse_tui.backend.sqlite.events import SqliteEvents
from pulse_tui.cli.import_files import import_cmd
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.ingest import import_file, kinds, write_errors_csv
from pulse_tui.ingest.kinds import ID, TEXT, TS, Column, ImportKind
from pulse_tui.ingest.parse import kind_from_header, kind_from_path
from pulse_tui.models import BatchOutcome, Checkpoint
from pulse_tui.store import imports
from pulse_tui.store.connection import connect
from pulse_tui.store.tx import write_transaction
from pulse_tui.worker import ImportFinished, inbox
from tests.conftest import wait_until
from tests.worker.conftest import scalar

TS0 = 1_764_072_000_000  # 2025-11-25T12:00:00Z


def _pageview_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    event_id, site_id, ts, session_id, user_id, url, created_at = row
    return (event_id, site_id, "pageview", ts, session_id, user_id, url, None, None, None,
            created_at)


PAGEVIEWS_LITE = ImportKind(
    "pageviews_lite",
    (Column("event_id", ID, True), Column("site_id", ID, True), Column("timestamp_ms", TS, True),
     Column("session_id", ID, True), Column("user_id", ID), Column("url", TEXT),
     Column("created_at", TS)),
    writer="events", folder="pageviews_lite", complete_row=_pageview_row,
)

NOTES = ImportKind("notes", (Column("note_id", ID, True), Column("body", TEXT)),
                   writer="notes", folder="notes", header_marks=("note_id",))


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, ImportKind]:
    """A copy of the registry for this test (the kinds it registers go away after it)."""
    monkeypatch.setattr(kinds, "KINDS", dict(kinds.KINDS))
    return kinds.KINDS


def _lite_csv(path: Path, n: int) -> Path:
    """n pageviews, then a row with a bad timestamp and a repeat of the first event."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["event_id,site_id,timestamp,session_id,user_id,url"]
    lines += [f"p{i},acme,{TS0 + i * 3_600_000},s{i % 4},u{i % 3},/page/{i % 5}"
              for i in range(n)]
    lines += ["bad,acme,1764072000,s1,u1,/x", f"p0,acme,{TS0},s0,u0,/page/0"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _as_events_csv(lite: Path, path: Path) -> Path:
    """The same rows as a plain events file (event_type pageview): the reference."""
    head, *rows = lite.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([head + ",event_type", *(r + ",pageview" for r in rows)]) + "\n",
                    encoding="utf-8")
    return path


def _stored(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    q = conn.execute
    return {
        "events": q("SELECT event_id, site_id, event_type, timestamp_ms, session_id, user_id, "
                    "url, referrer, country, device_type, created_at FROM events ORDER BY 1"
                    ).fetchall(),
        "sessions": q("SELECT * FROM sessions ORDER BY 1, 2").fetchall(),
        "daily": q("SELECT * FROM rollup_daily ORDER BY 1, 2").fetchall(),
        "hourly": q("SELECT * FROM rollup_hourly ORDER BY 1, 2").fetchall(),
        "first_seen": q("SELECT * FROM user_first_seen ORDER BY 1, 2").fetchall(),
        "rejects": q("SELECT line, column_name, value, reason FROM import_rejects "
                     "ORDER BY line").fetchall(),
    }


def _counts(conn: sqlite3.Connection, job_id: str) -> tuple[Any, ...]:
    job = imports.get_job(conn, job_id)
    assert job is not None
    return (job.type, job.status, job.processed_records, job.duplicate_records,
            job.failed_records)


@pytest.mark.parametrize("through_backend", [False, True])
def test_a_kind_mapped_into_events_is_one_registry_entry(
        registry: dict[str, ImportKind], tmp_path: Path, fixed_clock: Clock,
        through_backend: bool) -> None:
    kinds.register(PAGEVIEWS_LITE)
    lite = _lite_csv(tmp_path / "import" / "pageviews_lite" / "nov.csv", 30)
    ours = connect(tmp_path / "lite.db")
    ref = connect(tmp_path / "ref.db")
    try:
        # the kind comes from the folder; rows go in through the events interface: the
        # SQLite backend given, or the one the importer makes over the connection
        events = SqliteEvents(ours) if through_backend else None
        got = import_file(ours, lite, clock=fixed_clock, events=events, batch_size=7)
        want = import_file(ref, _as_events_csv(lite, tmp_path / "events.csv"), kind="events",
                           clock=fixed_clock, batch_size=7)
        assert (got.kind, got.status) == ("pageviews_lite", "completed")
        assert (got.processed, got.duplicates, got.failed) == (30, 1, 1)
        assert (want.processed, want.duplicates, want.failed) == (30, 1, 1)
        assert _counts(ours, got.job_id) == ("pageviews_lite", "completed", 30, 1, 1)
        assert _stored(ours) == _stored(ref)  # events, sessions, rollups, rejects alike
        assert _stored(ours)["events"][0][2] == "pageview"
    finally:
        ours.close()
        ref.close()


class _Recording(SqliteEvents):
    """The SQLite events backend, recording which of its import writers the importer used."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.calls: list[tuple[str, str]] = []

    def import_stream(self, kind: str) -> Any:
        make = super().import_stream(kind)
        self.calls.append(("import_stream", kind))
        if make is None:
            return None

        def stream(job_id: str, now_ms: int) -> Any:
            self.calls.append(("stream", kind))
            return make(job_id, now_ms)
        return stream

    def write_import_batch(self, kind: str, *args: Any, **kw: Any) -> BatchOutcome:
        self.calls.append(("write_import_batch", kind))
        return super().write_import_batch(kind, *args, **kw)


def test_the_sqlite_import_goes_through_the_events_interface(
        tmp_path: Path, fixed_clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/architecture.md: the importer writes SQLite's rows through the events interface
    too (events: streams of several chunks per transaction, import_stream; other kinds:
    write_import_batch), whether the backend is given or made over the connection."""
    from pulse_tui.backend import sqlite as sqlite_backend
    from pulse_tui.ingest import importer

    conn = connect(tmp_path / "p.db")
    try:
        made: list[_Recording] = []

        def on_connection(c: sqlite3.Connection, events: Any = None) -> Any:
            rec = _Recording(c)
            made.append(rec)
            return sqlite_backend.on_connection(c, rec)
        monkeypatch.setattr("pulse_tui.backend.wiring.on_connection", on_connection)
        events = tmp_path / "events.csv"
        events.write_text("event_id,site_id,event_type,timestamp_ms,session_id\n" + "".join(
            f"e{i},s1,view,{TS0 + i},s{i}\n" for i in range(25)))
        users = tmp_path / "users.csv"
        users.write_text("user_id,site_id,plan\nu1,s1,pro\nu2,s1,free\n")
        got = importer.import_file(conn, events, kind="events", clock=fixed_clock,
                                   batch_size=10)
        assert (got.status, got.processed) == ("completed", 25)
        assert ("import_stream", "events") in made[0].calls
        assert made[0].calls.count(("stream", "events")) == 3  # 10 + 10 + 5 rows
        given = _Recording(conn)
        got = importer.import_file(conn, users, kind="users", clock=fixed_clock,
                                   events=given)
        assert (got.status, got.processed) == ("completed", 2)
        assert given.calls == [("import_stream", "users"), ("write_import_batch", "users")]
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 25
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 2
    finally:
        conn.close()


def _write_notes(conn: sqlite3.Connection, job_id: str, rows: Sequence[tuple[Any, ...]],
                 rejects: Sequence[imports.RejectRow], cp: Checkpoint, now_ms: int,
                 lines: Sequence[int] = ()) -> BatchOutcome:
    """The second file of a kind with a table of its own: its writer (here, in the test)."""
    with write_transaction(conn):
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO notes (note_id, body, noted_at) "
                         "VALUES (?, ?, ?)", [(*r, now_ms) for r in rows])
        stored = conn.total_changes - before
        outcome = BatchOutcome(stored, len(rows) - stored, len(rejects))
        imports._record(conn, job_id, rejects, outcome, cp, None)
    return outcome


@pytest.mark.parametrize("through_backend", [False, True])
def test_a_kind_with_a_table_of_its_own_is_an_entry_and_a_writer(
        registry: dict[str, ImportKind], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        fixed_clock: Clock, through_backend: bool) -> None:
    kinds.register(NOTES)
    monkeypatch.setitem(imports.WRITERS, "notes", _write_notes)
    conn = connect(tmp_path / "pulse.db")
    conn.execute("CREATE TABLE notes (note_id TEXT PRIMARY KEY, body TEXT, noted_at INTEGER)")
    src = tmp_path / "data.csv"  # neither folder nor name tells it: the header does
    src.write_text("note_id,body,colour\nn1,first,red\nn2,\"two\nlines\",blue\n,orphan,x\n"
                   "n1,again,red\nn3,third,\n", encoding="utf-8")
    try:
        events = SqliteEvents(conn) if through_backend else None
        result = import_file(conn, src, clock=fixed_clock, events=events, batch_size=2)
        assert (result.kind, result.status) == ("notes", "completed")
        assert (result.processed, result.duplicates, result.failed) == (3, 1, 1)
        assert result.unknown_columns == ["colour"]
        assert conn.execute("SELECT note_id, body, noted_at FROM notes ORDER BY 1").fetchall() \
            == [("n1", "first", fixed_clock.now_ms()), ("n2", "two\nlines", fixed_clock.now_ms()),
                ("n3", "third", fixed_clock.now_ms())]
        assert _counts(conn, result.job_id) == ("notes", "completed", 3, 1, 1)
        errors = write_errors_csv(conn, result.job_id, tmp_path, src.name)
        assert errors is not None
        assert errors.read_text(encoding="utf-8").splitlines() == [
            "line,column,value,reason", "5,note_id,,missing required value"]
    finally:
        conn.close()


def test_the_worker_watches_a_registered_kinds_folder(
        registry: dict[str, ImportKind], make_worker: Any, pulse_settings: Settings) -> None:
    kinds.register(PAGEVIEWS_LITE)
    folder = pulse_settings.import_dir / "pageviews_lite"
    assert not folder.exists()
    worker, rec = make_worker()
    wait_until(folder.is_dir)  # the worker creates the inbox folders of every kind
    tmp = _lite_csv(pulse_settings.import_dir / "drop.part", 12)
    tmp.rename(folder / "nov.csv")
    wait_until(lambda: rec.of(ImportFinished))
    [done] = rec.of(ImportFinished)
    assert (done.kind, done.status, done.processed, done.duplicates, done.failed) == (
        "pageviews_lite", "completed", 12, 1, 1)
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events WHERE event_type = 'pageview'"
                  ) == 12
    assert (pulse_settings.import_dir / "processed" / "nov.csv").exists()
    assert (pulse_settings.import_dir / "processed" / "nov.errors.csv").exists()


def test_lookups_read_the_registry(registry: dict[str, ImportKind], tmp_path: Path) -> None:
    assert kind_from_path(tmp_path / "pageviews_lite" / "x.csv") is None
    kinds.register(PAGEVIEWS_LITE)
    kinds.register(NOTES)
    assert kind_from_path(tmp_path / "pageviews_lite" / "x.csv") == "pageviews_lite"
    assert kind_from_path(tmp_path / "pageviews_lite_2026.csv.gz") == "pageviews_lite"
    assert kind_from_header(["Note_ID", "body"]) == "notes"
    assert kind_from_header(["event_id", "note_id"]) == "events"  # ranks: events first
    assert inbox.kind_of(tmp_path, tmp_path / "notes" / "a.csv") == "notes"
    assert inbox.kind_of(tmp_path, tmp_path / "notes") is None  # the folder itself
    assert set(inbox.inbox_dirs(tmp_path)) == {"events", "users", "cohort_members",
                                               "pageviews_lite", "notes"}
    assert kinds.folder_list("/") == ("events/, users/, cohort_members/, pageviews_lite/ "
                                      "or notes/")
    with pytest.raises(ValueError, match="already registered"):
        kinds.register(NOTES)
    with pytest.raises(ValueError, match="already belongs"):
        kinds.register(ImportKind("notes2", NOTES.columns, writer="notes", folder="notes"))


def test_the_built_in_kinds_and_their_writers() -> None:
    assert kinds.names() == ("events", "users", "cohort_members")
    assert kinds.folder_list() == "events, users or cohort_members"
    for kind in kinds.KINDS.values():
        assert kind.writer in imports.WRITERS, kind.name
    assert [k.name for k in kinds.KINDS.values() if k.site_required] == ["events"]
    # `import --type` offers exactly the registered kinds
    [choice] = [p.type for p in import_cmd.params if p.name == "kind"]
    assert tuple(choice.choices) == kinds.names()  # type: ignore[attr-defined]


def test_on_clickhouse_an_events_kind_goes_there_and_a_table_of_its_own_stays_in_sqlite(
        registry: dict[str, ImportKind], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        fixed_clock: Clock) -> None:
    from pulse_tui.backend.wiring import open_backends
    from tests.backend.chdb_support import fresh_chdb_url

    kinds.register(PAGEVIEWS_LITE)
    kinds.register(NOTES)
    monkeypatch.setitem(imports.WRITERS, "notes", _write_notes)
    backends = open_backends(tmp_path / "ch.db", fresh_chdb_url())
    try:
        conn = backends.events.conn  # type: ignore[attr-defined]
        conn.execute("CREATE TABLE notes (note_id TEXT PRIMARY KEY, body TEXT, "
                     "noted_at INTEGER)")
        lite = _lite_csv(tmp_path / "pageviews_lite" / "nov.csv", 20)
        got = import_file(conn, lite, clock=fixed_clock, events=backends.events, batch_size=7)
        assert (got.status, got.processed, got.duplicates, got.failed) == (
            "completed", 20, 1, 1)
        tail = backends.events.tail(limit=100).events
        assert sorted(e.event_id for e in tail) == sorted(f"p{i}" for i in range(20))
        assert {e.event_type for e in tail} == {"pageview"}
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        notes = tmp_path / "notes.csv"
        notes.write_text("note_id,body\nn1,a\nn2,b\n", encoding="utf-8")
        done = import_file(conn, notes, clock=fixed_clock, events=backends.events)
        assert (done.kind, done.status, done.processed) == ("notes", "completed", 2)
        assert conn.execute("SELECT note_id FROM notes ORDER BY 1").fetchall() == [("n1",),
                                                                                   ("n2",)]
    finally:
        backends.close()
