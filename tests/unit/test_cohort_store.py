"""Cohort CRUD, membership refresh, change detection and the cohorts report (real SQLite)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pulse_tui.clock import DAY_MS, Clock
from pulse_tui.cohorts import CriteriaError
from pulse_tui.errors import ConflictError, ValidationError
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import cohorts as store
from pulse_tui.store.connection import connect

NOW = 20_000 * DAY_MS
CLOCK = Clock(NOW)
US = {"type": "and", "conditions": [{"property": "country", "operator": "equals",
                                     "value": "US"}]}
_seq = 0


def add_events(conn: sqlite3.Connection, *rows: tuple[str | None, str]) -> None:
    """(user_id, country) events on site s1."""
    global _seq
    events = []
    for user, country in rows:
        _seq += 1
        events.append(NewEvent(f"e{_seq}", "s1", "view", NOW - DAY_MS + _seq, f"s{_seq}",
                               user, country=country))
    write_batch(conn, events, NOW)


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.execute("INSERT INTO sites (id, name, created_at) VALUES ('s1', 's1', 0), "
                 "('s2', 's2', 0)")
    add_events(conn, ("a", "US"), ("b", "US"), ("c", "DE"), (None, "US"))
    return conn


def active(conn: sqlite3.Connection, cohort_id: str) -> set[str]:
    return {m.user_id for m in store.list_members(conn, cohort_id) if m.user_id}


def rows(conn: sqlite3.Connection, cohort_id: str) -> dict[str, int]:
    return dict(conn.execute("SELECT user_id, is_active FROM cohort_members WHERE cohort_id = ?",
                             (cohort_id,)))


def test_create_computes_membership_with_stable_member_ids(db: sqlite3.Connection) -> None:
    c = store.create_cohort(db, CLOCK, site_id="s1", name=" US users ", criteria=US)
    assert c.name == "US users" and c.kind == "criteria" and c.status == "active"
    assert json.loads(c.criteria_text) == US
    assert active(db, c.cohort_id) == {"a", "b"}
    ids = dict(db.execute("SELECT user_id, member_id FROM cohort_members"))
    assert ids["a"] == store.member_id(c.cohort_id, "a")
    from pulse_tui.ingest.parse import member_id_for

    assert store.member_id("x", "y") == member_id_for("x", "y")  # agrees with the importer
    assert store.member_id("x", "y") != store.member_id("x", "z")
    [summary] = store.list_cohorts(db, "s1")
    assert (summary.members, summary.kind, summary.updated_at) == (2, "criteria", NOW)


def test_users_who_stop_matching_keep_row_inactive_and_can_return(db: sqlite3.Connection
                                                                  ) -> None:
    c = store.create_cohort(db, CLOCK, site_id="s1", name="not DE", criteria={
        "type": "and", "conditions": [{"property": "country", "operator": "not_equals",
                                       "value": "DE"}]})
    assert active(db, c.cohort_id) == {"a", "b"}
    add_events(db, ("a", "DE"), ("d", "FR"))
    result = store.refresh_cohort(db, CLOCK, c.cohort_id)
    assert (result.matched, result.added, result.deactivated) == (2, 1, 1)
    assert rows(db, c.cohort_id) == {"a": 0, "b": 1, "d": 1}
    assert store.list_cohorts(db)[0].members == 2
    # unchanged data: nothing written, nothing reported as changed
    again = store.refresh_cohort(db, CLOCK, c.cohort_id)
    assert not again.changed and again.matched == 2
    # a changed definition brings a back (same row, active again)
    cur = store.get_cohort(db, c.cohort_id)
    store.update_cohort(db, CLOCK, c.cohort_id, expected_updated_at=cur.updated_at,
                        criteria=US)
    assert rows(db, c.cohort_id) == {"a": 1, "b": 1, "d": 0}
    assert db.execute("SELECT count(*) FROM cohort_members").fetchone()[0] == 3


def test_invalid_criteria_are_not_saved(db: sqlite3.Connection) -> None:
    with pytest.raises(CriteriaError) as info:
        store.create_cohort(db, CLOCK, site_id="s1", name="bad", criteria={
            "type": "and", "conditions": [{"property": "plan", "operator": "gt", "value": 1}]})
    assert info.value.problems[0].path == "conditions[0].operator"
    with pytest.raises(ValidationError) as info2:
        store.create_cohort(db, CLOCK, site_id="nope", name=" ", criteria=US)
    assert set(info2.value.errors) == {"name", "site_id"}
    assert db.execute("SELECT count(*) FROM cohorts").fetchone()[0] == 0


def test_optimistic_conflict(db: sqlite3.Connection, db_path: Path) -> None:
    c = store.create_cohort(db, CLOCK, site_id="s1", name="US", criteria=US)
    other = connect(db_path)
    try:
        mine = store.get_cohort(db, c.cohort_id)
        theirs = store.get_cohort(other, c.cohort_id)
        saved = store.update_cohort(other, CLOCK, c.cohort_id,
                                    expected_updated_at=theirs.updated_at, name="Theirs")
        assert saved.updated_at > theirs.updated_at  # fixed clock: still moves on
        with pytest.raises(ConflictError, match="changed by someone else"):
            store.update_cohort(db, CLOCK, c.cohort_id, expected_updated_at=mine.updated_at,
                                name="Mine")
        with pytest.raises(ConflictError):
            store.delete_cohort(db, c.cohort_id, expected_updated_at=mine.updated_at)
        assert store.get_cohort(db, c.cohort_id).name == "Theirs"
        ok = store.update_cohort(db, CLOCK, c.cohort_id, expected_updated_at=saved.updated_at,
                                 name="Mine")
        assert ok.name == "Mine"
    finally:
        other.close()


def test_delete_cascades_members_and_snapshots(db: sqlite3.Connection) -> None:
    keep = store.create_cohort(db, CLOCK, site_id="s1", name="keep", criteria=US)
    gone = store.create_cohort(db, CLOCK, site_id="s1", name="gone", criteria=US)
    for cid in (keep.cohort_id, gone.cohort_id):
        db.execute("INSERT INTO cohort_retention_snapshots (snapshot_id, cohort_id, site_id, "
                   "week_number, cohort_size, returning_users, retention_rate, captured_at) "
                   "VALUES (?, ?, 's1', 0, 2, 2, 1.0, 0)", (f"snap-{cid}", cid))
    assert store.delete_cohort(db, gone.cohort_id) is True
    assert store.delete_cohort(db, gone.cohort_id) is False
    for table in ("cohorts", "cohort_members", "cohort_retention_snapshots"):
        left = {r[0] for r in db.execute(f"SELECT cohort_id FROM {table}")}
        assert left == {keep.cohort_id}, table
    with pytest.raises(store.CohortNotFound):
        store.get_cohort(db, gone.cohort_id)


def test_static_cohorts_are_never_recomputed(db: sqlite3.Connection) -> None:
    s = store.create_cohort(db, CLOCK, site_id="s1", name="VIPs", kind="static",
                            criteria=US)
    assert json.loads(s.criteria_text) == {"type": "and", "conditions": []}
    db.execute("INSERT INTO cohort_members (member_id, cohort_id, user_id, joined_at, "
               "last_seen_at, is_active) VALUES ('m1', ?, 'zed', 1, 2, 1)", (s.cohort_id,))
    assert store.refresh_cohort(db, CLOCK, s.cohort_id).skipped == "static"
    store.refresh_all(db, CLOCK)
    store.refresh_changed(db, CLOCK)
    assert rows(db, s.cohort_id) == {"zed": 1}
    copy = store.duplicate_cohort(db, CLOCK, s.cohort_id)
    assert copy.kind == "static" and copy.name == "VIPs (copy)"
    assert rows(db, copy.cohort_id) == {"zed": 1}


def test_duplicate_archive_restore(db: sqlite3.Connection) -> None:
    c = store.create_cohort(db, CLOCK, site_id="s1", name="US", criteria=US)
    dup = store.duplicate_cohort(db, CLOCK, c.cohort_id)
    assert dup.cohort_id != c.cohort_id and dup.criteria == c.criteria
    assert active(db, dup.cohort_id) == {"a", "b"}
    archived = store.archive_cohort(db, CLOCK, c.cohort_id, expected_updated_at=c.updated_at)
    assert archived.status == "archived"
    with pytest.raises(ConflictError):
        store.restore_cohort(db, CLOCK, c.cohort_id, expected_updated_at=c.updated_at)
    assert [x.cohort_id for x in store.list_cohorts(db, include_archived=False)] == [
        dup.cohort_id]
    assert store.restore_cohort(db, CLOCK, c.cohort_id).status == "active"


def test_preview_writes_nothing(db: sqlite3.Connection) -> None:
    before = db.total_changes
    p = store.preview(db, CLOCK, "s1", US, sample=1)
    assert p.count == 2 and len(p.sample) == 1 and p.sample[0].user_id in {"a", "b"}
    assert db.total_changes == before
    with pytest.raises(CriteriaError):
        store.preview(db, CLOCK, "s1", {"type": "and", "conditions": []})


def test_cohort_inserted_by_another_program_gets_members(db: sqlite3.Connection,
                                                         db_path: Path) -> None:
    store.refresh_all(db, CLOCK)  # data mark current: only definition changes count now
    other = sqlite3.connect(db_path)
    try:
        other.execute(
            "INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, updated_at) "
            "VALUES ('ext', 's1', 'external', ?, 1, 1)", (json.dumps(US),))
        other.execute(
            "INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, updated_at) "
            "VALUES ('broken', 's1', 'broken', '{\"type\": \"and\"', 1, 1)")
        other.commit()
        assert store.changed_cohort_ids(db) == ["broken", "ext"]
        outcome = store.refresh_changed(db, CLOCK)
        assert "1 with invalid criteria: broken" in outcome
        assert active(db, "ext") == {"a", "b"}
        assert store.changed_cohort_ids(db) == []
        assert store.refresh_changed(db, CLOCK) == "no cohort changed"
        # edited in place by the other program (criteria only, updated_at untouched)
        other.execute("UPDATE cohorts SET criteria = ? WHERE cohort_id = 'ext'", (json.dumps(
            {"type": "or", "conditions": [{"property": "country", "operator": "equals",
                                           "value": "DE"}]}),))
        other.commit()
        store.refresh_changed(db, CLOCK)
        assert rows(db, "ext") == {"a": 0, "b": 0, "c": 1}
        other.execute("DELETE FROM cohorts WHERE cohort_id = 'broken'")
        other.commit()
        store.refresh_changed(db, CLOCK)
        assert db.execute("SELECT count(*) FROM pulse_meta WHERE key = 'cohort_fp:broken'"
                          ).fetchone()[0] == 0
    finally:
        other.close()


def test_refresh_reports_changed_cohorts_to_hooks(db: sqlite3.Connection,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(store, "MEMBERSHIP_CHANGED_HOOKS", [lambda c, k, ids: seen.append(ids)])
    c = store.create_cohort(db, CLOCK, site_id="s1", name="US", criteria=US)
    assert seen == [[c.cohort_id]]
    results = store.refresh_all(db, CLOCK)
    assert [r.changed for r in results] == [False] and len(seen) == 1
    add_events(db, ("e", "US"))
    results = store.refresh_all(db, CLOCK)
    assert [r.cohort_id for r in results if r.changed] == [c.cohort_id]
    assert seen[-1] == [c.cohort_id]


def test_events_from_other_writers_are_folded_before_refresh(db: sqlite3.Connection) -> None:
    c = store.create_cohort(db, CLOCK, site_id="s1", name="US", criteria=US)
    db.execute("INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
               "user_id, country, created_at) VALUES ('raw1', 's1', 'view', ?, 'sx', 'raw', "
               "'US', ?)", (NOW - 5, NOW))
    store.refresh_cohort(db, CLOCK, c.cohort_id)
    assert active(db, c.cohort_id) == {"a", "b", "raw"}


def test_cohorts_report_orders_by_name_then_id_archived_included(db: sqlite3.Connection
                                                                 ) -> None:
    b = store.create_cohort(db, CLOCK, site_id="s1", name="B", criteria=US, cohort_id="z1")
    a2 = store.create_cohort(db, CLOCK, site_id="s1", name="A", criteria=US, cohort_id="y2")
    a1 = store.create_cohort(db, CLOCK, site_id="s1", name="A", criteria=US, cohort_id="y1")
    store.create_cohort(db, CLOCK, site_id="s2", name="other site", criteria=US)
    store.archive_cohort(db, CLOCK, b.cohort_id)
    add_events(db, ("b", "DE"))
    report = store.cohorts_report(db, "s1")
    assert [list(r) for r in report] == [["cohort_id", "name", "status", "members"]] * 3
    assert [(r["cohort_id"], r["status"], r["members"]) for r in report] == [
        (a1.cohort_id, "active", 2), (a2.cohort_id, "active", 2), ("z1", "archived", 2)]


def test_worker_jobs_and_report_adapter(db: sqlite3.Connection) -> None:
    from types import SimpleNamespace

    from pulse_tui.cohorts import jobs
    from pulse_tui.worker.scheduler import JobContext

    ctx = JobContext(conn=db, settings=None, clock=CLOCK)
    db.execute("INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, updated_at)"
               " VALUES ('ext', 's1', 'external', ?, 1, 1)", (json.dumps(US),))
    assert "refreshed 1 cohort(s), 1 changed" in jobs.refresh_changed(ctx)
    add_events(db, ("z", "US"))
    jobs.after_import(ctx, SimpleNamespace(job_id="j1"))
    assert active(db, "ext") == {"a", "b", "z"}
    assert store.report_rows(db, SimpleNamespace(site_id="s1")) == [
        {"cohort_id": "ext", "name": "external", "status": "active", "members": 3}]


def test_report_command_cohorts_json(db: sqlite3.Connection, db_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pulse_tui.cli import main

    store.create_cohort(db, CLOCK, site_id="s1", name="US", criteria=US, cohort_id="c1")
    store.archive_cohort(db, CLOCK, "c1")
    monkeypatch.setenv("PULSE_NOW", str(NOW))
    try:
        main(["--db", str(db_path), "report", "cohorts", "--site", "s1", "--format", "json"])
    except SystemExit as exc:
        assert not exc.code
    assert json.loads(capsys.readouterr().out) == [
        {"cohort_id": "c1", "name": "US", "status": "archived", "members": 2}]


def test_retention_snapshots_follow_membership_by_default(db: sqlite3.Connection) -> None:
    from pulse_tui.store import retention

    assert store.MEMBERSHIP_CHANGED_HOOKS == [retention.on_membership_changed]
    db.execute("INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
               "user_id, country, created_at) VALUES ('old', 's1', 'view', ?, 'so', 'a', 'US',"
               " ?)", (NOW - 20 * DAY_MS, NOW))
    c = store.create_cohort(db, CLOCK, site_id="s1", name="US", criteria=US)
    assert db.execute("SELECT count(*) FROM cohort_retention_snapshots WHERE cohort_id = ?",
                      (c.cohort_id,)).fetchone()[0] > 0
