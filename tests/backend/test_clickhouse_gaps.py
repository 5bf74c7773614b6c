"""The gaps of the ClickHouse events store closed in issue 13's second pass: simulate and the
demo write there, a file whose events live elsewhere is refused in our words, cleanup keeps
what SPEC says it keeps, and a users row without a site keeps the user's site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import DAY_MS, Clock
from pulse_tui.cohorts.criteria import parse
from pulse_tui.config import Settings, events_store_identity
from pulse_tui.errors import DatabaseError, PulseError
from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange
from pulse_tui.worker.service import WorkerService
from tests.backend.chdb_support import chdb_dir, fresh_chdb_url
from tests.backend.test_clickhouse import (
    CLOCK,
    EVENT_COLS,
    NOW,
    TODAY,
    USER_COLS,
    _events,
    _everything,
    _import,
    _write,
)


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 180
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pulse_tui", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _sqlite_events(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------- simulate
def test_simulate_writes_into_the_configured_clickhouse_store(tmp_path: Path) -> None:
    chdb_dir()  # skip without chdb
    db = tmp_path / "p.db"
    store = f"chdb://{tmp_path / 'ch'}"
    done = _run("simulate", "--rate", "200", "--duration", "1.5", "--sites", "1", "--seed", "5",
                "--db", str(db), "--events-store", store)
    assert done.returncode == 0, done.stderr
    written = int(done.stderr.split("wrote ")[1].split()[0])
    assert written > 0
    assert _sqlite_events(db) == 0  # nothing went into the file's own events table
    daily = _run("report", "daily", "--format", "json", "--db", str(db), "--events-store", store)
    assert daily.returncode == 0, daily.stderr
    assert sum(row["events"] for row in json.loads(daily.stdout)) == written


# ---------------------------------------------------------------- users rows
@pytest.fixture
def ch(tmp_path: Path) -> Iterator[Backends]:
    b = open_backends(tmp_path / "ch.db", fresh_chdb_url())
    yield b
    b.close()


def test_a_users_row_without_a_site_keeps_the_users_site_on_both_stores(
        tmp_path: Path, ch: Backends) -> None:
    first = _write(tmp_path / "u1.csv", USER_COLS,
                   [("u1", "s1", "Ann", "a@x.example", "Acme", "free", NOW - DAY_MS,
                     NOW - DAY_MS),
                    ("u2", None, "Bob", "b@x.example", None, "free", NOW - DAY_MS,
                     NOW - DAY_MS)])
    # newer rows: u1 without a site (keeps s1), u2 now with one
    second = _write(tmp_path / "u2.csv", USER_COLS,
                    [("u1", None, "Ann B", "a@x.example", "Acme", "pro", NOW - DAY_MS, NOW),
                     ("u2", "s2", "Bob", "b@x.example", None, "pro", NOW - DAY_MS, NOW)])
    sq = open_backends(tmp_path / "sq.db", "sqlite")
    try:
        got = []
        for b in (sq, ch):
            for path in (first, second):
                assert _import(b, path, "users").processed == 2
            crit = parse({"type": "and", "conditions": [
                {"property": "plan", "operator": "equals", "value": "pro"}]})
            got.append((b.events.users_rows("s1", ["u1", "u2"]),
                        b.events.users_rows("s2", ["u1", "u2"]),
                        sorted(b.events.cohort_evaluate("s1", crit, NOW)),
                        sorted(b.events.cohort_evaluate("s2", crit, NOW))))
    finally:
        sq.close()
    assert got[1] == got[0]
    s1_rows, s2_rows, s1_members, _ = got[1]
    assert s1_rows["u1"][3] == "pro" and "u2" not in s1_rows  # u1 is still of s1
    assert set(s2_rows) == {"u2"} and [m[0] for m in s1_members] == ["u1"]


# ---------------------------------------------------------------- the file says where its events live
def test_a_file_whose_events_live_in_clickhouse_is_refused_by_another_store(
        tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    url_a, url_b = fresh_chdb_url(), fresh_chdb_url()
    first = open_backends(db, url_a)  # the first ClickHouse-configured use records it
    first.events.insert_events(  # type: ignore[attr-defined]
        [NewEvent("e1", "s1", "view", NOW - 1000, "x", "u1", "/", None, None, None)], NOW)
    first.close()
    identity = events_store_identity(url_a)
    assert "?database=" in identity and "@" not in identity

    with pytest.raises(DatabaseError) as sqlite_side:
        open_backends(db, "sqlite")
    text = str(sqlite_side.value)
    assert identity in text and "events_store = sqlite" in text
    assert f"--events-store {identity}" in text
    with pytest.raises(DatabaseError) as other:
        open_backends(db, url_b)
    assert identity in str(other.value) and events_store_identity(url_b) in str(other.value)
    again = open_backends(db, url_a)  # the recorded one still opens, with its events
    try:
        assert [e.event_id for e in again.events.tail().events] == ["e1"]
    finally:
        again.close()

    # the commands that open the file by themselves say the same, exit 1, change nothing
    csv_file = _write(tmp_path / "events.csv", EVENT_COLS,
                      [("e2", "s1", "view", NOW - 500, "x", "u1", "/", None, None, None)])
    env = {"PULSE_DB": str(db)}
    for args in (("report", "daily", "--site", "s1"), ("import", str(csv_file)),
                 ("rebuild-rollups",), ()):
        done = _run(*args, env=env)
        assert done.returncode == 1, (args, done.stderr)
        assert identity in done.stderr and "--events-store" in done.stderr, args
        assert "Traceback" not in done.stderr
    assert _sqlite_events(db) == 0


def test_a_clickhouse_store_refuses_a_file_that_still_holds_its_own_events(
        tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    sq = open_backends(db, "sqlite")
    _import(sq, _write(tmp_path / "e.csv", EVENT_COLS,
                       [("e1", "s1", "view", NOW - 1000, "x", "u1", "/", None, None, None)]))
    sq.close()
    url = fresh_chdb_url()
    with pytest.raises(DatabaseError, match="copy-events --to URL"):
        open_backends(db, url)
    reopened = open_backends(db, "sqlite")  # nothing was recorded: SQLite still reads it
    reopened.close()


def test_the_worker_on_a_moved_file_stops_saying_why(tmp_path: Path,
                                                     pulse_settings: Settings) -> None:
    open_backends(pulse_settings.db, url := fresh_chdb_url()).close()
    service = WorkerService(pulse_settings, clock=Clock(NOW))
    raised: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)  # a deadline: it should stop at once
    if thread.is_alive():
        service.request_stop()
        thread.join(timeout=10)
        pytest.fail("the worker served a file whose events live in ClickHouse")
    assert len(raised) == 1 and isinstance(raised[0], PulseError)
    assert events_store_identity(url) in str(raised[0])


# ---------------------------------------------------------------- threads on one embedded engine
THREADS_SCRIPT = """
import sys, threading
from pulse_tui.backend.wiring import open_backends
from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange

db, store = sys.argv[1], sys.argv[2]
writer, reader = open_backends(db, store), open_backends(db, store)
errors = []

def write():
    try:
        for k in range(40):
            writer.events.insert_events([NewEvent(f"e{k}-{i}", "s1", "view", 1_700_000_000_000 + i,
                                                  "x", "u", "/", None, None, None)
                                         for i in range(200)], 1_700_000_000_000)
    except BaseException as exc:
        errors.append(exc)

def read():
    try:
        for _ in range(200):
            reader.events.tail(limit=5)
            reader.events.change_token()
    except BaseException as exc:
        errors.append(exc)

threads = [threading.Thread(target=write), threading.Thread(target=read)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("done", len(reader.events.tail(limit=100_000).events), errors)
"""


def test_two_threads_on_one_embedded_engine_do_not_deadlock(tmp_path: Path) -> None:
    """The TUI's panes, its embedded worker and the demo's traffic query chdb from three
    threads; an insert through Python() while another thread queries used to hang forever.
    A subprocess, so a hang fails the test by its timeout instead of stopping the suite."""
    chdb_dir()
    done = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, str(tmp_path / "p.db"),
                           f"chdb://{tmp_path / 'ch'}"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["done", "8000", "[]"]


# ---------------------------------------------------------------- cleanup keeps what SPEC 9 keeps
def _after_cleanup(tmp_path: Path, ch: Backends, pulse_settings: Settings
                   ) -> tuple[dict[str, object], dict[str, object]]:
    rows = _events(7, 3000)
    events = _write(tmp_path / "events.csv", EVENT_COLS, rows)
    settings = replace(pulse_settings, events_retention_days=30)
    sq = open_backends(tmp_path / "sq.db", "sqlite")
    try:
        deleted = []
        for b in (sq, ch):
            assert _import(b, events).processed == 3000
            deleted.append(b.events.cleanup(settings, CLOCK).events)
        old = sum(1 for r in rows if int(r[3]) < NOW - 30 * DAY_MS)  # type: ignore[call-overload]
        assert deleted[0] == deleted[1] >= old - 1 > 0  # the newest arrival is kept
        return _everything(sq), _everything(ch)
    finally:
        sq.close()


def test_cleanup_keeps_reports_first_seen_dates_cohorts_and_retention_as_on_sqlite(
        tmp_path: Path, ch: Backends, pulse_settings: Settings) -> None:
    got_sqlite, got_ch = _after_cleanup(tmp_path, ch, pulse_settings)
    compared = list(got_sqlite)  # reports, cohorts, members, both retention grids, cells
    for key in compared:
        assert got_ch[key] == got_sqlite[key], key
    # what the comparison is about: 90-day reports still count the deleted days, and users
    # whose events before the cutoff are gone keep their first-seen dates
    whole = [k for k in compared if k.startswith("s1 DateRange(start=datetime.date(2026, 9, 1)")]
    daily = next(got_sqlite[k] for k in whole if k.endswith(" daily"))
    assert sum(r[1] for r in daily[:30]) > 0  # type: ignore[index]
    old_members = [m for m in got_sqlite["s1 criteria 6"] if m[1] < NOW - 30 * DAY_MS]
    assert old_members


def test_a_cleanup_pass_stopped_before_its_delete_counts_nothing_twice(
        tmp_path: Path, ch: Backends, pulse_settings: Settings) -> None:
    rows = _events(8, 800)
    _import(ch, _write(tmp_path / "e.csv", EVENT_COLS, rows))
    settings = replace(pulse_settings, events_retention_days=30)
    whole = DateRange(TODAY - timedelta(days=80), TODAY)
    want = {s: ch.events.range_totals(s, whole, NOW).current for s in ("s1", "s2")}
    ev = ch.events
    cutoff = NOW - 30 * DAY_MS
    newest = ev.ch.rows(f"SELECT max(ingest_seq) FROM {ev.t('events')}")[0][0]  # type: ignore[attr-defined]
    ev._keep("timestamp_ms < {cutoff:Int64} AND ingest_seq != {newest:UInt64}",  # type: ignore[attr-defined]
             {"cutoff": cutoff, "newest": int(newest)})
    # ... the process died here: kept rows written, the events not deleted yet
    assert ev.cleanup(settings, CLOCK).events > 0
    assert {s: ev.range_totals(s, whole, NOW).current for s in ("s1", "s2")} == want
    assert ev.cleanup(settings, CLOCK).events == 0
    assert {s: ev.range_totals(s, whole, NOW).current for s in ("s1", "s2")} == want
