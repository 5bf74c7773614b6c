"""import_file against a real SQLite file: jobs, duplicates, derived tables, resume, members."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from pulse_tui.clock import Clock
from pulse_tui.ingest import import_file, neutralise, write_errors_csv
from pulse_tui.ingest.parse import member_id_for
from pulse_tui.store import derived
from pulse_tui.store import imports as store
from pulse_tui.store.connection import connect

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
TS = 1_764_072_000_000
HEADER = "event_id,site_id,event_type,timestamp_ms,session_id,user_id,url\n"


def make_events(path: Path, n: int, *, start: int = 0, bad_every: int = 0, sessions: int = 7,
                site: str = "acme") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        for i in range(start, start + n):
            ts = "1764072000" if bad_every and i % bad_every == 0 else str(TS + i * 60_000)
            url = '"/a\nb"' if i % 5 == 0 else f"/p{i % 3}"
            fh.write(f"e{i},{site},page_view,{ts},s{i % sessions},u{i % 4},{url}\n")
    return path


def snapshot(conn: sqlite3.Connection) -> dict[str, object]:
    q = conn.execute
    return {
        "events": q("SELECT count(*) FROM events").fetchone()[0],
        "sessions": q("SELECT session_id, site_id, user_id, first_event_at, last_event_at, "
                      "event_count FROM sessions ORDER BY 1").fetchall(),
        "daily": q("SELECT * FROM rollup_daily ORDER BY 1, 2").fetchall(),
        "hourly": q("SELECT * FROM rollup_hourly ORDER BY 1, 2").fetchall(),
        "dims": q("SELECT * FROM rollup_daily_dims ORDER BY 1, 2, 3, 4").fetchall(),
        "users": q("SELECT * FROM rollup_daily_users ORDER BY 1, 2, 3").fetchall(),
        "first_seen": q("SELECT * FROM user_first_seen ORDER BY 1, 2").fetchall(),
    }


def job_counts(conn: sqlite3.Connection, job_id: str) -> tuple[int, int, int, int, str]:
    job = store.get_job(conn, job_id)
    assert job is not None
    return (job.processed_records, job.duplicate_records, job.failed_records,
            job.total_records or 0, job.status)


def test_sample_events_import_then_again_changes_nothing(conn: sqlite3.Connection,
                                                         fixed_clock: Clock) -> None:
    r1 = import_file(conn, SAMPLE / "events.csv", clock=fixed_clock, batch_size=64)
    assert r1.status == "completed" and r1.kind == "events" and r1.site_id == "acme-web"
    assert r1.failed == 3 and r1.duplicates == 1
    assert r1.total == 390 and r1.processed == 386
    assert job_counts(conn, r1.job_id) == (386, 1, 3, 390, "completed")
    reasons = {r[0]: r[3] for r in store.iter_rejects(conn, r1.job_id)}
    assert any("seconds" in v for v in reasons.values())
    errors = json.loads(store.get_job(conn, r1.job_id).errors or "[]")  # type: ignore[union-attr]
    assert len(errors) == 3
    markup = conn.execute("SELECT url FROM events WHERE event_id = 'evt_markup'").fetchone()[0]
    assert markup == "/search?q=[bold red]x[/]"
    once = snapshot(conn)
    assert once["events"] == 386
    assert sum(r[2] for r in once["daily"]) == 386  # type: ignore[index,union-attr]
    assert sum(r[5] for r in once["sessions"]) == 386  # type: ignore[index,union-attr]

    r2 = import_file(conn, SAMPLE / "events.csv", clock=fixed_clock, batch_size=64)
    assert (r2.processed, r2.duplicates, r2.failed) == (0, 387, 3)
    assert snapshot(conn) == once


def test_duplicates_within_and_across_files_counted_once(tmp_path: Path, conn: sqlite3.Connection,
                                                         fixed_clock: Clock) -> None:
    a = tmp_path / "a.csv"
    a.write_text(HEADER + f"e1,s,t,{TS},x\ne2,s,t,{TS},x\ne1,s,t,{TS},x\ne1,s,t,{TS + 1},y\n")
    b = tmp_path / "b.csv"
    b.write_text(HEADER + f"e2,s,t,{TS},x\ne3,s,t,{TS},x\n")
    r1 = import_file(conn, a, kind="events", clock=fixed_clock, batch_size=2)
    assert (r1.processed, r1.duplicates, r1.failed) == (2, 2, 0)
    r2 = import_file(conn, b, kind="events", clock=fixed_clock)
    assert (r2.processed, r2.duplicates, r2.failed) == (1, 1, 0)
    assert conn.execute("SELECT event_count FROM sessions WHERE session_id = 'x'").fetchone() == (3,)
    assert conn.execute("SELECT count(*) FROM sessions WHERE session_id = 'y'").fetchone() == (0,)
    assert conn.execute("SELECT sum(events) FROM rollup_daily").fetchone() == (3,)


@pytest.mark.parametrize("gz", [False, True])
def test_resume_after_stop_gives_exact_counts(tmp_path: Path, fixed_clock: Clock, gz: bool
                                              ) -> None:
    src = make_events(tmp_path / "events.csv", 230, bad_every=17)
    if gz:
        with open(src, "rb") as fh, gzip.open(tmp_path / "events.csv.gz", "wb") as out:
            shutil.copyfileobj(fh, out)
        src = tmp_path / "events.csv.gz"
    ref = connect(tmp_path / "ref.db")
    expected = import_file(ref, src, clock=fixed_clock, batch_size=50)
    ref_rejects = list(store.iter_rejects(ref, expected.job_id))

    conn = connect(tmp_path / "resume.db")
    seen: list[int] = []
    r1 = import_file(conn, src, clock=fixed_clock, batch_size=50,
                     progress=lambda p: seen.append(p.records), should_stop=lambda: True)
    assert r1.interrupted and seen == [50]
    job = store.get_job(conn, r1.job_id)
    assert job is not None and job.status == "processing" and job.checkpoint_rows == 50
    assert job.checkpoint_line > 50 and job.checkpoint_offset > 0
    r2 = import_file(conn, src, clock=fixed_clock, batch_size=50, job_id=r1.job_id)
    assert r2.status == "completed" and r2.job_id == r1.job_id
    assert (r2.processed, r2.duplicates, r2.failed) == (
        expected.processed, expected.duplicates, expected.failed)
    assert list(store.iter_rejects(conn, r1.job_id)) == ref_rejects
    assert snapshot(conn) == snapshot(ref)
    # a finished job is returned as it is
    r3 = import_file(conn, src, clock=fixed_clock, job_id=r1.job_id)
    assert (r3.status, r3.processed) == ("completed", r2.processed)
    ref.close()
    conn.close()


def test_crash_inside_a_batch_rolls_it_back_and_resume_is_exact(
        tmp_path: Path, fixed_clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_events(tmp_path / "events.csv", 120, bad_every=11)
    ref = connect(tmp_path / "ref.db")
    expected = import_file(ref, src, clock=fixed_clock, batch_size=40)

    conn = connect(tmp_path / "crash.db")
    real = derived.catch_up
    calls = {"n": 0}

    def crashing(c: sqlite3.Connection, now_ms: int, **kw: object) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(c, now_ms)

    monkeypatch.setattr(derived, "catch_up", crashing)
    with pytest.raises(RuntimeError):
        import_file(conn, src, clock=fixed_clock, batch_size=40, job_id="job-1")
    monkeypatch.setattr(derived, "catch_up", real)
    assert job_counts(conn, "job-1")[4] == "processing"
    assert store.get_job(conn, "job-1").checkpoint_rows == 40  # type: ignore[union-attr]
    r = import_file(conn, src, clock=fixed_clock, batch_size=40, job_id="job-1")
    assert (r.processed, r.duplicates, r.failed, r.status) == (
        expected.processed, expected.duplicates, expected.failed, "completed")
    assert snapshot(conn) == snapshot(ref)
    ref.close()
    conn.close()


def test_chunks_share_one_transaction_and_a_crash_keeps_the_last_commit(
        tmp_path: Path, fixed_clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events are parsed in chunks of PARSE_CHUNK_ROWS inside transactions of batch_size rows:
    same result as one chunk per transaction, and a crash rolls back the whole transaction
    (its chunks, derived rows and checkpoint together)."""
    from pulse_tui.ingest import importer

    src = make_events(tmp_path / "events.csv", 130, bad_every=11)
    ref = connect(tmp_path / "ref.db")
    expected = import_file(ref, src, clock=fixed_clock, batch_size=10)
    monkeypatch.setattr(importer, "PARSE_CHUNK_ROWS", 7)
    conn = connect(tmp_path / "chunks.db")
    real = derived.catch_up
    calls = {"n": 0}

    def crashing(c: sqlite3.Connection, now_ms: int, **kw: object) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(c, now_ms)

    monkeypatch.setattr(derived, "catch_up", crashing)
    with pytest.raises(RuntimeError):
        import_file(conn, src, clock=fixed_clock, batch_size=50, job_id="job-2")
    monkeypatch.setattr(derived, "catch_up", real)
    job = store.get_job(conn, "job-2")
    assert job is not None and job.checkpoint_rows == 56  # 8 chunks of 7 >= 50
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == job.processed_records
    assert derived.pending_rows(conn) == 0
    r = import_file(conn, src, clock=fixed_clock, batch_size=50, job_id="job-2")
    assert (r.processed, r.duplicates, r.failed, r.status) == (
        expected.processed, expected.duplicates, expected.failed, "completed")
    assert snapshot(conn) == snapshot(ref)
    ref.close()
    conn.close()


def test_job_site_id_rules(tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    f = tmp_path / "e.csv"
    f.write_text("event_id,event_type,timestamp_ms,session_id\n" + f"e1,t,{TS},s\n")
    r = import_file(conn, f, kind="events", site_id="web", clock=fixed_clock)
    assert r.site_id == "web"
    assert conn.execute("SELECT site_id FROM events").fetchone() == ("web",)
    assert conn.execute("SELECT id FROM sites").fetchall() == [("web",)]
    g = tmp_path / "g.csv"
    g.write_text(HEADER + f"g1,,t,{TS},s\ng2,other,t,{TS},s\n")
    r = import_file(conn, g, kind="events", clock=fixed_clock)
    assert r.site_id == "other" and r.failed == 1
    h = tmp_path / "h.csv"
    h.write_text(HEADER)
    assert import_file(conn, h, kind="events", clock=fixed_clock).site_id == ""


@pytest.mark.parametrize(("content", "needle"), [
    (b"", "empty"),
    (b"event_id,site_id,event_type,timestamp_ms\ne1,a,t,1764072000000\n", "session_id"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", "UTF-8"),
])
def test_whole_file_failures(tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock,
                             content: bytes, needle: str) -> None:
    f = tmp_path / "events.csv"
    f.write_bytes(content)
    r = import_file(conn, f, clock=fixed_clock)
    assert r.status == "failed" and needle in (r.message or "")
    job = store.get_job(conn, r.job_id)
    assert job is not None and job.status == "failed" and job.message == r.message
    assert job.completed_at is not None


def test_unreadable_file_fails_job(tmp_path: Path, conn: sqlite3.Connection,
                                   fixed_clock: Clock) -> None:
    r = import_file(conn, tmp_path / "events" / "missing.csv", clock=fixed_clock)
    assert r.status == "failed" and "cannot read" in (r.message or "")
    assert r.kind == "events"


def test_truncated_gzip_fails_but_keeps_committed_batches(tmp_path: Path,
                                                          conn: sqlite3.Connection,
                                                          fixed_clock: Clock) -> None:
    src = make_events(tmp_path / "events.csv", 3000)
    data = gzip.compress(src.read_bytes())
    bad = tmp_path / "events.csv.gz"
    bad.write_bytes(data[: len(data) // 2])
    r = import_file(conn, bad, clock=fixed_clock, batch_size=100)
    assert r.status == "failed" and "cannot read" in (r.message or "")
    assert r.processed == conn.execute("SELECT count(*) FROM events").fetchone()[0] > 0


def _cohort(conn: sqlite3.Connection, cid: str, kind: str) -> None:
    conn.execute("INSERT OR IGNORE INTO sites (id, created_at) VALUES ('acme-web', 0)")
    conn.execute(
        "INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, updated_at, kind) "
        "VALUES (?, 'acme-web', ?, '{\"type\": \"and\", \"conditions\": []}', 0, 0, ?)",
        (cid, cid, kind))


def test_cohort_members_static_criteria_and_unknown(tmp_path: Path, conn: sqlite3.Connection,
                                                    fixed_clock: Clock) -> None:
    _cohort(conn, "beta", "static")
    _cohort(conn, "power", "criteria")
    f = tmp_path / "cohort_members.csv"
    f.write_text("cohort_id,user_id,joined_at\nbeta,u1,2026-11-01T00:00:00Z\nbeta,u2,\n"
                 "power,u3,\nghost,u4,\n")
    r = import_file(conn, f, clock=fixed_clock, batch_size=2)
    assert r.kind == "cohort_members" and r.site_id == "acme-web"
    assert (r.processed, r.duplicates, r.failed) == (2, 0, 2)
    rejects = list(store.iter_rejects(conn, r.job_id))
    assert [(x[0], x[1]) for x in rejects] == [(4, "cohort_id"), (5, "cohort_id")]
    assert "criteria cohort" in rejects[0][3] and "unknown cohort" in rejects[1][3]
    rows = conn.execute("SELECT member_id, user_id, joined_at, last_seen_at, is_active "
                        "FROM cohort_members ORDER BY user_id").fetchall()
    joined = 1_793_491_200_000
    assert rows == [(member_id_for("beta", "u1"), "u1", joined, joined, 1),
                    (member_id_for("beta", "u2"), "u2", fixed_clock.now_ms(),
                     fixed_clock.now_ms(), 1)]
    later = Clock(fixed_clock.now_ms() + 1000)
    again = import_file(conn, f, clock=later)
    assert (again.processed, again.duplicates, again.failed) == (0, 2, 2)
    # a missing joined_at keeps the stored one
    assert conn.execute("SELECT joined_at FROM cohort_members WHERE user_id = 'u2'"
                        ).fetchone() == (fixed_clock.now_ms(),)


def test_sample_members_and_users(conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    _cohort(conn, "beta-testers", "static")
    r = import_file(conn, SAMPLE / "cohort_members.csv", clock=fixed_clock)
    assert (r.status, r.processed, r.failed) == ("completed", 12, 0)
    u = import_file(conn, SAMPLE / "users.csv", clock=fixed_clock)
    assert (u.kind, u.processed, u.failed) == ("users", 40, 0)
    u2 = import_file(conn, SAMPLE / "users.csv", clock=fixed_clock)
    assert (u2.processed, u2.duplicates) == (0, 40)


def test_users_newer_updated_at_wins(tmp_path: Path, conn: sqlite3.Connection,
                                     fixed_clock: Clock) -> None:
    f = tmp_path / "users.csv"
    f.write_text("user_id,plan,updated_at\nu1,free,2026-01-01\nu1,pro,2026-02-01\n"
                 "u1,old,2025-12-01\n")
    r = import_file(conn, f, clock=fixed_clock)
    assert (r.processed, r.duplicates) == (2, 1)
    assert conn.execute("SELECT plan FROM users").fetchone() == ("pro",)


def test_errors_csv_neutralised(tmp_path: Path, conn: sqlite3.Connection,
                                fixed_clock: Clock) -> None:
    f = tmp_path / "events.csv.gz"
    f.write_bytes(gzip.compress((HEADER + f"=cmd,a,t,{TS},s\ne2,a,t,-1,s\n"
                                 f"e3,a,t,{TS},s\n").encode()))
    r = import_file(conn, f, clock=fixed_clock)
    assert r.failed == 1  # "=cmd" is a valid id; -1 is out of range
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    written = write_errors_csv(conn, r.job_id, out_dir, f.name)
    assert written == out_dir / "events.errors.csv"
    rows = list(csv.reader(written.open(encoding="utf-8")))
    assert rows[0] == ["line", "column", "value", "reason"]
    assert rows[1][:3] == ["3", "timestamp_ms", "'-1"]
    assert neutralise("@x") == "'@x" and neutralise("\tx") == "'\tx" and neutralise("a=b") == "a=b"
    assert neutralise("+1") == "'+1" and neutralise("\rx") == "'\rx" and neutralise(None) == ""
    clean = import_file(conn, f, clock=fixed_clock)
    assert write_errors_csv(conn, clean.job_id, out_dir, "x.csv") is not None
    ok = tmp_path / "ok.csv"
    ok.write_text(HEADER + f"z1,a,t,{TS},s\n")
    okr = import_file(conn, ok, kind="events", clock=fixed_clock)
    assert write_errors_csv(conn, okr.job_id, out_dir, ok.name) is None


def test_unknown_columns_noted_on_job(tmp_path: Path, conn: sqlite3.Connection,
                                      fixed_clock: Clock) -> None:
    f = tmp_path / "events.csv"
    f.write_text("event_id,site_id,event_type,timestamp,session_id,browser\n"
                 + "".join(f"e{i},a,t,{TS},s,ff\n" for i in range(4)))
    r = import_file(conn, f, clock=fixed_clock)
    assert r.unknown_columns == ["browser"] and r.failed == 0 and r.processed == 4
    assert "browser" in (store.get_job(conn, r.job_id).message or "")  # type: ignore[union-attr]


def test_next_tx_rows_aims_at_the_lock_time() -> None:
    from pulse_tui.ingest.importer import next_tx_rows

    assert next_tx_rows(10_000, 0.5, 1.0, 2_000, 100_000) == 20_000  # fast: twice as many
    assert next_tx_rows(10_000, 0.8, 1.0, 2_000, 100_000) == 12_500
    assert next_tx_rows(10_000, 0.1, 1.0, 2_000, 100_000) == 20_000  # at most doubles
    assert next_tx_rows(10_000, 4.0, 1.0, 2_000, 100_000) == 2_500  # slow or contended
    assert next_tx_rows(10_000, 40.0, 1.0, 2_000, 100_000) == 2_000  # never below a chunk
    assert next_tx_rows(80_000, 0.2, 1.0, 2_000, 100_000) == 100_000  # never above batch_size
    assert next_tx_rows(0, 0.0, 1.0, 2_000, 100_000) == 2_000


@pytest.mark.parametrize("tx_seconds, expected", [
    # chunks of 2,000 rows; a first transaction of at least 5,000 rows
    (1000.0, [6_000, 12_000, 22_000]),  # quick transactions grow (2x at most), to the end
    (0.0, [2_000] * 20 + [0]),  # each past its time after one chunk (then the empty last)
])
def test_shared_lock_imports_size_transactions_by_time(
        tmp_path: Path, fixed_clock: Clock, tx_seconds: float, expected: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a pause (the worker), transactions start small and follow the time they hold the
    write lock; counts and derived tables are those of a one-transaction import."""
    from pulse_tui.ingest import importer

    monkeypatch.setattr(importer.time, "sleep", lambda s: None)  # the pause itself
    src = make_events(tmp_path / "events.csv", 40_000, sessions=500)
    ref = connect(tmp_path / "ref.db")
    import_file(ref, src, clock=fixed_clock, batch_size=100_000)
    conn = connect(tmp_path / "shared.db")
    sizes: list[int] = []
    done = [0]

    def progress(p: importer.ImportProgress) -> None:
        sizes.append(p.records - done[0])
        done[0] = p.records

    r = import_file(conn, src, clock=fixed_clock, batch_size=100_000, max_tx_seconds=tx_seconds,
                    pause_between_tx=0.12, progress=progress)
    assert r.status == "completed" and r.processed == 40_000
    assert sizes == expected
    assert snapshot(conn) == snapshot(ref)
    ref.close()
    conn.close()


@pytest.mark.parametrize("live_traffic", [False, True])
def test_shared_lock_transactions_stay_short_while_others_write_events(
        tmp_path: Path, fixed_clock: Clock, monkeypatch: pytest.MonkeyPatch,
        live_traffic: bool) -> None:
    """The worker's transactions may hold the lock QUIET_TX_FACTOR times longer only while no
    other connection stores events during its pauses (live traffic waiting for the lock)."""
    from pulse_tui.ingest import importer

    db = tmp_path / "live.db"
    conn = connect(db)
    other = connect(db)
    other.execute("INSERT INTO sites (id, created_at) VALUES ('live', 0)")
    written = [0]

    def pause(seconds: float) -> None:  # another program writes while the importer pauses
        if live_traffic:
            written[0] += 1
            other.execute("INSERT INTO events (event_id, site_id, event_type, timestamp_ms, "
                          "session_id, created_at) VALUES (?, 'live', 'pageview', ?, 's', 0)",
                          (f"live-{written[0]}", TS))

    targets: list[float] = []
    real = importer.next_tx_rows

    def spy(rows: int, held: float, target: float, lowest: int, highest: int) -> int:
        targets.append(target)
        return real(rows, held, target, lowest, highest)

    monkeypatch.setattr(importer.time, "sleep", pause)
    monkeypatch.setattr(importer, "next_tx_rows", spy)
    src = make_events(tmp_path / "events.csv", 20_000, sessions=300)
    r = import_file(conn, src, clock=fixed_clock, batch_size=4_000, max_tx_seconds=5.0,
                    pause_between_tx=0.12)
    assert r.status == "completed" and r.processed == 20_000
    assert len(targets) >= 4
    if live_traffic:
        assert set(targets) == {5.0} and written[0] == len(targets)
    else:
        assert set(targets) == {5.0 * importer.QUIET_TX_FACTOR}
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 20_000 + written[0]
    other.close()
    conn.close()
