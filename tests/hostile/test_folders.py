"""Issue 14.7: processed/ or failed/ missing, not a folder, read-only or refusing the move:
create what is missing, or fail once with a clear reason and never import the file again."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pulse_tui.config import Settings
from pulse_tui.worker import FileWaiting, ImportFinished, inbox
from tests.conftest import wait_until
from tests.hostile.conftest import query, scalar, write_events


def test_processed_removed_while_running_is_created_again(
        make_worker, pulse_settings: Settings) -> None:
    worker, rec = make_worker()
    wait_until(lambda: worker.state.state == "running")
    processed = pulse_settings.import_dir / "processed"
    processed.rmdir()
    src = write_events(pulse_settings.import_dir / "events" / "late.csv", 10, bad=1)
    wait_until(lambda: rec.of(ImportFinished), timeout=20)
    assert processed.is_dir() and not processed.is_symlink()
    assert (processed / "late.csv").exists() and (processed / "late.errors.csv").exists()
    assert not src.exists()
    assert query(pulse_settings.db, "SELECT status, result_path FROM import_jobs") == [
        ("completed", str(processed / "late.csv"))]


def test_processed_that_is_not_a_folder_pauses_imports_once_across_restarts(
        worker_process, pulse_settings: Settings) -> None:
    processed = pulse_settings.import_dir / "processed"
    if processed.exists():
        processed.rmdir()
    processed.write_text("not a folder\n")
    src = write_events(pulse_settings.import_dir / "events" / "waiting.csv", 25)
    for _ in range(2):  # the same on every start: said once, nothing imported, file untouched
        proc = worker_process()
        wait_until(lambda p=proc: "imports paused" in p.log() or not p.alive(), timeout=30)
        assert proc.alive(), proc.log()
        assert proc.stop() == 0
        log = proc.log()
        assert log.count("imports paused") == 1
        assert f"{processed} is not a folder" in log
        assert "Traceback" not in log
        assert src.exists()
        assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 0
    processed.unlink()  # fixed by the operator
    proc = worker_process()
    wait_until(lambda: (processed / "waiting.csv").exists() or not proc.alive(), timeout=30)
    assert proc.stop() == 0, proc.log()
    assert query(pulse_settings.db, "SELECT status, processed_records FROM import_jobs") == [
        ("completed", 25)]


def test_a_move_that_fails_is_said_once_and_the_file_never_imported_again(
        make_worker, pulse_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """processed/ on a read-only file system (as root, permissions alone cannot refuse)."""
    real_finish = inbox.finish_move

    def read_only(src: Path, dest: Path, import_dir: Path | None = None) -> bool:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(inbox, "finish_move", read_only)
    src = write_events(pulse_settings.import_dir / "events" / "stuck.csv", 15)
    hooks: list[str] = []
    worker, rec = make_worker(after_import=[lambda ctx, fin: hooks.append(fin.job_id)])
    wait_until(lambda: rec.of(ImportFinished), timeout=20)
    assert worker.stop(timeout=10)
    rows = query(pulse_settings.db, "SELECT status, result_path, message FROM import_jobs")
    assert len(rows) == 1
    status, result_path, message = rows[0]
    assert status == "completed" and result_path is None  # never claims processed/NAME
    assert "could not be moved" in message and "Read-only file system" in message
    assert src.exists()
    for _ in range(2):  # restarts: not imported again, no second webhook
        again, rec2 = make_worker(after_import=[lambda ctx, fin: hooks.append(fin.job_id)])
        # seen in the inbox, settled and passed over
        wait_until(lambda w=again, r=rec2: r.of(FileWaiting) and not w._tracker.pending(),
                   timeout=10)
        assert again.stop(timeout=10)
        assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1
        assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 15
    assert len(hooks) == 1
    monkeypatch.setattr(inbox, "finish_move", real_finish)  # the folder is writable again
    fixed, _ = make_worker()
    wait_until(lambda: (pulse_settings.import_dir / "processed" / "stuck.csv").exists(),
               timeout=20)
    assert not src.exists()
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1
    assert scalar(pulse_settings.db, "SELECT result_path FROM import_jobs") == str(
        pulse_settings.import_dir / "processed" / "stuck.csv")
    assert len(hooks) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_failed_folder_pauses_imports(make_worker, pulse_settings: Settings) -> None:
    failed = pulse_settings.import_dir / "failed"
    failed.mkdir(exist_ok=True)
    failed.chmod(0o555)
    try:
        src = write_events(pulse_settings.import_dir / "events" / "ro.csv", 5)
        worker, _ = make_worker()
        wait_until(lambda: "imports paused" in worker.state.detail)
        assert "not writable" in worker.state.detail and src.exists()
    finally:
        failed.chmod(0o755)


def test_a_file_linked_into_processed_whose_inbox_name_cannot_be_removed(
        make_worker, pulse_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """An inbox folder that refuses removals: the file is in processed/ already and stays in
    the inbox too; no restart imports it again, and it ends with one copy in processed/."""
    real_unlink = os.unlink

    def no_removal(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.path.basename(os.fsdecode(path)) == "sticky.csv":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", no_removal)
    src = write_events(pulse_settings.import_dir / "events" / "sticky.csv", 12)
    dest = pulse_settings.import_dir / "processed" / "sticky.csv"
    worker, rec = make_worker()
    wait_until(lambda: rec.of(ImportFinished), timeout=20)
    assert worker.stop(timeout=10)
    assert src.exists() and dest.exists()
    assert query(pulse_settings.db, "SELECT status, result_path FROM import_jobs") == [
        ("completed", str(dest))]
    again, rec2 = make_worker()
    wait_until(lambda: rec2.of(FileWaiting) and not again._tracker.pending(), timeout=10)
    assert again.stop(timeout=10)
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1
    monkeypatch.setattr(os, "unlink", real_unlink)
    make_worker()
    wait_until(lambda: not src.exists(), timeout=20)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["sticky.csv"]
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 12
