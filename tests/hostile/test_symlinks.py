"""Issue 14.1: nothing PULSE writes in the import folder goes through a symbolic link, and a
link dropped in as an input file is moved to failed/ as itself, never followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.ingest import import_file, write_errors_csv
from pulse_tui.safefs import UnsafePathError
from pulse_tui.store.connection import connect
from pulse_tui.worker import ImportFinished, inbox
from tests.conftest import wait_until
from tests.hostile.conftest import HEADER, event_rows, query, scalar, write_events


def _seed_events(settings: Settings, clock: Clock, n: int = 50) -> None:
    outside = write_events(settings.db.parent / "seed.csv", n, prefix="seed")
    conn = connect(settings.db)
    try:
        assert import_file(conn, outside, kind="events", clock=clock).processed == n
    finally:
        conn.close()


@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_lock_file_planted_on_the_database_is_refused_and_the_database_kept(
        plant: str, make_worker, pulse_settings: Settings, fixed_clock: Clock) -> None:
    _seed_events(pulse_settings, fixed_clock)
    lock = pulse_settings.import_dir / inbox.LOCK_NAME
    if plant == "symlink":
        lock.symlink_to(pulse_settings.db)
    else:
        os.link(pulse_settings.db, lock)
    worker, _ = make_worker()
    wait_until(lambda: worker.state.state == "stopped" and worker.error is not None)
    assert "lock file" in str(worker.error)
    assert ("symbolic link" if plant == "symlink" else "hard link") in str(worker.error)
    assert pulse_settings.db.read_bytes()[:16] == b"SQLite format 3\x00"
    assert scalar(pulse_settings.db, "PRAGMA integrity_check") == "ok"
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 50


def test_processed_replaced_by_a_link_is_refused_and_the_file_left_alone(
        make_worker, pulse_settings: Settings, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    processed = pulse_settings.import_dir / "processed"
    if processed.exists():
        processed.rmdir()
    processed.symlink_to(elsewhere, target_is_directory=True)
    src = write_events(pulse_settings.import_dir / "events" / "a.csv", 20, bad=2)
    worker, _ = make_worker()
    wait_until(lambda: "imports paused" in worker.state.detail)
    assert "symbolic link" in worker.state.detail
    assert list(elsewhere.iterdir()) == []
    assert src.exists()
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 0
    # fixed by the operator: imported and moved into the real folder
    processed.unlink()
    # the move links the file into processed/ and then unlinks the inbox name: await both
    wait_until(lambda: (pulse_settings.import_dir / "processed" / "a.csv").exists()
               and not src.exists(), timeout=20)
    assert list(elsewhere.iterdir()) == []
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1


def test_a_move_never_lands_in_a_folder_swapped_for_a_link(
        pulse_settings: Settings, tmp_path: Path) -> None:
    """The race after the check: the move itself refuses a destination folder that is a link."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    failed = pulse_settings.import_dir / "failed"
    failed.symlink_to(elsewhere, target_is_directory=True)
    src = write_events(pulse_settings.import_dir / "events" / "b.csv", 3)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        inbox.move_no_overwrite(src, failed / "b.csv")
    assert src.exists() and list(elsewhere.iterdir()) == []


def test_errors_file_never_written_through_a_planted_link(
        pulse_settings: Settings, fixed_clock: Clock, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    folder = pulse_settings.import_dir / "events"
    src = write_events(folder / "c.csv", 5, bad=3)
    # every name an attacker could guess: the old fixed pattern, with this process's pid
    for name in (f".c.errors.csv.{os.getpid()}.tmp", "c.errors.csv.tmp"):
        (folder / name).symlink_to(victim)
    conn = connect(pulse_settings.db)
    try:
        job = import_file(conn, src, kind="events", clock=fixed_clock).job_id
        written = write_errors_csv(conn, job, folder, src.name)
    finally:
        conn.close()
    assert victim.read_text() == "precious\n"
    assert written is not None and not written.is_symlink()
    assert written.read_text().startswith("line,column,value,reason")


@pytest.mark.parametrize("when", ["at start-up", "while running"])
def test_symlinked_input_is_moved_to_failed_as_a_link_and_never_followed(
        when: str, make_worker, pulse_settings: Settings, tmp_path: Path) -> None:
    target = write_events(tmp_path / "outside.csv", 30)  # a valid file: following it imports
    link = pulse_settings.import_dir / "events" / "linked.csv"
    top = pulse_settings.import_dir / "events_top.csv"
    if when == "at start-up":
        link.symlink_to(target)
        top.symlink_to("/etc/passwd")
        worker, rec = make_worker()
    else:
        worker, rec = make_worker()
        wait_until(lambda: worker.state.state == "running")
        link.symlink_to(target)
        top.symlink_to("/etc/passwd")
    wait_until(lambda: len(rec.of(ImportFinished)) == 2, timeout=20)
    failed = pulse_settings.import_dir / "failed"
    for name, points_to in (("linked.csv", str(target)), ("events_top.csv", "/etc/passwd")):
        moved = failed / name
        assert moved.is_symlink() and os.readlink(moved) == points_to
    assert not os.path.lexists(link) and not os.path.lexists(top)
    assert target.exists()  # the target itself is untouched
    rows = query(pulse_settings.db, "SELECT status, message, processed_records FROM import_jobs")
    assert sorted(rows) == [("failed", "symbolic links are not imported", 0)] * 2
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 0


def test_inbox_subfolder_replaced_by_a_link_is_not_emptied(
        make_worker, pulse_settings: Settings, tmp_path: Path) -> None:
    """events/ pointing at someone else's folder: nothing there is imported or moved away."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    kept = write_events(theirs / "ledger.csv", 10)
    events = pulse_settings.import_dir / "events"
    events.rmdir()
    events.symlink_to(theirs, target_is_directory=True)
    worker, _ = make_worker()
    wait_until(lambda: "imports paused" in worker.state.detail)
    assert "events" in worker.state.detail and "symbolic link" in worker.state.detail
    assert kept.exists() and [p.name for p in theirs.iterdir()] == ["ledger.csv"]
    assert events.is_symlink()  # the operator's link is not taken for an input file
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 0


def test_an_inbox_folder_swapped_for_a_link_during_a_batch_is_never_read_through(
        make_worker, pulse_settings: Settings, tmp_path: Path) -> None:
    """The race after the folder check: files that settled together are imported one after
    the other; the inbox folder swapped for a link meanwhile is never read through."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "b.csv").write_text(HEADER + event_rows(0, 3, prefix="secret")
                                  + "secret9,pageview,SECRET-VALUE,s1,site1,u1\n")
    inbox_dir = pulse_settings.import_dir / "events"
    write_events(inbox_dir / "a.csv", 5, prefix="a")
    write_events(inbox_dir / "b.csv", 5, prefix="b")
    swapped: list[bool] = []

    def swap(ctx: object, finished: ImportFinished) -> None:
        if not swapped:  # after the first file: the other waits in the same batch
            inbox_dir.rename(inbox_dir.with_name("events.real"))
            inbox_dir.symlink_to(secret, target_is_directory=True)
            swapped.append(True)

    worker, rec = make_worker(after_import=[swap], rescan_interval=3600)
    wait_until(lambda: len(rec.of(ImportFinished)) >= 2, timeout=20)
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events WHERE event_id LIKE "
                  "'secret%'") == 0
    assert sorted(p.name for p in secret.iterdir()) == ["b.csv"]
    for folder in ("processed", "failed"):
        for f in (pulse_settings.import_dir / folder).iterdir():
            assert "SECRET" not in f.read_text(errors="replace")


def test_retry_never_removes_a_file_through_a_failed_folder_swapped_for_a_link(
        pulse_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retrying a failed file removes its stale errors file from failed/; failed/ swapped for
    a link just after the move must not make that removal land elsewhere."""
    from pulse_tui.worker import service

    failed = pulse_settings.import_dir / "failed"
    failed.mkdir(exist_ok=True)
    write_events(failed / "events-d.csv", 3)
    (failed / "events-d.errors.csv").write_text("line,column,value,reason\n")
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    (victim_dir / "events-d.errors.csv").write_text("precious\n")
    move = inbox.move_no_overwrite

    def move_then_swap(src: Path, dest: Path, import_dir: Path | None = None) -> None:
        move(src, dest, import_dir)
        failed.rename(failed.with_name("failed.real"))
        failed.symlink_to(victim_dir, target_is_directory=True)

    monkeypatch.setattr(service.inbox, "move_no_overwrite", move_then_swap)
    conn = connect(pulse_settings.db)
    try:
        back = service.retry_failed_file(conn, pulse_settings.import_dir, failed / "events-d.csv")
    finally:
        conn.close()
    assert back == pulse_settings.import_dir / "events" / "events-d.csv" and back.exists()
    assert (victim_dir / "events-d.errors.csv").read_text() == "precious\n"
