"""Issue 14.3: a file that changes while it is imported is never marked imported with rows
missing: what ends in the database is every row of the file that is finally there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.ingest import import_file
from pulse_tui.store.connection import connect
from pulse_tui.worker import ImportCommitted, ImportFinished
from tests.conftest import wait_until
from tests.hostile.conftest import HEADER, event_rows, query, scalar, write_events

OLD_ROWS = 5_000


def _ids(db: Path) -> set[str]:
    return {r[0] for r in query(db, "SELECT event_id FROM events")}


def _expected(prefix: str, count: int) -> set[str]:
    return {f"{prefix}{i}" for i in range(count)}


def _change(path: Path, how: str) -> set[str]:
    """Change ``path`` as an outside program would; the event ids the file then holds."""
    if how == "replaced by rename":
        new = path.with_name(".new.part")
        new.write_text(HEADER + event_rows(0, 1_000, prefix="new"))
        os.rename(new, path)
        return _expected("new", 1_000)
    if how == "overwritten in place":  # same inode, longer content (a new copy written over)
        with open(path, "r+", encoding="utf-8") as fh:
            fh.write(HEADER + event_rows(0, OLD_ROWS + 2_000, prefix="new"))
        return _expected("new", OLD_ROWS + 2_000)
    if how == "truncated":
        with open(path, "r+", encoding="utf-8") as fh:
            fh.truncate(0)
            fh.write(HEADER + event_rows(0, 300, prefix="old"))
        return _expected("old", 300)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["replaced by rename", "overwritten in place", "truncated"])
def test_file_changed_mid_import_ends_with_every_row_of_the_final_file(
        how: str, make_worker, pulse_settings: Settings, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    monkeypatch.setenv("PULSE_IMPORT_BATCH_ROWS", "500")
    src = write_events(pulse_settings.import_dir / "events" / "moving.csv", OLD_ROWS,
                       prefix="old")
    final: set[str] = set()

    def on_event(event: object) -> None:  # runs in the worker's thread, between batches
        if isinstance(event, ImportCommitted) and not final:
            final.update(_change(src, how))

    worker, rec = make_worker(start=False)
    inner = worker.on_event
    worker.on_event = lambda e: (on_event(e), inner(e))  # type: ignore[func-returns-value]
    worker.start()
    wait_until(lambda: final and _expected_in_db(pulse_settings.db, final)
               and not src.exists(), timeout=40)
    ids = _ids(pulse_settings.db)
    assert final <= ids
    jobs = query(pulse_settings.db, "SELECT status, processed_records, duplicate_records, "
                 "message, result_path FROM import_jobs ORDER BY created_at, rowid")
    assert len(jobs) == 2, jobs
    first, second = jobs
    if how == "replaced by rename":  # the old file was read to its end: all of it is in
        assert first[0] == "completed" and first[1] == OLD_ROWS and first[4] == ""
        assert "replaced while it was imported" in first[3]
        assert _expected("old", OLD_ROWS) <= ids
    else:
        assert first[0] == "failed" and "changed while it was imported" in first[3]
        assert first[4] == ""  # nothing moved as this job's
    assert second[0] == "completed" and second[1] + second[2] == len(final)
    assert Path(second[4]).name == "moving.csv" and Path(second[4]).exists()
    # the event follows the move (after the hooks): wait for it, not only for the move
    fins = wait_until(lambda: len(rec.of(ImportFinished)) >= 2 and rec.of(ImportFinished))
    assert [f.status for f in fins] == [first[0], "completed"]


def _expected_in_db(db: Path, expected: set[str]) -> bool:
    return expected <= _ids(db) and scalar(
        db, "SELECT count(*) FROM import_jobs WHERE status = 'completed' AND "
        "result_path LIKE '%processed%'") >= 1


def test_resume_after_a_crash_on_a_file_replaced_with_the_same_size_imports_it_anew(
        make_worker, pulse_settings: Settings, fixed_clock: Clock) -> None:
    """The checkpoint's byte offset belongs to the old file: resuming into the new one would
    skip its first rows. Same size, so only the file's identity tells them apart."""
    src = write_events(pulse_settings.import_dir / "events" / "same.csv", 2_000, prefix="a")
    conn = connect(pulse_settings.db)
    try:  # a worker killed after its first batch
        old_job = import_file(conn, src.absolute(), kind="events", clock=fixed_clock,
                              batch_size=500, should_stop=lambda: True).job_id
    finally:
        conn.close()
    assert scalar(pulse_settings.db, "SELECT checkpoint_rows FROM import_jobs") == 500
    size = src.stat().st_size
    new = write_events(src.with_name("x.csv.tmp"), 2_000, prefix="b")
    assert new.stat().st_size == size
    os.rename(new, src)
    worker, rec = make_worker()
    wait_until(lambda: any(f.status == "completed" for f in rec.of(ImportFinished)),
               timeout=30)
    assert _expected("b", 2_000) <= _ids(pulse_settings.db)
    rows = dict(query(pulse_settings.db, "SELECT id, status FROM import_jobs"))
    assert rows.pop(old_job) == "failed" and list(rows.values()) == ["completed"]
    assert (pulse_settings.import_dir / "processed" / "same.csv").exists()


def test_file_replaced_while_its_errors_file_is_written_is_imported_not_moved(
        make_worker, pulse_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race after the import: the file is replaced by a rename while the worker writes
    the old file's errors file (a big one takes a while); the new file is imported, never
    moved to processed/ unread."""
    from pulse_tui import ingest

    src = write_events(pulse_settings.import_dir / "events" / "r.csv", 50, prefix="old", bad=3)
    original = ingest.write_errors_csv
    replaced: list[bool] = []

    def slow_errors_file(*args: object, **kwargs: object) -> object:
        if not replaced:
            replaced.append(True)
            _change(src, "replaced by rename")
        return original(*args, **kwargs)

    monkeypatch.setattr(ingest, "write_errors_csv", slow_errors_file)
    worker, _ = make_worker()
    wait_until(lambda: worker.state.state == "running")
    wait_until(lambda: _expected("new", 1_000) <= _ids(pulse_settings.db), timeout=20)
    wait_until(lambda: not src.exists(), timeout=20)
    assert _ids(pulse_settings.db) == _expected("old", 50) | _expected("new", 1_000)
    rows = sorted(query(pulse_settings.db, "SELECT processed_records, result_path "
                        "FROM import_jobs"))
    assert [r[0] for r in rows] == [50, 1_000]
    assert rows[0][1] == ""  # the old file's job: nothing of it moved (the file is gone)
    assert Path(rows[1][1]).parent.name == "processed"
    assert Path(rows[1][1]).read_text().count("new") == 1_000
