"""Events in ClickHouse (chdb here; a server when PULSE_TEST_CLICKHOUSE_URL is set): the same
numbers as SQLite value for value, duplicates never stored twice, the schema's cluster DDL
through ClickHouse's own parser, the setting and its redaction, one process per chdb dir."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulse_tui.alerts import engine
from pulse_tui.backend.clickhouse.schema import SCHEMA_VERSION
from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import DAY_MS, HOUR_MS, Clock
from pulse_tui.config import load_settings, redact_url
from pulse_tui.errors import PulseError, UsageError
from pulse_tui.ingest import import_file
from pulse_tui.models import Checkpoint, NewEvent
from pulse_tui.report_models import DateRange
from tests.backend.chdb_support import chdb_dir, fresh_chdb_url

NOW = 1_795_953_600_000 + 15 * HOUR_MS  # 2026-11-30 03:00 UTC
CLOCK = Clock(NOW)
TODAY = date(2026, 11, 29)
EVENT_COLS = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id",
              "url", "referrer", "country", "device_type")
USER_COLS = ("user_id", "site_id", "name", "email", "company", "plan", "created_at",
             "updated_at")
# text a LIKE pattern or a parameter splice would misread
URLS = ("/", "/a%b", "/a_b", "/axb", "/100%", "/it's", "/back\\slash", "/ünï", None, "")


def _events(seed: int, n: int, prefix: str = "e") -> list[tuple[object, ...]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = NOW - rng.randrange(1, 75 * DAY_MS)
        user = rng.choice((*(f"u{k}" for k in range(80)), None))
        out.append((f"{prefix}{i:05d}", rng.choice(("s1", "s2")),
                    rng.choice(("view", "click", "signup", "buy")), ts,
                    f"{user or 'anon'}-{ts // (5 * HOUR_MS)}", user, rng.choice(URLS),
                    rng.choice(("https://x.example/?q=%25", None, "")),
                    rng.choice(("US", "DE", "JP", None)), rng.choice(("desktop", "mobile", None))))
    return out


def _write(path: Path, cols: tuple[str, ...], rows: list[tuple[object, ...]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])
    return path


def _import(b: Backends, path: Path, kind: str = "events"):  # type: ignore[no-untyped-def]
    events = None if b.events.__class__.__name__ == "SqliteEvents" else b.events
    return import_file(b.events.conn, path, kind=kind, clock=CLOCK,  # type: ignore[attr-defined]
                       events=events)


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[Backends]:
    b = open_backends(tmp_path / "ch.db", fresh_chdb_url())
    yield b
    b.close()


# ---------------------------------------------------------------- both stores, value for value
CRITERIA = [
    {"type": "and", "conditions": [{"property": "url", "operator": "contains", "value": "%"}]},
    {"type": "and", "conditions": [{"property": "url", "operator": "contains", "value": "_"}]},
    {"type": "and", "conditions": [{"property": "url", "operator": "not_contains",
                                    "value": "a%b"}]},
    {"type": "or", "conditions": [
        {"property": "country", "operator": "not_equals", "value": "US"},
        {"type": "and", "conditions": [
            {"property": "event_type", "operator": "in", "value": ["buy", "signup"]},
            {"property": "device_type", "operator": "is_not_set"}]}]},
    {"type": "and", "conditions": [
        {"property": "event_count", "operator": "gte", "value": 9},
        {"property": "last_seen_days_ago", "operator": "lt", "value": 10},
        {"property": "url", "operator": "starts_with", "value": "/it'"}]},
    {"type": "and", "conditions": [{"property": "plan", "operator": "equals", "value": "pro"}]},
    {"type": "or", "conditions": [
        {"property": "company", "operator": "is_set"},
        {"property": "first_seen_days_ago", "operator": "gt", "value": 60},
        {"property": "referrer", "operator": "not_in", "value": ["https://x.example/?q=%25"]}]},
]


def _everything(b: Backends) -> dict[str, object]:
    ev = b.events
    out: dict[str, object] = {}
    ranges = [DateRange(TODAY - timedelta(days=29), TODAY),
              DateRange(TODAY - timedelta(days=89), TODAY - timedelta(days=3)),
              DateRange(TODAY, TODAY)]
    for site in ("s1", "s2"):
        for rng in ranges:
            for name in ev.report_names():
                out[f"{site} {rng} {name}"] = ev.report(
                    name, site, rng, now_ms=NOW, limit=4,
                    steps=("view", "click", "buy") if name == "funnel" else ())
            out[f"{site} {rng} totals"] = ev.range_totals(site, rng, NOW)
            out[f"{site} {rng} funnel, a step repeated"] = ev.funnel(
                site, rng, ("view", "view", "click", "view"))
        for i, crit in enumerate(CRITERIA):
            out[f"{site} criteria {i}"] = sorted(ev.cohort_evaluate(
                site, _parse(crit), NOW))
            out[f"{site} preview {i}"] = ev.cohort_preview(CLOCK, site, crit, sample=5)
        cond = {"metric": "users", "window_minutes": 180, "comparison": "change_pct_gt",
                "threshold": 10, "filter": CRITERIA[0]}
        out[f"{site} alert"] = engine.preview_value(b, site, cond, CLOCK)
        out[f"{site} backtest"] = engine.backtest(b, cond, site, CLOCK, 3)
        out[f"{site} users"] = ev.users_rows(site, ["u1", "u2", "u3", "nobody"])
        cohort = b.control.create_cohort(CLOCK, site_id=site, name="c", criteria=CRITERIA[3],
                                         cohort_id=f"c-{site}")
        out[f"{site} members"] = ev.cohort_members(cohort.cohort_id)
        live = ev.compute_retention(site, TODAY - timedelta(days=70), TODAY, NOW)
        out[f"{site} live grid"] = [(r.kind, r.key, r.size,
                                     [(c.week_number, c.returning, c.base) for c in r.cells])
                                    for r in live.rows]
        for text, etype in (("", None), ("U1", None), ("/", "click"), ("nothing-has-this", None)):
            out[f"{site} search {text!r} {etype}"] = [
                e.event_id for e in ev.search(text=text, event_type=etype, site_id=site,
                                              limit=50)]
        grid = ev.refresh_retention(site, CLOCK, TODAY - timedelta(days=70), TODAY)
        out[f"{site} grid"] = [(r.kind, r.key, r.size, [(c.week_number, c.returning, c.base)
                                                      for c in r.cells])
                               for r in grid.rows]
        out[f"{site} saved cell"] = ev.retention_cell_users(grid.cohorts[0], 1, NOW)
    out["sites"] = [s.id for s in ev.sites()]
    out["retention report"] = ev.report("retention", "s1", ranges[1], now_ms=NOW)
    return out


def _parse(raw: object):  # type: ignore[no-untyped-def]
    from pulse_tui.cohorts.criteria import parse

    return parse(raw)


def test_the_reports_are_identical_on_both_stores(tmp_path: Path, ch: Backends) -> None:
    rows = [r if i % 9 else (*r[:6], "(none)", *r[7:])  # a value that reads like the label
            for i, r in enumerate(_events(7, 3000))]  # of NULL and '': a row of its own
    events = _write(tmp_path / "events.csv", EVENT_COLS, rows)
    rng = random.Random(3)
    users = _write(tmp_path / "users.csv", USER_COLS, [
        (f"u{k}", rng.choice(("s1", "s2", None)), f"N{k}", f"u{k}@x.example",
         rng.choice(("Acme", None, "")), rng.choice(("pro", "free")), NOW - 90 * DAY_MS,
         NOW - 80 * DAY_MS) for k in range(0, 90, 2)])
    sq = open_backends(tmp_path / "sq.db", "sqlite")
    try:
        for b in (sq, ch):
            assert _import(b, events).processed == 3000
            assert _import(b, users, "users").processed == 45
        got_sqlite, got_ch = _everything(sq), _everything(ch)
    finally:
        sq.close()
    assert got_sqlite.keys() == got_ch.keys()
    for key in got_sqlite:
        assert got_ch[key] == got_sqlite[key], key
    # the data has what the comparison is about
    assert any(r[1] for r in got_sqlite["s1 criteria 0"]) and got_sqlite["s1 criteria 1"]
    assert got_sqlite["s1 search 'U1' None"] and got_sqlite["s1 search '/' click"]
    assert any(row[2] for row in got_sqlite["s1 live grid"])


def test_contains_takes_percent_and_underscore_literally(tmp_path: Path, ch: Backends) -> None:
    rows = [("p1", "s1", "view", NOW - 1000, "a", "u-pct", "/a%b", None, None, None),
            ("p2", "s1", "view", NOW - 1000, "b", "u-und", "/a_b", None, None, None),
            ("p3", "s1", "view", NOW - 1000, "c", "u-x", "/axb", None, None, None)]
    _import(ch, _write(tmp_path / "e.csv", EVENT_COLS, rows))

    def users(op: str, value: str) -> set[str]:
        crit = {"type": "and", "conditions": [{"property": "url", "operator": op,
                                               "value": value}]}
        return {u for u, _, _ in ch.events.cohort_evaluate("s1", _parse(crit), NOW)}

    assert users("contains", "a%b") == {"u-pct"}
    assert users("contains", "%") == {"u-pct"}
    assert users("contains", "_") == {"u-und"}
    assert users("not_contains", "_") == {"u-pct", "u-x"}
    assert users("starts_with", "/a_") == {"u-und"}


# ---------------------------------------------------------------- duplicates
def test_a_duplicate_event_id_across_two_files_is_stored_once(tmp_path: Path,
                                                              ch: Backends) -> None:
    first = _events(1, 500)
    second = first[250:] + _events(2, 100, prefix="f")  # 250 already stored, 100 new
    r1 = _import(ch, _write(tmp_path / "a.csv", EVENT_COLS, first))
    r2 = _import(ch, _write(tmp_path / "b.csv", EVENT_COLS, second))
    assert (r1.processed, r1.duplicates) == (500, 0)
    assert (r2.processed, r2.duplicates) == (100, 250)
    assert len(ch.events.tail(limit=10_000).events) == 600
    # every count exact at once: no FINAL, no merge, no OPTIMIZE
    whole = DateRange(TODAY - timedelta(days=80), TODAY)
    assert sum(ch.events.range_totals(s, whole, NOW).current.events for s in ("s1", "s2")) == 600


def test_a_retried_batch_counts_its_own_rows_once(ch: Backends) -> None:
    ch.control.create_import_job(job_id="j", kind="events", site_id="s1", file_name="x.csv",
                                 file_size=1, source_path=None, now_ms=NOW)
    rows = [(*r, NOW) for r in _events(4, 40)]
    cp = Checkpoint(40, 999, 41)
    ch.events.store_rows(rows[:25], job="j", line=41)  # type: ignore[attr-defined]
    # ... the process died here: rows stored, checkpoint not moved; the worker retries
    outcome = ch.events.write_import_batch("events", "j", rows, [], cp, NOW)
    assert (outcome.processed, outcome.duplicates) == (40, 0)
    job = ch.control.get_import_job("j")
    assert job is not None and (job.processed_records, job.duplicate_records) == (40, 0)
    assert len(ch.events.tail(limit=1000).events) == 40
    # the same ids in a later batch of the same job are duplicates, not "ours"
    again = ch.events.write_import_batch("events", "j", rows[:5], [], Checkpoint(5, 2000, 46),
                                         NOW)
    assert (again.processed, again.duplicates) == (0, 5)


# ---------------------------------------------------------------- the rollups
def _numbers(b: Backends) -> dict[str, object]:
    """What the rollups answer (reports, totals) and what user_days answers (retention)."""
    ev = b.events
    out: dict[str, object] = {}
    for site in ("s1", "s2"):
        for rng in (DateRange(TODAY - timedelta(days=89), TODAY),
                    DateRange(TODAY - timedelta(days=40), TODAY - timedelta(days=20))):
            for name in ("daily", "breakdown", "top-urls", "top-countries", "top-referrers"):
                out[f"{site} {rng} {name}"] = ev.report(name, site, rng, now_ms=NOW, limit=3)
            out[f"{site} {rng} totals"] = ev.range_totals(site, rng, NOW)
        grid = ev.compute_retention(site, TODAY - timedelta(days=80), TODAY, NOW)
        out[f"{site} grid"] = [(r.key, r.size, [(c.week_number, c.returning, c.base)
                                                for c in r.cells]) for r in grid.rows]
    return out


def test_the_rollups_stay_exact_after_cleanup_and_rebuild(tmp_path: Path, ch: Backends,
                                                          pulse_settings) -> None:  # type: ignore[no-untyped-def]
    # SPEC 9: cleanup deletes old events, the rollups outlive them (rollup_retention_days),
    # first-seen times never move; rebuild-rollups keeps the history of deleted days. The
    # ClickHouse rollups answer what a SQLite file with the same events and the same cleanup
    # answers, after the cleanup and after a rebuild of both
    rows = _events(8, 1500)
    events = _write(tmp_path / "all.csv", EVENT_COLS, rows)
    settings = replace(pulse_settings, events_retention_days=30)
    sq = open_backends(tmp_path / "sq.db", "sqlite")
    try:
        _import(sq, events)
        _import(ch, events)
        before = _numbers(ch)
        assert before == _numbers(sq)
        assert sq.events.cleanup(settings, CLOCK).events == ch.events.cleanup(settings,
                                                                             CLOCK).events > 0
        want = _numbers(sq)
        assert _numbers(ch) == want
        # the deleted days still count: the 90-day reports did not change
        assert {k: v for k, v in want.items() if "totals" not in k and "grid" not in k} == {
            k: v for k, v in before.items() if "totals" not in k and "grid" not in k}
        sq.events.rebuild(NOW)
        ch.events.rebuild(NOW)
        assert _numbers(sq) == want  # SQLite's rebuild keeps the history too
        assert _numbers(ch) == want
    finally:
        sq.close()


def test_rollups_past_rollup_retention_go_as_on_sqlite(tmp_path: Path, ch: Backends,
                                                       pulse_settings) -> None:  # type: ignore[no-untyped-def]
    # events kept 30 days, rollups 60: the days 30-60 back still count, older ones do not
    rows = _events(10, 1500)
    events = _write(tmp_path / "all.csv", EVENT_COLS, rows)
    settings = replace(pulse_settings, events_retention_days=30, rollup_retention_days=60)
    sq = open_backends(tmp_path / "sq.db", "sqlite")
    try:
        _import(sq, events)
        _import(ch, events)
        before = _numbers(ch)
        assert sq.events.cleanup(settings, CLOCK).rollup_rows > 0
        assert ch.events.cleanup(settings, CLOCK).rollup_rows > 0
        want = _numbers(sq)
        assert want != before
        got = _numbers(ch)
        # day by day and the retention grids: the same; ranges starting before the border
        # (NOW - 60 days): the same event counts (SQLite keeps distinct counts exact only for
        # ranges starting on or after it, store.derived.prune_rollups; ClickHouse's stay exact)
        border = (NOW - 60 * DAY_MS) // DAY_MS
        for key, value in want.items():
            if key.endswith(("daily", "grid")):
                assert got[key] == value, key
            elif key.endswith("totals"):
                for part in ("current", "previous"):
                    g, w = getattr(got[key], part), getattr(value, part)
                    if w.range.first_day >= border:
                        assert g == w, key
                    assert g.events == w.events, key
            else:
                assert [r[:2] for r in got[key]] == [r[:2] for r in value], key  # type: ignore[attr-defined]
    finally:
        sq.close()


def test_a_version_1_store_gets_its_rollups_from_the_events(tmp_path: Path) -> None:
    from pulse_tui.backend.clickhouse.schema import ROLLUP_VIEWS, ROLLUPS, SCHEMA_VERSION

    url = fresh_chdb_url()
    b = open_backends(tmp_path / "ch.db", url)
    _import(b, _write(tmp_path / "events.csv", EVENT_COLS, _events(9, 800)))
    want = _numbers(b)
    conn = b.events.ch  # type: ignore[attr-defined]
    db = f"`{conn.database}`"
    for view in ROLLUP_VIEWS:  # what a version-1 store had: no rollups, no ingest_seq index
        conn.command(f"DROP VIEW {db}.`{view}`")
    for name in ROLLUPS:
        conn.command(f"DROP TABLE {db}.`{name}`")
    for name in ("user_first_seen", "cleaned_user_days"):  # nor what cleanup keeps
        conn.command(f"DROP TABLE {db}.`{name}`")
    conn.command(f"ALTER TABLE {db}.events DROP INDEX idx_ingest_seq")
    for col in ("url", "referrer"):  # and plain strings
        conn.command(f"ALTER TABLE {db}.events MODIFY COLUMN {col} Nullable(String) "
                     "SETTINGS mutations_sync = 2")
    conn.command(f"ALTER TABLE {db}.pulse_meta DELETE WHERE key = 'schema_version' "
                 "SETTINGS mutations_sync = 2")
    conn.command(f"INSERT INTO {db}.pulse_meta VALUES ('schema_version', '1', 1)")
    b.close()
    assert SCHEMA_VERSION == 4
    b = open_backends(tmp_path / "ch.db", url)
    try:
        assert _numbers(b) == want
        assert conn.rows("SELECT name FROM system.tables WHERE database = {db:String} AND name "
                         "IN ('user_first_seen', 'cleaned_user_days') ORDER BY name",
                         {"db": conn.database}) == [("cleaned_user_days",), ("user_first_seen",)]
        assert conn.rows("SELECT name FROM system.data_skipping_indices WHERE database = "
                         "{db:String} AND table = 'events' AND name = 'idx_ingest_seq'",
                         {"db": conn.database}) == [("idx_ingest_seq",)]
        assert conn.rows("SELECT name, type FROM system.columns WHERE database = {db:String} "
                         "AND table = 'events' AND name IN ('url', 'referrer') ORDER BY name",
                         {"db": conn.database}) == [
            ("referrer", "LowCardinality(Nullable(String))"),
            ("url", "LowCardinality(Nullable(String))")]
        _import(b, _write(tmp_path / "more.csv", EVENT_COLS, _events(10, 50, prefix="m")))
        assert _numbers(b) != want  # and the views keep them current from now on
    finally:
        b.close()


LATE = (NOW // DAY_MS - 1) * DAY_MS + 23 * HOUR_MS + 30 * 60_000  # 2026-11-29 23:30 UTC:
# 2026-11-30 08:30 in Tokyo


def _late_events(prefix: str) -> list[tuple[object, ...]]:
    """Events in the last and first hour of UTC days (another day in a UTC+9 session)."""
    rows = _events(21, 400, prefix)
    return [(*r[:3], LATE - k * DAY_MS + (i % 3) * 40 * 60_000, *r[4:])
            for i, r in enumerate(rows) for k in (i % 5,)]


@contextmanager
def _session_time_zone(b: Backends, zone: str) -> Iterator[Any]:
    """The embedded engine's session in another time zone (chdb: one session per process)."""
    conn = b.events.ch  # type: ignore[attr-defined]
    if conn.__class__.__name__ != "ChdbConn":
        pytest.skip("a chdb session's time zone (a server's is set on the server)")
    conn.command(f"SET session_timezone = '{zone}'")
    try:
        assert conn.rows("SELECT timezone()") == [(zone,)]
        yield conn
    finally:
        conn.command("SET session_timezone = DEFAULT")


def _sqlite_numbers(tmp_path: Path, path: Path) -> dict[str, object]:
    """``_numbers`` of the file ``path`` imported into a fresh SQLite file (what chdb must show)."""
    sq = open_backends(tmp_path / "sq.db", "sqlite")
    try:
        _import(sq, path)
        return _numbers(sq)
    finally:
        sq.close()


def _day_of(conn: Any, b: Backends, event_id: str) -> str:
    return conn.rows(f"SELECT toString(day) FROM {b.events.t('events')} "  # type: ignore[attr-defined]
                     "WHERE event_id = {id:String}", {"id": event_id})[0][0]


def test_days_are_utc_whatever_the_session_time_zone(tmp_path: Path, ch: Backends) -> None:
    # SPEC: days are UTC. An event at 23:30 UTC belongs to that UTC day in every report, also
    # when the ClickHouse session's time zone is UTC+9 (where it is the next morning)
    rows = _late_events("z")
    path = _write(tmp_path / "late.csv", EVENT_COLS, rows)
    want = _sqlite_numbers(tmp_path, path)
    with _session_time_zone(ch, "Asia/Tokyo") as conn:
        _import(ch, path)  # the fast path: INSERT ... SELECT
        ch.events.insert_events([NewEvent("late", "s1", "view", LATE, "x", "u1", None,  # type: ignore[attr-defined]
                                          None, None, None)], NOW)  # an Arrow insert
        assert _day_of(conn, ch, "z00000") == _day_of(conn, ch, "late") == "2026-11-29"
        day = DateRange(TODAY, TODAY)
        got_late = ch.events.daily("s1", day)[0].events
        assert ch.events.window_metric("s1", "events", LATE - 1, LATE + 1) == 1 + sum(
            1 for r in rows if r[1] == "s1" and r[3] == LATE)
        conn.command(f"ALTER TABLE {ch.events.t('events')} DELETE WHERE event_id = 'late' "  # type: ignore[attr-defined]
                     "SETTINGS mutations_sync = 2")
        ch.events.rebuild(NOW)
        got = _numbers(ch)
    assert got_late == 1 + sum(1 for r in rows if r[1] == "s1"
                               and r[3] // DAY_MS == LATE // DAY_MS)
    assert got == want


def test_a_version_3_store_gets_utc_days_and_loses_the_id_index(tmp_path: Path) -> None:
    from pulse_tui.backend.clickhouse import schema

    url = fresh_chdb_url()
    rows = _late_events("y")
    path = _write(tmp_path / "late.csv", EVENT_COLS, rows)
    want = _sqlite_numbers(tmp_path, path)
    b = open_backends(tmp_path / "ch.db", url)
    try:
        with _session_time_zone(b, "Asia/Tokyo") as conn:
            db = f"`{conn.database}`"
            old_day = "toDate(intDiv(timestamp_ms, 1000))"  # what version 3 had
            conn.command(f"ALTER TABLE {db}.events MODIFY COLUMN day Date MATERIALIZED {old_day}")
            conn.command(f"ALTER TABLE {db}.events ADD INDEX idx_event_id event_id "
                         "TYPE bloom_filter(0.001) GRANULARITY 1")
            for view in schema.ROLLUP_VIEWS:  # version 3's views: one of events_dims
                conn.command(f"DROP VIEW {db}.`{view}`")
            for name in ("events_daily", "events_dims", "user_days"):
                conn.command(f"CREATE MATERIALIZED VIEW {db}.`{name}_mv` TO {db}.`{name}` AS "
                             + schema.ROLLUPS[name].replace(schema.DAY, old_day)
                             .format(src=f"{db}.`events`"))
            b.events.meta_set("schema_version", "3")  # type: ignore[attr-defined]
            _import(b, path)  # stored by version 3 in Tokyo: the next day
            assert _day_of(conn, b, "y00000") == "2026-11-30"
            assert _numbers(b) != want
            b.close()
            b = open_backends(tmp_path / "ch.db", url)
            assert b.events.meta_get("schema_version") == "4"  # type: ignore[attr-defined]
            assert _day_of(conn, b, "y00000") == "2026-11-29"
            assert conn.rows("SELECT name FROM system.data_skipping_indices WHERE database = "
                             "{db:String} AND table = 'events'", {"db": conn.database}) == [
                ("idx_ingest_seq",)]
            t = b.events.t  # type: ignore[attr-defined]
            # the copy stored nothing twice: ids, sessions and the rollups as before
            assert conn.rows(f"SELECT count(), uniqExact(event_id) FROM {t('events')}") == [
                (400, 400)]
            assert conn.rows(f"SELECT count() FROM {t('event_ids')}") == [(400,)]
            assert conn.rows(f"SELECT sum(event_count) FROM {t('sessions')}") == [(400,)]
            assert conn.rows("SELECT count() FROM system.tables WHERE database = {db:String} "
                             "AND name LIKE '%copy%'", {"db": conn.database}) == [(0,)]
            got = _numbers(b)
            more = _write(tmp_path / "more.csv", EVENT_COLS, [
                (*r[:3], LATE + 5 * 60_000, *r[4:]) for r in _events(22, 5, "w")])
            _import(b, more)  # and the views of version 4 store UTC days from now on
            assert _day_of(conn, b, "w00000") == "2026-11-29"
    finally:
        b.close()
    assert got == want


def test_a_current_version_store_missing_a_table_gets_it_on_open(tmp_path: Path) -> None:
    url = fresh_chdb_url()
    b = open_backends(tmp_path / "ch.db", url)
    conn = b.events.ch  # type: ignore[attr-defined]
    conn.command(f"DROP TABLE `{conn.database}`.`user_first_seen`")  # a development build's store
    b.close()
    b = open_backends(tmp_path / "ch.db", url)
    try:
        assert conn.rows("SELECT count() FROM system.tables WHERE database = {db:String} AND "
                         "name = 'user_first_seen'", {"db": conn.database}) == [(1,)]
        clock = Clock(NOW)
        crit = {"type": "and", "conditions": [
            {"property": "url", "operator": "contains", "value": "/"}]}
        assert b.events.cohort_preview(clock, "s1", crit) is not None  # reads user_first_seen
    finally:
        b.close()


def test_the_id_lookup_reads_only_the_granules_that_may_hold_the_ids(ch: Backends) -> None:
    ev = ch.events
    conn = ev.ch  # type: ignore[attr-defined]
    for part in range(4):  # 4 parts of 20,000 ids, small granules: the index has work to do
        conn.command(f"INSERT INTO {ev.t('events')} (event_id, site_id, event_type, "  # type: ignore[attr-defined]
                     "timestamp_ms, session_id, created_at) SELECT concat('id', "
                     f"leftPad(toString(number + {part * 20_000}), 8, '0')), 's1', 'view', "
                     f"{NOW}, 'x', {NOW} FROM numbers(20000)")
    assert conn.rows(f"SELECT count() FROM {ev.t('event_ids')}")[0][0] == 80_000  # type: ignore[attr-defined]
    sql = ev.id_lookup("SELECT arrayJoin({ids:Array(String)})")  # type: ignore[attr-defined]
    params = {"ids": ["id00000007", "id00041234", "nope"]}
    assert sorted(r[0] for r in conn.rows(sql, params)) == ["id00000007", "id00041234"]
    plan = "\n".join(r[0] for r in conn.rows(f"EXPLAIN indexes = 1 {sql}", params))
    granules = [tuple(map(int, g.split("/"))) for g in
                __import__("re").findall(r"Granules: (\d+/\d+)", plan)]
    assert "PrimaryKey" in plan and granules, plan
    picked, total = granules[-1]
    assert total >= 8 and picked <= 2, plan  # at most one granule per id, never the table


def test_a_query_failing_mid_stream_leaves_nothing_in_the_next_result(tmp_path: Path,
                                                                       ch: Backends) -> None:
    import gzip

    conn = ch.events.ch  # type: ignore[attr-defined]
    if conn.__class__.__name__ != "ChdbConn":
        pytest.skip("chdb only")
    data = gzip.compress(b"a\n" * 200_000)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match="(?i)inflate|gzip|zlib"):
        conn.rows(f"SELECT count() FROM file('{cut}', 'LineAsString', 'line String', 'gzip')")
    assert conn.rows("SELECT 42") == [(42,)]  # chdb had the failed query's header in front


def test_an_old_store_gets_event_ids_on_open(tmp_path: Path) -> None:
    url = fresh_chdb_url()
    b = open_backends(tmp_path / "a.db", url)
    rows = _events(11, 300)
    _import(b, _write(tmp_path / "a.csv", EVENT_COLS, rows))
    conn = b.events.ch  # type: ignore[attr-defined]
    t = b.events.t  # type: ignore[attr-defined]
    # back to schema 1: no event_ids, no view
    conn.command(f"DROP VIEW {t('event_ids_mv')}")
    conn.command(f"DROP TABLE {t('event_ids')}")
    b.events.meta_set("schema_version", "1")  # type: ignore[attr-defined]
    b.close()
    b = open_backends(tmp_path / "a.db", url)
    try:
        conn = b.events.ch  # type: ignore[attr-defined]
        assert conn.rows(f"SELECT count() FROM {t('event_ids')}")[0][0] == 300
        assert b.events.meta_get("schema_version") == str(SCHEMA_VERSION)  # type: ignore[attr-defined]
        r = _import(b, _write(tmp_path / "b.csv", EVENT_COLS, rows[:100] + _events(12, 5, "z")))
        assert (r.processed, r.duplicates) == (5, 100)
    finally:
        b.close()


# ---------------------------------------------------------------- cleanup and the live pane
def test_cleanup_deletes_exactly_the_old_events(tmp_path: Path, ch: Backends,
                                                pulse_settings) -> None:  # type: ignore[no-untyped-def]
    rows = _events(5, 400)
    _import(ch, _write(tmp_path / "e.csv", EVENT_COLS, rows))
    settings = replace(pulse_settings, events_retention_days=30)
    result = ch.events.cleanup(settings, CLOCK)
    cutoff = NOW - 30 * DAY_MS
    old = [r for r in rows if int(r[3]) < cutoff]  # type: ignore[call-overload]
    assert result.events == len(old) > 0
    left = {e.event_id for e in ch.events.tail(limit=10_000).events}
    assert left == {r[0] for r in rows if int(r[3]) >= cutoff}  # type: ignore[call-overload]
    assert result.sessions_deleted > 0
    # the sessions table follows: what the view would compute from the events left
    conn, db = ch.events.ch, ch.events.db  # type: ignore[attr-defined]
    assert conn.rows(f"SELECT session_id, min(first_event_at), max(last_event_at), "
                     f"sum(event_count) FROM {db}.sessions GROUP BY session_id ORDER BY 1") == \
        conn.rows(f"SELECT session_id, min(timestamp_ms), max(timestamp_ms), count() "
                  f"FROM {db}.events GROUP BY session_id ORDER BY 1")
    assert ch.events.cleanup(settings, CLOCK).events == 0
    # a deleted event's id may be imported again (as on SQLite); a kept one is a duplicate
    again = _import(ch, _write(tmp_path / "again.csv", EVENT_COLS, old[:3] + rows[-2:]))
    assert (again.processed, again.duplicates) == (3, 2)


def test_a_foreign_insert_moves_the_change_token_and_shows_in_the_tail(ch: Backends) -> None:
    first = ch.events.tail(limit=10)
    token = ch.events.change_token()
    assert ch.events.change_token() == token
    conn = ch.events.ch  # type: ignore[attr-defined]
    conn.command(f"INSERT INTO `{conn.database}`.events (event_id, site_id, event_type, "
                 "timestamp_ms, session_id, created_at) VALUES ('x1', 's9', 'view', "
                 f"{NOW}, 'sx', {NOW})")
    assert ch.events.change_token() != token
    page = ch.events.tail(after=first.cursor)
    assert [e.event_id for e in page.events] == ["x1"]
    assert "s9" in [s.id for s in ch.events.sites()]
    # its rollup days pruned (rollup_retention_days below events_retention_days): the events
    # older than the oldest rollup day still list the site
    conn.command(f"TRUNCATE TABLE `{conn.database}`.events_daily")
    assert "s9" in [s.id for s in ch.events.sites()]


def test_a_foreign_insert_makes_the_cohort_job_recompute_membership(
        ch: Backends, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from pulse_tui.cohorts import jobs
    from pulse_tui.store import cohorts as cohort_store
    from pulse_tui.store.events import ensure_sites

    monkeypatch.setattr(cohort_store, "FULL_REFRESH_MIN_INTERVAL_S", 0)  # no throttle here
    ctx = SimpleNamespace(backends=ch, clock=CLOCK)  # what the job body reads
    conn = ch.events.ch  # type: ignore[attr-defined]

    def insert(event_id: str, user: str) -> None:
        conn.command(f"INSERT INTO `{conn.database}`.events (event_id, site_id, event_type, "
                     "timestamp_ms, session_id, user_id, created_at) VALUES "
                     f"('{event_id}', 's1', 'buy', {NOW - HOUR_MS}, 'sx', '{user}', {NOW})")

    insert("x1", "buyer1")
    ensure_sites(ch.events.conn, ["s1"], NOW)  # type: ignore[attr-defined]
    cohort = ch.control.create_cohort(CLOCK, site_id="s1", name="buyers", criteria={
        "type": "and", "conditions": [{"property": "event_type", "operator": "equals",
                                       "value": "buy"}]})

    def members() -> set[str]:
        return {m.user_id for m in ch.events.cohort_members(cohort.cohort_id)}

    assert members() == {"buyer1"}
    jobs.refresh_changed(ctx)  # the data mark is now current
    assert jobs.refresh_changed(ctx) == "no cohort changed"  # nothing moved: nothing recomputed
    insert("x2", "buyer2")  # another program, straight into ClickHouse
    assert "refreshed 1 cohort(s), 1 changed" in jobs.refresh_changed(ctx)
    assert members() == {"buyer1", "buyer2"}
    assert jobs.refresh_changed(ctx) == "no cohort changed"


# ---------------------------------------------------------------- schema
def test_the_cluster_ddl_is_valid_clickhouse(ch: Backends) -> None:
    from pulse_tui.backend.clickhouse.schema import ddl

    statements = ddl("pulse", "prod_cluster")
    assert any("Distributed(`prod_cluster`" in s for s in statements)
    assert all("ON CLUSTER `prod_cluster`" in s for s in statements)
    assert sum("ReplicatedReplacingMergeTree" in s for s in statements) == 4
    assert any("`event_ids_local`" in s and "ReplicatedMergeTree(" in s for s in statements)
    assert any("`event_ids_mv`" in s and "TO `pulse`.`event_ids_local`" in s for s in statements)
    conn = ch.events.ch  # type: ignore[attr-defined]
    for stmt in statements:  # ClickHouse's own parser (raises on a syntax error)
        formatted = conn.rows("SELECT formatQuery({q:String})", {"q": stmt})[0][0]
        assert formatted.startswith("CREATE")
    with pytest.raises(Exception, match="(?i)syntax"):
        conn.rows("SELECT formatQuery({q:String})", {"q": statements[1] + " ORDER BY ("})


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pulse_tui", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_clickhouse_schema_command_prints_the_ddl() -> None:
    done = _run("clickhouse-schema", "--cluster", "c1")
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE IF NOT EXISTS `pulse`.`events_local` ON CLUSTER `c1`" in done.stdout
    assert "ENGINE = Distributed(`c1`, `pulse`, `events_local`" in done.stdout
    bad = _run("clickhouse-schema", "--cluster", "bad name;")
    assert bad.returncode == 2 and "not a plain ClickHouse name" in bad.stderr


# ---------------------------------------------------------------- the setting
SECRET = "s3cr3t-pw"


def test_events_store_from_toml_env_and_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('events_store = "chdb:///var/pulse/ch"\nclickhouse_cluster = "c1"\n')
    s = load_settings(config_file=cfg, environ={})
    assert (s.events_store, s.clickhouse_cluster) == ("chdb:///var/pulse/ch", "c1")
    s = load_settings(config_file=cfg, environ={"PULSE_EVENTS_STORE": "sqlite"})
    assert s.events_store == "sqlite"
    s = load_settings(config_file=cfg, environ={"PULSE_EVENTS_STORE": "sqlite"},
                      events_store=f"clickhouses://u:{SECRET}@db.example:8443/pulse")
    assert s.events_store.startswith("clickhouses://") and s.sources["events_store"] == "flag"
    assert SECRET not in str(s.describe())
    for bad in ("mysql://x", "chdb://relative", f"clickhouse://u:{SECRET}@:80/x", "nonsense"):
        with pytest.raises(UsageError) as info:
            load_settings(environ={"PULSE_EVENTS_STORE": bad})
        assert SECRET not in str(info.value) and "PULSE_EVENTS_STORE" in str(info.value)


def test_passwords_never_show(tmp_path: Path) -> None:
    url = f"clickhouse://admin:{SECRET}@127.0.0.1:9/pulse"
    assert redact_url(url) == "clickhouse://admin:***@127.0.0.1:9/pulse"
    env = {"PULSE_EVENTS_STORE": url, "PULSE_DB": str(tmp_path / "p.db")}
    helped = _run("--help", env=env)
    assert helped.returncode == 0 and "admin:***@127.0.0.1" in helped.stdout
    failed = _run("report", "daily", env=env)  # nothing listens on port 9
    assert failed.returncode == 1
    assert "cannot connect to the events store clickhouse://admin:***@127.0.0.1:9" in failed.stderr
    for text in (helped.stdout, helped.stderr, failed.stdout, failed.stderr):
        assert SECRET not in text


def test_a_missing_extra_is_said_in_our_words(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_clickhouse(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith(("clickhouse_connect", "chdb")):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_clickhouse)
    with pytest.raises(PulseError, match=r"pip install 'pulse-tui\[clickhouse\]'") as info:
        open_backends(tmp_path / "p.db", f"clickhouse://u:{SECRET}@h:8123/d")
    assert SECRET not in str(info.value)


# ---------------------------------------------------------------- processes
def _pulse(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pulse_tui", *args],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_second_process_on_a_chdb_dir_exits_1_naming_the_holder(tmp_path: Path) -> None:
    chdb_dir()  # skip without chdb
    store = f"chdb://{tmp_path / 'ch'}"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pulse_tui.backend.wiring import open_backends; "
         f"b = open_backends({str(tmp_path / 'a.db')!r}, {store!r}); "
         "print('open', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        second = _pulse("report", "daily", "--db", str(tmp_path / "a.db"), "--events-store",
                        store)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1
        assert f"process {holder.pid}" in err and "ClickHouse server" in err
        assert "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()


def test_copy_events_interrupted_and_resumed(tmp_path: Path) -> None:
    chdb_dir()
    db = tmp_path / "p.db"
    sq = open_backends(db, "sqlite")
    rows = _events(9, 3000)
    _import(sq, _write(tmp_path / "e.csv", EVENT_COLS, rows))
    sq.close()
    store = f"chdb://{tmp_path / 'ch'}"
    at = {"PULSE_DB": str(db), "PULSE_NOW": "2026-11-29T15:00:00Z"}
    span = ("--site", "s1", "--from", "2026-09-01", "--to", "2026-11-29", "--format", "json")
    before = {}  # the file's own reports, before its events move (then it refuses SQLite)
    for name in ("daily", "top-urls", "breakdown"):
        done = _run("report", name, *span, env=at)
        assert done.returncode == 0, done.stderr
        before[name] = done.stdout
    env = {"PULSE_COPY_CHUNK_ROWS": "100", "PULSE_DB": str(db)}
    first = _pulse("copy-events", "--to", store, env=env)
    assert first.stderr is not None
    while True:  # progress lines: "copied up to row N: ..."; stop it once past row 500
        line = first.stderr.readline()
        assert line, "copy-events ended before it could be interrupted"
        if line.startswith("copied up to row ") and int(line.split()[4].rstrip(":")) >= 500:
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = _pulse("copy-events", "--to", store, env=env)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "resuming after row" in err
    assert "events (" in out and "were already there" in out
    copied = int(out.split("copied ")[1].split(" events")[0])
    assert 0 < copied < 3000
    # the same numbers from either store
    for name in ("daily", "top-urls", "breakdown"):
        after = _run("report", name, *span, "--events-store", store, env=at)
        assert after.returncode == 0, after.stderr
        assert after.stdout == before[name] and len(before[name]) > 50
    # the file now says where its events live: SQLite is refused in words, not shown empty
    refused = _run("report", "daily", *span, env=at)
    assert refused.returncode == 1 and "--events-store chdb://" in refused.stderr


# ---------------------------------------------------------------- user_days: exact windows
WEEK = 7 * DAY_MS
_members = st.lists(st.tuples(st.sampled_from(("c1", "c2")), st.integers(0, 3),
                              st.integers(0, 30 * DAY_MS)), min_size=1, max_size=4,
                    unique_by=lambda m: (m[0], m[1]))


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=_members, weeks=st.integers(1, 6), data=st.data())
def test_saved_retention_from_user_days_matches_a_plain_reference(
        ch: Backends, members: list[tuple[str, int, int]], weeks: int, data: st.DataObject
) -> None:
    # windows start at any millisecond, so they cut UTC days: the per-day first/last times of
    # user_days must decide every window exactly as the events themselves would. Events fall
    # anywhere, or within a day of a window's edge (both sides of it on one day)
    near = st.builds(lambda m, k, d: (m[1], m[2] + k * WEEK + d), st.sampled_from(members),
                     st.integers(0, 6), st.integers(-3 * HOUR_MS, 3 * HOUR_MS))
    anywhere = st.tuples(st.integers(0, 3), st.integers(0, 45 * DAY_MS))
    evs = [(u, site, off) for (u, off), site in data.draw(st.lists(
        st.tuples(st.one_of(near, near, anywhere), st.sampled_from(("s1", "s1", "s2"))),
        min_size=1, max_size=40))]
    base = NOW - 50 * DAY_MS
    conn = ch.events.ch  # type: ignore[attr-defined]
    for table in ("events", "event_ids", "user_days", "events_daily", "events_dims", "sessions"):
        conn.command(f"TRUNCATE TABLE `{conn.database}`.`{table}`")
    ch.events.insert_events([  # type: ignore[attr-defined]
        NewEvent(f"h{i}", site, "view", base + off, f"s{i}", f"u{u}")
        for i, (u, site, off) in enumerate(evs)], NOW)
    rows = [(cid, f"u{u}", base + off) for cid, u, off in members]
    got = {r for r in ch.events.saved_retention("s1", rows, NOW, weeks)  # type: ignore[attr-defined]
           if r[0] == "r"}
    want: dict[tuple[str, int], int] = {}
    for cid, uid, j in rows:
        for k in range(weeks):
            if j + (k + 1) * WEEK > NOW:
                continue
            if any(f"u{u}" == uid and site == "s1" and j + k * WEEK <= base + off < j + (k + 1) * WEEK
                   for u, site, off in evs):
                want[(cid, k)] = want.get((cid, k), 0) + 1
    assert got == {("r", cid, k, n) for (cid, k), n in want.items()}


# ---------------------------------------------------------------- the worker's job bodies
def test_the_worker_jobs_read_the_events_where_they_live(tmp_path: Path, ch: Backends,
                                                         pulse_settings) -> None:  # type: ignore[no-untyped-def]
    """Each periodic job, run as the worker runs it (its own connection to the PULSE file,
    ``JobContext.shared`` = the worker's backends), gives on ClickHouse what it gives on
    SQLite: membership, alert states, export files, retention snapshots, cleanup counts."""
    from pulse_tui.exports import definitions as export_defs
    from pulse_tui.models import NewEvent
    from pulse_tui.simulate import write_batch
    from pulse_tui.store import alerts as alert_store
    from pulse_tui.store import cohorts as cohort_store
    from pulse_tui.store.connection import connect
    from pulse_tui.worker.jobs import JOBS
    from pulse_tui.worker.scheduler import JobContext, resolve

    events = _write(tmp_path / "events.csv", EVENT_COLS, _events(11, 1500))
    live = [NewEvent(f"live{i}", "s1", "view", NOW - i * 60_000, f"ls{i % 3}", f"u{i % 5}",
                     "/", None, "US", "desktop") for i in range(30)]
    sq = open_backends(tmp_path / "sq.db", "sqlite")
    outcomes: dict[str, dict[str, object]] = {}
    try:
        for name, b, shared in (("sqlite", sq, None), ("chdb", ch, ch)):
            assert _import(b, events).processed == 1500
            assert write_batch(b, live, NOW) == 30  # the simulator, through the backends
            conn = b.conn
            # another program's cohort (no fingerprint: the cohorts job computes it)
            cohort_store.create_cohort(conn, CLOCK, site_id="s1", name="de",
                                       criteria=CRITERIA[3], cohort_id="c1", refresh=False)
            alert_store.create_rule(conn, site_id="s1", name="busy", now_ms=NOW,
                                    notification_type="log", notification_config={},
                                    condition={"metric": "users", "window_minutes": 60,
                                               "comparison": "gt", "threshold": 2})
            settings = replace(pulse_settings, db=tmp_path / f"{name}.db",
                               export_dir=tmp_path / f"exports-{name}",
                               events_retention_days=40)
            export_defs.create_export(b, CLOCK, site_id="s1", type="audience", name="de",
                                      filters={"cohort_id": "c1"}, export_id="x1")
            job_conn = connect(tmp_path / ("sq.db" if shared is None else "ch.db"))
            try:
                ctx = JobContext(conn=job_conn, settings=settings, clock=CLOCK, shared=shared)
                got = {job.name: resolve(job.fn)(ctx) for job in JOBS}
            finally:
                job_conn.close()
            got["members"] = sorted(m.user_id for m in b.events.cohort_members("c1"))
            got["rule"] = [(r.state, r.last_value) for r in b.control.list_rules("s1")]
            got["export"] = [p.read_text() for p in sorted(settings.export_dir.iterdir())]
            got["tail"] = len(b.events.tail(site_id="s1", limit=10_000).events)
            outcomes[name] = got
    finally:
        sq.close()
    assert outcomes["sqlite"]["members"] and outcomes["sqlite"]["rule"][0][0] == "firing"
    assert "1 completed" in str(outcomes["sqlite"]["exports"])
    for key, want in outcomes["sqlite"].items():
        if key == "derived-catch-up":
            continue  # SQLite folds the simulated rows; ClickHouse keeps nothing to fold
        if key == "cleanup":  # ClickHouse keeps no sessions table to prune: the events count
            assert str(outcomes["chdb"][key]).split(",")[0] == str(want).split(",")[0]
            assert str(want).startswith("deleted ") and not str(want).startswith("deleted 0 ")
            continue
        assert outcomes["chdb"][key] == want, key


def test_simulate_and_rebuild_write_the_events_where_they_live(tmp_path: Path) -> None:
    """``simulate`` and ``rebuild-rollups`` on a ClickHouse events store reach it through the
    backends (the SQLite file keeps no events)."""
    import sqlite3

    chdb_dir()  # skip without chdb
    db, store = str(tmp_path / "a.db"), f"chdb://{tmp_path / 'ch'}"
    sim = _pulse("--db", db, "--events-store", store, "simulate", "--rate", "200",
                 "--duration", "0.5", "--seed", "3")
    out, err = sim.communicate(timeout=120)
    assert sim.returncode == 0, err
    written = int(err.split("wrote ")[1].split(" events")[0])
    assert written > 0
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sites").fetchone()[0] > 0
    finally:
        conn.close()
    rebuild = _pulse("--db", db, "--events-store", store, "rebuild-rollups")
    out, err = rebuild.communicate(timeout=120)
    assert rebuild.returncode == 0, err
    assert f"from {written} event rows" in out
