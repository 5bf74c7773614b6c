"""Exports: definitions, due runs on a controllable clock, files on disk, failures, formats."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from pulse_tui.clock import DAY_MS, HOUR_MS, Clock, parse_instant
from pulse_tui.config import Settings
from pulse_tui.errors import ValidationError
from pulse_tui.exports import (
    create_export,
    exports_job,
    get_export,
    list_exports,
    recent_runs,
    request_run,
    run_due,
    run_export,
    update_export,
)
from pulse_tui.exports.files import file_name
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import reports
from pulse_tui.store.connection import connect
from pulse_tui.worker.scheduler import JobContext

SITE = "acme"
T0 = parse_instant("2026-11-25T12:00:00Z")  # conftest FIXED_NOW


class MovableClock(Clock):
    """A fixed clock the test moves forward."""

    def __init__(self, now_ms: int) -> None:
        super().__init__(now_ms)
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


def _events() -> list[NewEvent]:
    urls = ["/home", "=cmd()", "+SUM(A1)", "-2+3", "@import", "\tTab", "/pricing"]
    out = []
    for i in range(140):
        day = i % 10
        out.append(NewEvent(
            event_id=f"e{i}", site_id=SITE, event_type=("pageview", "signup", "purchase")[i % 3],
            timestamp_ms=T0 - day * DAY_MS - (i % 7) * 60_000, session_id=f"s{i % 25}",
            user_id=f"u{i % 12}" if i % 5 else None, url=urls[i % len(urls)],
            country=("US", "DE", "FR")[i % 3], device_type="desktop"))
    return out


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(T0)


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    write_batch(conn, _events(), T0)
    return conn


def _read_csv(path: str | Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(Path(path).read_text("utf-8"))))


def _cells(rows: list[tuple[object, ...]]) -> list[list[str]]:
    return [["" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
             for v in r] for r in rows]


def _path_of(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def _runs(conn: sqlite3.Connection, export_id: str) -> int:
    return conn.execute("SELECT count(*) FROM export_runs WHERE export_id = ?",
                        (export_id,)).fetchone()[0]


def test_daily_export_runs_once_per_day(db: sqlite3.Connection, db_path: Path,
                                        pulse_settings: Settings, clock: MovableClock) -> None:
    e = create_export(db, clock, site_id=SITE, type="report", name="Daily traffic",
                      filters={"report": "daily", "days": 7},
                      scheduled={"frequency": "daily", "next_run": T0})
    assert e.status == "pending" and e.next_run == T0
    assert run_due(db, pulse_settings, clock).startswith("ran 1 export(s): 1 completed")
    after = get_export(db, e.id)
    assert after.status == "completed" and after.next_run == T0 + DAY_MS
    assert after.completed_at == T0 and after.error is None
    runs = recent_runs(db, e.id)
    assert len(runs) == 1 and runs[0].status == "completed" and runs[0].rows == 7
    path = Path(runs[0].file_path or "")
    assert path.parent == pulse_settings.export_dir and path.is_file()
    assert after.file_url == path.resolve().as_uri()
    # the file holds exactly the report's rows
    want = reports.run_report(db, "daily", SITE, reports.default_range(clock, 7), now_ms=T0)
    assert _read_csv(path) == [["day", "events", "users", "sessions"], *_cells(want)]
    assert sum(int(r[1]) for r in _read_csv(path)[1:]) > 0
    # a second pass, a restarted worker (new connection, job entry point): nothing more
    assert run_due(db, pulse_settings, clock) == "no exports due"
    other = connect(db_path)
    try:
        ctx = JobContext(conn=other, settings=pulse_settings, clock=clock)
        assert exports_job(ctx).endswith("no exports due")
    finally:
        other.close()
    clock.now = T0 + DAY_MS - 1
    assert run_due(db, pulse_settings, clock) == "no exports due"
    assert _runs(db, e.id) == 1
    # the next day: one more run, a new file, next_run one day later
    clock.now = T0 + DAY_MS + 5_000
    assert "1 completed" in run_due(db, pulse_settings, clock)
    assert _runs(db, e.id) == 2
    again = get_export(db, e.id)
    assert again.next_run == T0 + 2 * DAY_MS
    latest = recent_runs(db, e.id)[0]
    assert latest.file_path != str(path) and Path(latest.file_path or "").is_file()
    assert again.file_url == Path(latest.file_path or "").resolve().as_uri()


def test_hourly_export_after_long_downtime_runs_once(db: sqlite3.Connection,
                                                     pulse_settings: Settings,
                                                     clock: MovableClock) -> None:
    e = create_export(db, clock, site_id=SITE, type="metrics", name="hourly",
                      filters={"days": 2}, scheduled={"frequency": "hourly", "next_run": T0})
    clock.now = T0 + 50 * HOUR_MS + 10 * 60_000  # 50 missed slots
    run_due(db, pulse_settings, clock)
    run_due(db, pulse_settings, clock)
    assert _runs(db, e.id) == 1
    assert get_export(db, e.id).next_run == T0 + 51 * HOUR_MS  # on the grid, in the future


def test_once_export_runs_once(db: sqlite3.Connection, pulse_settings: Settings,
                               clock: MovableClock) -> None:
    e = create_export(db, clock, site_id=SITE, type="report", name="one off",
                      filters={"report": "breakdown", "from": "2026-11-20", "to": "2026-11-25"})
    assert e.frequency == "once" and e.next_run == T0
    run_due(db, pulse_settings, clock)
    clock.now += 7 * DAY_MS
    assert run_due(db, pulse_settings, clock) == "no exports due"
    done = get_export(db, e.id)
    assert done.status == "completed" and done.next_run is None and _runs(db, e.id) == 1


def test_audience_export_lists_active_members_with_users_rows(
        db: sqlite3.Connection, pulse_settings: Settings, clock: MovableClock) -> None:
    from pulse_tui.store.cohorts import create_cohort

    db.executemany("INSERT INTO users (user_id, site_id, name, email, company, plan, created_at, "
                   "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [(f"u{i}", SITE, f"User {i}", f"u{i}@x.test", "=HYPERLINK()", "pro",
                     T0 - i, T0) for i in range(0, 12, 2)])
    cohort = create_cohort(db, clock, site_id=SITE, name="US", criteria={
        "type": "and", "conditions": [{"property": "country", "operator": "equals",
                                       "value": "US"}]})
    # a leaver keeps the row with is_active 0 and must not be exported
    db.execute("UPDATE cohort_members SET is_active = 0 WHERE cohort_id = ? AND user_id = "
               "(SELECT min(user_id) FROM cohort_members WHERE cohort_id = ?)",
               (cohort.cohort_id, cohort.cohort_id))
    active = {r[0]: r[1:] for r in db.execute(
        "SELECT m.user_id, m.joined_at, m.last_seen_at, u.name, u.email, u.plan "
        "FROM cohort_members m LEFT JOIN users u ON u.user_id = m.user_id "
        "WHERE m.cohort_id = ? AND m.is_active = 1", (cohort.cohort_id,))}
    assert len(active) >= 3
    assert db.execute("SELECT count(*) FROM cohort_members WHERE cohort_id = ? AND "
                      "is_active = 0", (cohort.cohort_id,)).fetchone()[0] == 1
    e = create_export(db, clock, site_id=SITE, type="audience", name="US users",
                      format="json", filters={"cohort_id": cohort.cohort_id})
    result = run_export(db, e.id, pulse_settings, clock)
    assert result.ok and result.rows == len(active)
    data = json.loads(Path(result.file_path or "").read_text("utf-8"))
    got = {r["user_id"]: (r["joined_at"], r["last_seen_at"], r["name"], r["email"], r["plan"])
           for r in data}
    assert got == active
    assert set(data[0]) == {"user_id", "joined_at", "last_seen_at", "name", "email", "company",
                            "plan", "user_created_at", "user_updated_at"}
    # the CSV flavour neutralises the company cell
    update_export(db, clock, e.id, format="csv")
    csv_rows = _read_csv(run_export(db, e.id, pulse_settings, clock).file_path or "")
    assert len(csv_rows) == len(active) + 1
    assert {r[5] for r in csv_rows[1:] if r[5]} == {"'=HYPERLINK()"}


def test_csv_cells_are_neutralised(db: sqlite3.Connection, pulse_settings: Settings,
                                   clock: MovableClock) -> None:
    e = create_export(db, clock, site_id=SITE, type="report", name="urls",
                      filters={"report": "top-urls", "days": 30, "limit": 50})
    result = run_export(db, e.id, pulse_settings, clock)
    rows = _read_csv(result.file_path or "")
    values = {r[0] for r in rows[1:]}
    assert {"'=cmd()", "'+SUM(A1)", "'-2+3", "'@import", "'\tTab", "/home"} <= values
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in r)


def test_json_export_has_the_report_keys(db: sqlite3.Connection, pulse_settings: Settings,
                                         clock: MovableClock) -> None:
    e = create_export(db, clock, site_id=SITE, type="report", name="types", format="json",
                      filters={"report": "breakdown", "days": 30})
    result = run_export(db, e.id, pulse_settings, clock)
    assert result.file_path and result.file_path.endswith(".json")
    data = json.loads(Path(result.file_path).read_text("utf-8"))
    want = reports.run_report(db, "breakdown", SITE, reports.default_range(clock, 30), now_ms=T0)
    assert data == [dict(zip(("event_type", "events", "users"), r, strict=True)) for r in want]
    assert [list(d) for d in data] == [["event_type", "events", "users"]] * len(want)
    # metrics: daily rows plus totals
    m = create_export(db, clock, site_id=SITE, type="metrics", name="m", format="json",
                      filters={"days": 10})
    md = json.loads(Path(run_export(db, m.id, pulse_settings, clock).file_path or "")
                    .read_text("utf-8"))
    rng = reports.default_range(clock, 10)
    t = reports.totals(db, SITE, rng)
    assert md["totals"] == {"events": t.events, "users": t.users, "sessions": t.sessions}
    assert [r["day"] for r in md["daily"]] == [d.isoformat() for d in rng.each_day()]
    assert sum(r["events"] for r in md["daily"]) == t.events == 140


def test_failed_export_is_marked_and_succeeds_once_fixed(
        db: sqlite3.Connection, pulse_settings: Settings, clock: MovableClock,
        tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    broken = replace(pulse_settings, export_dir=blocker / "exports")
    e = create_export(db, clock, site_id=SITE, type="report", name="daily",
                      filters={"report": "daily", "days": 3},
                      scheduled={"frequency": "daily", "next_run": T0})
    outcome = run_due(db, broken, clock)
    assert "1 failed" in outcome
    failed = get_export(db, e.id)
    assert failed.status == "failed"
    assert failed.error is not None and "\n" not in failed.error
    assert failed.error.startswith(f"cannot create export dir {blocker / 'exports'}")
    assert failed.file_url is None
    assert failed.next_run == T0 + DAY_MS  # retried at the next interval
    run = recent_runs(db, e.id)[0]
    assert run.status == "failed" and run.error == failed.error and run.file_path is None
    assert run_due(db, broken, clock) == "no exports due"
    # fixed, next slot: completed, error cleared
    clock.now = T0 + DAY_MS
    assert "1 completed" in run_due(db, pulse_settings, clock)
    fixed = get_export(db, e.id)
    assert fixed.status == "completed" and fixed.error is None and fixed.file_url
    assert _path_of(fixed.file_url).is_file()
    assert [r.status for r in recent_runs(db, e.id)] == ["completed", "failed"]


def test_run_now_retries_a_failed_export_at_once(
        db: sqlite3.Connection, pulse_settings: Settings, clock: MovableClock,
        tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    e = create_export(db, clock, site_id=SITE, type="metrics", name="m",
                      scheduled={"frequency": "weekly", "next_run": T0})
    bad = run_export(db, e.id, replace(pulse_settings, export_dir=blocker), clock,
                     only_if_due=True)
    assert bad.status == "failed" and bad.error == f"export dir {blocker} is not a folder"
    assert bad.next_run == T0 + 7 * DAY_MS
    clock.now = T0 + HOUR_MS
    queued = request_run(db, clock, e.id)
    assert queued.next_run == T0 + HOUR_MS and queued.status == "pending"
    assert "1 completed" in run_due(db, pulse_settings, clock)
    assert get_export(db, e.id).next_run == T0 + HOUR_MS + 7 * DAY_MS


def test_failed_one_off_is_retried_later(db: sqlite3.Connection, pulse_settings: Settings,
                                         clock: MovableClock, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    e = create_export(db, clock, site_id=SITE, type="metrics", name="once")
    run_due(db, replace(pulse_settings, export_dir=blocker / "x"), clock)
    assert get_export(db, e.id).status == "failed"
    assert get_export(db, e.id).next_run == T0 + HOUR_MS
    clock.now = T0 + HOUR_MS
    run_due(db, pulse_settings, clock)
    done = get_export(db, e.id)
    assert done.status == "completed" and done.next_run is None


def test_validation_names_each_field(db: sqlite3.Connection, clock: MovableClock) -> None:
    with pytest.raises(ValidationError) as err:
        create_export(db, clock, site_id="nope", type="report", name=" ", format="xml",
                      filters={"report": "nosuch", "days": 0, "x": 1},
                      scheduled={"frequency": "monthly", "next_run": "soon"})
    assert set(err.value.errors) == {"site_id", "name", "format", "filters.report",
                                     "filters.days", "filters", "scheduled.frequency",
                                     "scheduled.next_run"}
    cases = [
        ({"type": "report", "filters": {"report": "funnel", "days": 3}}, "filters.steps"),
        ({"type": "report", "filters": {"report": "daily", "limit": 5}}, "filters.limit"),
        ({"type": "report", "filters": {"report": "daily", "days": 3, "from": "2026-01-01"}},
         "filters.days"),
        ({"type": "report", "filters": {"report": "daily", "from": "2026-02-01",
                                        "to": "2026-01-01"}}, "filters.from"),
        ({"type": "report", "filters": {"report": "daily", "from": "0001-01-01",
                                        "to": "9999-12-31"}}, "filters.from"),
        ({"type": "audience", "filters": {"cohort_id": "missing"}}, "filters.cohort_id"),
        ({"type": "metrics", "filters": "{not json"}, "filters"),
        ({"type": "thing"}, "type"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as err:
            create_export(db, clock, site_id=SITE, name="x", **kwargs)  # type: ignore[arg-type]
        assert field in err.value.errors, (kwargs, err.value.errors)
    assert db.execute("SELECT count(*) FROM export_jobs").fetchone()[0] == 0
    ok = create_export(db, clock, site_id=SITE, type="report", name="f",
                       filters={"report": "funnel", "days": 3, "steps": "pageview, signup"})
    assert ok.filters == {"report": "funnel", "days": 3, "steps": ["pageview", "signup"]}


def test_list_for_the_pane_and_file_names(db: sqlite3.Connection, pulse_settings: Settings,
                                          clock: MovableClock) -> None:
    e = create_export(db, clock, site_id=SITE, type="report", name="Top / URLs: ../..",
                      filters={"report": "top-urls", "days": 7},
                      scheduled={"frequency": "weekly", "next_run": T0 + DAY_MS})
    [summary] = list_exports(db)
    assert summary.last_run is None and summary.last_file is None
    assert summary.status == "pending" and summary.next_run == T0 + DAY_MS
    result = run_export(db, e.id, pulse_settings, clock)  # "run now" before the slot
    assert result.ok and result.next_run == T0 + DAY_MS  # the schedule is kept
    [summary] = list_exports(db, SITE)
    assert summary.last_run is not None and summary.last_run.status == "completed"
    assert summary.last_file == result.file_path
    name = Path(result.file_path or "").name
    assert name == "acme_report_Top-URLs_20261125T120000Z.csv"
    assert name == file_name(SITE, "report", "Top / URLs: ../..", T0, "csv")
    # same name at the same instant: a suffix, never an overwrite
    second = run_export(db, e.id, pulse_settings, clock)
    assert Path(second.file_path or "").name == "acme_report_Top-URLs_20261125T120000Z-1.csv"
    assert len(recent_runs(db, e.id, limit=1)) == 1
    assert not list(pulse_settings.export_dir.glob(".*"))  # no temp file left


def test_export_completed_webhook_is_queued(db: sqlite3.Connection, pulse_settings: Settings,
                                            clock: MovableClock) -> None:
    from pulse_tui.store.webhooks import create_endpoint

    create_endpoint(db, site_id=SITE, url="https://hooks.example.test/x",
                    events=["export.completed"], now_ms=T0)
    e = create_export(db, clock, site_id=SITE, type="metrics", name="m")
    result = run_export(db, e.id, pulse_settings, clock)
    [(event_type, payload)] = db.execute(
        "SELECT event_type, payload FROM webhook_deliveries").fetchall()
    assert event_type == "export.completed"
    data = json.loads(payload)["data"]
    assert data["export_id"] == e.id and data["file_url"] == result.file_url
    assert data["rows"] == result.rows == 30


def test_interrupted_run_is_recovered_and_rerun(db: sqlite3.Connection, db_path: Path,
                                                pulse_settings: Settings,
                                                clock: MovableClock) -> None:
    e = create_export(db, clock, site_id=SITE, type="metrics", name="m",
                      scheduled={"frequency": "daily", "next_run": T0})
    # a worker died in the middle of a run
    db.execute("INSERT INTO export_runs (export_id, started_at, status) VALUES (?, ?, "
               "'running')", (e.id, T0))
    db.execute("UPDATE export_jobs SET status = 'running' WHERE id = ?", (e.id,))
    assert run_export(db, e.id, pulse_settings, clock).error == "already running"
    fresh = connect(db_path)
    try:
        outcome = exports_job(JobContext(conn=fresh, settings=pulse_settings, clock=clock))
    finally:
        fresh.close()
    assert outcome.startswith("1 interrupted run(s) marked failed; ran 1 export(s)")
    assert [r.status for r in recent_runs(db, e.id)] == ["completed", "failed"]
    assert get_export(db, e.id).next_run == T0 + DAY_MS


def test_invalid_row_from_another_program_fails_cleanly(
        db: sqlite3.Connection, pulse_settings: Settings, clock: MovableClock) -> None:
    db.execute("INSERT INTO export_jobs (id, site_id, type, name, filters, scheduled, "
               "created_at) VALUES ('x1', ?, 'report', 'bad', '{\"report\": \"nope\"}', "
               "'{\"frequency\": \"daily\", \"next_run\": 1}', ?)", (SITE, T0))
    db.execute("INSERT INTO export_jobs (id, site_id, type, name, filters, created_at) "
               "VALUES ('x2', ?, 'metrics', 'legacy', NULL, ?)", (SITE, T0))
    outcome = run_due(db, pulse_settings, clock)
    assert "1 completed, 1 failed" in outcome
    bad = get_export(db, "x1")
    assert bad.status == "failed" and "unknown report 'nope'" in (bad.error or "")
    assert bad.next_run is not None and bad.next_run > T0
    assert get_export(db, "x2").status == "completed"
    assert run_due(db, pulse_settings, clock) == "no exports due"
