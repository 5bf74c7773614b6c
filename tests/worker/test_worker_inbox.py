"""The import folder: which files count, settling, moves with collision suffixes, retry."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pulse_tui.config import Settings
from pulse_tui.errors import PulseError
from pulse_tui.store.connection import connect
from pulse_tui.worker import ImportFinished, inbox
from pulse_tui.worker.service import retry_failed_job
from tests.conftest import wait_until
from tests.worker.conftest import HEADER, event_rows, query, scalar, write_events


def test_kind_of_names(tmp_path: Path) -> None:
    d = tmp_path
    assert inbox.kind_of(d, d / "events" / "anything.csv") == "events"
    assert inbox.kind_of(d, d / "users" / "u.csv.gz") == "users"
    assert inbox.kind_of(d, d / "cohort_members" / "m.csv") == "cohort_members"
    assert inbox.kind_of(d, d / "events_2024.csv") == "events"
    assert inbox.kind_of(d, d / "users.csv") == "users"
    assert inbox.kind_of(d, d / "cohort_members-x.csv") == "cohort_members"
    assert inbox.kind_of(d, d / "other.csv") is None
    assert inbox.kind_of(d, d / "processed" / "events.csv") is None
    assert inbox.kind_of(d, d / "events" / "sub" / "a.csv") is None
    for ignored in (".hidden.csv", "a.csv.tmp", "a.csv.part", "a.partial", "a.csv~",
                    "a.errors.csv", "A.CSV.PART", ".pulse-worker.lock"):
        assert inbox.kind_of(d, d / "events" / ignored) is None, ignored
    assert inbox.kind_of(d, d / ".events.csv") is None
    assert inbox.kind_of(d, d / "events.csv.part") is None


def test_unique_destination_and_errors_names(tmp_path: Path) -> None:
    assert inbox.unique_destination(tmp_path, "events.csv") == tmp_path / "events.csv"
    (tmp_path / "events.csv").write_text("x")
    assert inbox.unique_destination(tmp_path, "events.csv") == tmp_path / "events.1.csv"
    (tmp_path / "events.1.errors.csv").write_text("x")  # the errors name is taken too
    assert inbox.unique_destination(tmp_path, "events.csv") == tmp_path / "events.2.csv"
    (tmp_path / "u.csv.gz").write_text("x")
    assert inbox.unique_destination(tmp_path, "u.csv.gz") == tmp_path / "u.1.csv.gz"
    assert inbox.errors_name("events.1.csv") == "events.1.errors.csv"
    assert inbox.errors_name("u.1.csv.gz") == "u.1.errors.csv"


def test_move_never_overwrites(tmp_path: Path) -> None:
    src, dest = tmp_path / "a", tmp_path / "b"
    src.write_text("new")
    dest.write_text("old")
    with pytest.raises(FileExistsError):
        inbox.move_no_overwrite(src, dest)
    assert dest.read_text() == "old" and src.read_text() == "new"


def test_finish_move_after_link_crash(tmp_path: Path) -> None:
    src, dest = tmp_path / "a", tmp_path / "b"
    src.write_text("data")
    os.link(src, dest)  # crash between link and unlink
    assert inbox.finish_move(src, dest)
    assert not src.exists() and dest.read_text() == "data"


def test_settle_tracker_waits_for_stillness(tmp_path: Path) -> None:
    now = [0.0]
    tracker = inbox.SettleTracker(1.0, lambda: now[0])
    f = tmp_path / "a.csv"
    f.write_text("a")
    tracker.add(f, "events")
    assert tracker.settled() == []  # first observation
    now[0] = 0.9
    assert tracker.settled() == []
    with open(f, "a") as fh:
        fh.write("more")
    now[0] = 1.5
    assert tracker.settled() == []  # it changed: the clock restarts
    now[0] = 2.4
    assert tracker.settled() == []
    now[0] = 2.5
    assert tracker.settled() == [(f, "events")]
    f.unlink()
    assert tracker.settled() == [] and len(tracker) == 0


def test_slow_chunked_file_is_imported_once_and_complete(make_worker, pulse_settings: Settings
                                                          ) -> None:
    now = [1000.0]
    lock = threading.Lock()

    def monotonic() -> float:
        with lock:
            return now[0]

    worker, rec = make_worker(monotonic=monotonic)
    wait_until(lambda: worker.state.state == "running")
    target = pulse_settings.import_dir / "events" / "slow.csv"
    chunks = [HEADER + event_rows(0, 100)] + [event_rows(100 * k, 100) for k in range(1, 6)]
    with open(target, "w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(chunk)
            fh.flush()
            size = target.stat().st_size
            wait_until(lambda size=size: worker._tracker.observed_size(target) == size)
            with lock:  # less than settle_seconds between two writes
                now[0] += pulse_settings.settle_seconds * 0.6
    assert not rec.of(ImportFinished)
    with lock:
        now[0] += pulse_settings.settle_seconds * 2
    wait_until(lambda: rec.of(ImportFinished))
    done = rec.of(ImportFinished)
    assert len(done) == 1 and done[0].status == "completed" and done[0].processed == 600
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 600
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 1
    assert (pulse_settings.import_dir / "processed" / "slow.csv").exists()
    assert not target.exists()


def test_part_file_is_taken_only_after_rename(make_worker, pulse_settings: Settings) -> None:
    worker, rec = make_worker()
    inbox_dir = pulse_settings.import_dir
    part = inbox_dir / "events" / "big.csv.part"
    part.write_text(HEADER + event_rows(0, 50), encoding="utf-8")
    for name in (".hidden.csv", "x.csv.tmp", "x.partial", "x.csv~", "x.errors.csv"):
        (inbox_dir / "events" / name).write_text(HEADER + event_rows(0, 5, prefix=name))
    (inbox_dir / "not-a-type.csv").write_text(HEADER + event_rows(0, 5, prefix="n"))
    # a sentinel proves the worker scanned and imported while the others sat there
    write_events(inbox_dir / "events" / "sentinel.csv", 3, prefix="sent")
    wait_until(lambda: len(rec.of(ImportFinished)) == 1)
    assert rec.of(ImportFinished)[0].file.endswith("sentinel.csv")
    assert part.exists()
    part.rename(inbox_dir / "events" / "big.csv")
    wait_until(lambda: len(rec.of(ImportFinished)) == 2)
    assert rec.of(ImportFinished)[1].processed == 50
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 53
    names = sorted(p.name for p in (inbox_dir / "events").iterdir())
    assert names == [".hidden.csv", "x.csv.tmp", "x.csv~", "x.errors.csv", "x.partial"]
    assert (inbox_dir / "not-a-type.csv").exists()
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == 2


def test_top_level_file_counts_as_its_type(make_worker, pulse_settings: Settings) -> None:
    worker, rec = make_worker()
    write_events(pulse_settings.import_dir / "events-2026.csv", 7)
    wait_until(lambda: rec.of(ImportFinished))
    assert rec.of(ImportFinished)[0].kind == "events"
    assert (pulse_settings.import_dir / "processed" / "events-2026.csv").exists()


def test_moves_with_collision_suffix_and_errors_file(make_worker, pulse_settings: Settings
                                                     ) -> None:
    d = pulse_settings.import_dir
    worker, rec = make_worker()
    write_events(d / "events" / "events.csv", 5, bad=2)
    wait_until(lambda: len(rec.of(ImportFinished)) == 1)
    write_events(d / "events" / "events.csv", 5, prefix="f", bad=1)
    wait_until(lambda: len(rec.of(ImportFinished)) == 2)
    write_events(d / "events" / "events.csv", 4, prefix="g")
    wait_until(lambda: len(rec.of(ImportFinished)) == 3)
    processed = d / "processed"
    assert sorted(p.name for p in processed.iterdir()) == [
        "events.1.csv", "events.1.errors.csv", "events.2.csv", "events.csv", "events.errors.csv"]
    first = (processed / "events.errors.csv").read_text().splitlines()
    assert first[0] == "line,column,value,reason" and len(first) == 3
    assert first[1].startswith("7,timestamp_ms,not-a-time,")
    assert len((processed / "events.1.errors.csv").read_text().splitlines()) == 2
    a, b, c = rec.of(ImportFinished)
    assert (a.failed, b.failed, c.failed) == (2, 1, 0)
    assert c.errors_path is None and a.errors_path == str(processed / "events.errors.csv")
    rows = query(pulse_settings.db, "SELECT status, result_path FROM import_jobs "
                 "ORDER BY created_at, rowid")
    assert [r[1] for r in rows] == [str(processed / n) for n in
                                    ("events.csv", "events.1.csv", "events.2.csv")]
    assert {r[0] for r in rows} == {"completed"}


def test_failed_file_goes_to_failed_and_can_be_retried(make_worker, pulse_settings: Settings
                                                       ) -> None:
    d = pulse_settings.import_dir
    worker, rec = make_worker()
    (d / "events" / "nocols.csv").write_text("event_id,event_type\ne1,click\n")
    (d / "failed").mkdir(exist_ok=True)
    (d / "failed" / "nocols.csv").write_text("an older failure")
    wait_until(lambda: rec.of(ImportFinished))
    fin = rec.of(ImportFinished)[0]
    assert fin.status == "failed" and "timestamp" in (fin.message or "")
    assert fin.result_path == str(d / "failed" / "nocols.1.csv")
    assert (d / "failed" / "nocols.csv").read_text() == "an older failure"
    conn = connect(pulse_settings.db)
    try:
        back = retry_failed_job(conn, d, fin.job_id)
        assert back == d / "events" / "nocols.csv" and back.exists()
        with pytest.raises(PulseError):
            retry_failed_job(conn, d, fin.job_id)  # its file is no longer in failed/
    finally:
        conn.close()
    wait_until(lambda: len(rec.of(ImportFinished)) == 2)
    second = rec.of(ImportFinished)[1]
    assert second.job_id != fin.job_id and second.status == "failed"
    assert (d / "failed" / "nocols.1.csv").exists()


def test_after_import_hooks_are_isolated(make_worker, pulse_settings: Settings) -> None:
    seen: list[tuple[str, str]] = []

    def broken(ctx, finished) -> None:
        raise RuntimeError("boom")

    def good(ctx, finished) -> None:
        n = ctx.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        seen.append((finished.status, f"{n}"))

    worker, rec = make_worker(after_import=[broken, good])
    write_events(pulse_settings.import_dir / "events" / "h.csv", 4)
    wait_until(lambda: seen)
    assert seen == [("completed", "4")]
    assert scalar(pulse_settings.db, "SELECT count(*) FROM pulse_meta "
                  "WHERE key LIKE 'import_hooks_pending:%'") == 0
