"""One bad rule, cohort, endpoint or export definition never silences the others (real SQLite).

Other programs share the database: a row they wrote may hold invalid JSON, JSON nested far
too deeply, unknown names or the wrong SQLite types. Such a row is listed with its reason,
marked (error / invalid / broken / failed), and everything else goes on.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from pulse_tui.alerts import engine
from pulse_tui.alerts.conditions import MAX_FILTER_DEPTH, parse_condition
from pulse_tui.clock import Clock, parse_instant
from pulse_tui.cohorts import criteria
from pulse_tui.config import Settings
from pulse_tui.errors import ValidationError
from pulse_tui.exports import runner
from pulse_tui.models import NewEvent
from pulse_tui.notify import delivery
from pulse_tui.simulate import write_batch
from pulse_tui.store import alerts as rules
from pulse_tui.store import cohorts
from pulse_tui.store import webhooks as hooks
from pulse_tui.store.events import ensure_sites

NOW = parse_instant("2026-11-25T12:00:00Z")
SITE = "acme"
LEAF = {"property": "country", "operator": "equals", "value": "US"}


def nested(depth: int) -> dict:
    """A filter of ``depth`` groups, one inside the other."""
    node: dict = {"type": "and", "conditions": [LEAF]}
    for _ in range(depth - 1):
        node = {"type": "and", "conditions": [node]}
    return node


def nested_text(depth: int) -> str:
    """The same as JSON text, built without json.dumps (which cannot encode it either)."""
    return ('{"type":"and","conditions":[' * depth + json.dumps(LEAF) + "]}" * depth)


def condition_text(filter_text: str) -> str:
    return ('{"metric":"events","window_minutes":5,"comparison":"gt","threshold":1,'
            f'"filter":{filter_text}}}')


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    ensure_sites(conn, [SITE], NOW)
    write_batch(conn, [NewEvent(f"e{i}", SITE, "pageview", NOW - 60_000 + i, f"s{i}", f"u{i}",
                                country="US") for i in range(5)], NOW)
    return conn


# ---------------------------------------------------------------- the depth limit
def test_depth_limit_is_32_groups() -> None:
    assert MAX_FILTER_DEPTH == criteria.MAX_DEPTH == 32
    base = {"metric": "events", "window_minutes": 5, "comparison": "gt", "threshold": 1}
    assert parse_condition({**base, "filter": nested(32)}).filter == nested(32)
    assert criteria.validate(nested(32)) == []
    with pytest.raises(ValidationError, match="nest deeper than 32"):
        parse_condition({**base, "filter": nested(33)})
    assert "nest deeper than 32" in str(criteria.validate(nested(33))[0])


@pytest.mark.parametrize("depth", [33, 500, 1_000, 100_000])
def test_deep_json_is_a_validation_error_not_recursion(depth: int) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_condition(condition_text(nested_text(depth)))
    assert "nest" in str(caught.value)
    problems = criteria.validate(nested_text(depth))
    assert problems and "nest" in problems[0].message
    if depth >= 500:  # past what json can decode: said in our words
        assert "nested too deeply" in str(caught.value)
        assert "nested too deeply" in problems[0].message


def test_creating_a_deep_rule_or_cohort_through_the_store_is_refused(
        db: sqlite3.Connection) -> None:
    for depth in (33, 500):
        with pytest.raises(ValidationError, match="nest"):
            rules.create_rule(db, site_id=SITE, name="deep",
                              condition=condition_text(nested_text(depth)), now_ms=NOW)
        with pytest.raises(ValidationError, match="nest"):
            cohorts.create_cohort(db, Clock(NOW), site_id=SITE, name="deep",
                                  criteria=nested_text(depth))
    assert db.execute("SELECT count(*) FROM alert_rules").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM cohorts").fetchone()[0] == 0


# ---------------------------------------------------------------- alert rules
def _foreign_rule(db: sqlite3.Connection, rule_id: str, name: object, condition: object,
                  notification_type: object = "log", notification_config: object = "{}",
                  **extra: object) -> None:
    cols = {"rule_id": rule_id, "site_id": SITE, "name": name, "condition": condition,
            "notification_type": notification_type,
            "notification_config": notification_config, "created_at": NOW, "updated_at": NOW,
            **extra}
    db.execute(f"INSERT INTO alert_rules ({', '.join(cols)}) VALUES "
               f"({', '.join('?' * len(cols))})", list(cols.values()))
    db.commit()


BAD_RULES = {
    "1000 deep": (condition_text(nested_text(1_000)), {}, "nested too deeply"),
    "invalid JSON": ('{"metric": "events", ', {}, "not valid JSON"),
    "unknown metric": ('{"metric":"pageviews","window_minutes":5,"comparison":"gt",'
                       '"threshold":1}', {}, "must be one of events, users, sessions"),
    "condition is a number": (42, {}, "must be a JSON object"),
    "condition is a blob": (b"\xff\xfe", {}, "not valid JSON"),
    "notification config is a number": (
        '{"metric":"events","window_minutes":5,"comparison":"gt","threshold":1}',
        {"notification_config": 7}, "notification_config"),
    "webhook without endpoint": (
        '{"metric":"events","window_minutes":5,"comparison":"gt","threshold":1}',
        {"notification_type": "webhook"}, "endpoint_id"),
    "evaluated at text": (
        '{"metric":"events","window_minutes":5,"comparison":"gt","threshold":1,'
        '"filter":{"type":"xor","conditions":[]}}',
        {"last_evaluated_at": "yesterday", "last_value": "high"}, "filter.type"),
}


@pytest.mark.parametrize("case", list(BAD_RULES))
def test_a_bad_foreign_rule_never_stops_the_others(db: sqlite3.Connection, case: str) -> None:
    good = rules.create_rule(db, site_id=SITE, name="good", condition={
        "metric": "events", "window_minutes": 5, "comparison": "gt", "threshold": 3},
        now_ms=NOW)
    condition, extra, reason = BAD_RULES[case]
    _foreign_rule(db, "bad", "bad one", condition, **extra)
    listed = {r.rule_id: r for r in rules.list_rules(db, SITE)}
    assert set(listed) == {good.rule_id, "bad"}  # both listed: the bad one can be deleted
    assert listed["bad"].condition is None and reason in (listed["bad"].condition_error or "")
    out = engine.evaluate_all(db, Clock(NOW))
    assert out.startswith("2 rules evaluated: 1 firing, 1 error")
    states = dict(db.execute("SELECT rule_id, state FROM alert_rules"))
    assert states == {good.rule_id: "firing", "bad": "error"}
    error = db.execute("SELECT last_error FROM alert_rules WHERE rule_id = 'bad'").fetchone()[0]
    assert reason in error
    assert rules.delete_rule(db, "bad")
    assert [r.rule_id for r in rules.list_rules(db)] == [good.rule_id]


def test_bad_foreign_rule_with_a_good_one_in_the_worker_job(db: sqlite3.Connection,
                                                            pulse_settings: Settings) -> None:
    """The worker's alerts job itself: it used to fail every minute with RecursionError."""
    from pulse_tui.worker.jobs import JOBS
    from pulse_tui.worker.scheduler import JobContext, resolve

    rules.create_rule(db, site_id=SITE, name="good", condition={
        "metric": "events", "window_minutes": 5, "comparison": "gt", "threshold": 3},
        now_ms=NOW)
    _foreign_rule(db, "bad", "bad one", condition_text(nested_text(1_000)))
    [job] = [j for j in JOBS if j.name == "alerts"]
    ctx = JobContext(conn=db, settings=pulse_settings, clock=Clock(NOW))
    assert "1 firing, 1 error" in resolve(job.fn)(ctx)


# ---------------------------------------------------------------- cohorts
BAD_CRITERIA = {
    "1000 deep": (nested_text(1_000), "nested too deeply"),
    "40 deep": (json.dumps(nested(40)), "nest deeper than 32"),
    "invalid JSON": ('{"type": "and", ', "not valid JSON"),
    "unknown property": (json.dumps({"type": "and", "conditions": [
        {"property": "shoe_size", "operator": "equals", "value": "9"}]}), "unknown property"),
    "a number": (12, "criteria must be a group"),
    "a blob": (b"\x00\xff", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_CRITERIA))
def test_a_bad_foreign_cohort_is_skipped_and_flagged(db: sqlite3.Connection, case: str) -> None:
    clock = Clock(NOW)
    good = cohorts.create_cohort(db, clock, site_id=SITE, name="good",
                                 criteria=json.dumps(nested(1)))
    text, reason = BAD_CRITERIA[case]
    # (updated_at as text too: the pane must still be able to delete it)
    db.execute("INSERT INTO cohorts (cohort_id, site_id, name, criteria, created_at, "
               "updated_at) VALUES ('bad', ?, 'bad one', ?, ?, 'yesterday')", (SITE, text, NOW))
    db.commit()
    results = {r.cohort_id: r for r in cohorts.refresh_all(db, clock)}
    assert results[good.cohort_id].skipped is None and results[good.cohort_id].matched == 5
    assert results["bad"].skipped and "invalid" in results["bad"].skipped
    assert "1 with invalid criteria: bad" in cohorts.describe(list(results.values()))
    listed = {c.cohort_id: c for c in cohorts.list_cohorts(db, SITE)}
    assert listed[good.cohort_id].problem is None and listed[good.cohort_id].members == 5
    assert listed["bad"].problem and reason in listed["bad"].problem
    assert listed["bad"].members == 0
    cohorts.delete_cohort(db, "bad", expected_updated_at=listed["bad"].updated_at)
    assert [c.cohort_id for c in cohorts.list_cohorts(db)] == [good.cohort_id]


# ---------------------------------------------------------------- webhook endpoints
@pytest.mark.parametrize(("events", "reason"), [
    ("alert.firing", "events: not valid JSON"),
    ('{"alert.firing": true}', "events: must be a JSON list"),
    ('["alert.firing", "alert.exploded"]', "unknown event 'alert.exploded'"),
    ("[]", "subscribes to no event"),
    ("[" * 5_000 + "]" * 5_000, "events:"),
    (7, "events: must be a JSON list"),
])
def test_a_broken_endpoint_is_shown_and_receives_nothing(db: sqlite3.Connection,
                                                         events: object, reason: str) -> None:
    good = hooks.create_endpoint(db, site_id=SITE, url="http://127.0.0.1:9/good",
                                 events=["alert.firing"], now_ms=NOW).endpoint
    bad = hooks.create_endpoint(db, site_id=SITE, url="http://127.0.0.1:9/bad",
                                events=["alert.firing"], now_ms=NOW).endpoint
    db.execute("UPDATE webhook_endpoints SET events = ? WHERE id = ?", (events, bad.id))
    db.commit()
    listed = {ep.id: ep for ep in hooks.list_endpoints(db, SITE)}
    assert listed[good.id].problem is None and listed[good.id].events == ("alert.firing",)
    assert listed[bad.id].problem and reason in listed[bad.id].problem
    assert listed[bad.id].events == ()  # never "every box ticked"
    ids = delivery.enqueue_event(db, SITE, "alert.firing", {}, NOW)
    assert [d.endpoint_id for d in (hooks.get_delivery(db, i) for i in ids) if d] == [good.id]
    # fixed from the form (as the pane's editor saves it), it is whole again
    fixed = hooks.update_endpoint(db, bad.id, events=["alert.firing"], now_ms=NOW + 1)
    assert fixed.problem is None
    assert hooks.delete_endpoint(db, good.id)


# ---------------------------------------------------------------- export definitions
@pytest.mark.parametrize(("column", "value", "reason"), [
    ("scheduled", '{"frequency": "daily", ', "scheduled: not valid JSON"),
    ("scheduled", "[1, 2]", "scheduled: must be a JSON object"),
    ("filters", "{oops", "filters: not valid JSON"),
    ("filters", "[" * 5_000 + "]" * 5_000, "filters: nested too deeply"),
    ("type", "spreadsheet", "unknown export type"),
])
def test_an_unusable_export_definition_is_marked_failed(
        db: sqlite3.Connection, pulse_settings: Settings, column: str, value: str,
        reason: str) -> None:
    from pulse_tui.exports import list_exports

    good = {"id": "good", "type": "metrics", "filters": '{"days": 7}',
            "scheduled": json.dumps({"frequency": "daily", "next_run": NOW})}
    bad = {**good, "id": "bad", column: value}
    for row in (good, bad):
        db.execute("INSERT INTO export_jobs (id, site_id, type, name, format, filters, status, "
                   "scheduled, created_at) VALUES (?, ?, ?, ?, 'csv', ?, 'pending', ?, ?)",
                   (row["id"], SITE, row["type"], row["id"], row["filters"], row["scheduled"],
                    NOW - 1))
    db.commit()
    out = runner.run_due(db, pulse_settings, Clock(NOW))
    assert "1 completed, 1 failed (bad: invalid definition" in out
    status, error, scheduled = db.execute(
        "SELECT status, error, scheduled FROM export_jobs WHERE id = 'bad'").fetchone()
    assert status == "failed" and reason in error
    assert scheduled == bad["scheduled"]  # what the other program wrote is kept
    [run] = db.execute("SELECT status, error FROM export_runs WHERE export_id = 'bad'")
    assert run[0] == "failed" and reason in run[1]
    shown = {e.definition.id: e for e in list_exports(db, SITE)}
    assert shown["bad"].definition.status == "failed"
    # marked once, not retried on every run until someone fixes or deletes it
    assert runner.run_due(db, pulse_settings, Clock(NOW + 10 * 60_000)) == "no exports due"
    assert db.execute("SELECT count(*) FROM export_runs WHERE export_id = 'bad'"
                      ).fetchone()[0] == 1

