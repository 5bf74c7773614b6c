"""Alert rules: validation per field, CRUD, evaluation and state changes (log), backtests."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from pulse_tui.alerts import engine
from pulse_tui.alerts.conditions import parse_condition
from pulse_tui.clock import HOUR_MS, Clock, parse_instant
from pulse_tui.errors import ConflictError, ValidationError
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import alerts as rules
from pulse_tui.store.events import ensure_sites

NOW = parse_instant("2026-11-25T12:00:00Z")
MIN = 60_000
SITE = "site-a"

_counter = 0


def add_events(conn: sqlite3.Connection, times: list[int], *, site: str = SITE,
               event_type: str = "pageview", country: str | None = "US",
               users: list[str | None] | None = None) -> None:
    global _counter
    evs = []
    for i, t in enumerate(times):
        _counter += 1
        evs.append(NewEvent(f"ev{_counter}", site, event_type, t, f"sess{_counter % 7}",
                            users[i] if users else f"u{_counter % 11}", "https://x.example/",
                            None, country, "desktop"))
    write_batch(conn, evs, NOW)


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    ensure_sites(conn, [SITE, "site-b"], NOW)
    return conn


def cond(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"metric": "events", "window_minutes": 5, "comparison": "gt",
                               "threshold": 3}
    base.update(kw)
    return base


def make_rule(db: sqlite3.Connection, **kw: object) -> rules.AlertRule:
    args: dict[str, object] = {"site_id": SITE, "name": "too many", "condition": cond(),
                               "notification_type": "log", "now_ms": NOW}
    args.update(kw)
    return rules.create_rule(db, **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- validation
def test_every_bad_field_gets_its_own_message(db: sqlite3.Connection) -> None:
    with pytest.raises(ValidationError) as info:
        rules.create_rule(
            db, site_id="nope", name=" ", now_ms=NOW, notification_type="sms",
            condition={"metric": "clicks", "window_minutes": 0, "comparison": "eq",
                       "threshold": "ten", "extra": 1})
    e = info.value.errors
    assert e["site_id"] == "unknown site 'nope'"
    assert e["name"] == "required"
    assert "events, users, sessions" in e["condition.metric"]
    assert "between 1 and" in e["condition.window_minutes"]
    assert "change_pct_gt" in e["condition.comparison"]
    assert e["condition.threshold"] == "must be a finite number"
    assert "unknown field" in e["condition.extra"]
    assert "webhook, log" in e["notification_type"]
    assert db.execute("SELECT count(*) FROM alert_rules").fetchone()[0] == 0


def test_missing_fields_and_bad_json_are_named() -> None:
    with pytest.raises(ValidationError) as info:
        parse_condition("{}")
    assert set(info.value.errors) == {"metric", "window_minutes", "comparison", "threshold"}
    with pytest.raises(ValidationError) as info:
        parse_condition("{not json")
    assert "not valid JSON" in info.value.errors["condition"]
    with pytest.raises(ValidationError) as info:
        parse_condition(cond(window_minutes=2.5, threshold=True))
    assert "whole number" in info.value.errors["window_minutes"]
    assert "number" in info.value.errors["threshold"]


def test_filter_takes_event_properties_only_with_paths() -> None:
    bad = {"type": "xor", "conditions": [
        {"property": "plan", "operator": "equals", "value": "pro"},
        {"property": "country", "operator": "gt", "value": 3},
        {"property": "country", "operator": "in", "value": []},
        {"type": "or", "conditions": []},
        {"property": "url", "operator": "is_set", "value": "x"},
    ]}
    with pytest.raises(ValidationError) as info:
        parse_condition(cond(filter=bad))
    e = info.value.errors
    assert "and" in e["filter.type"]
    assert "event properties only" in e["filter.conditions[0].property"]
    assert "compares numbers" in e["filter.conditions[1].operator"]
    assert "non-empty list" in e["filter.conditions[2].value"]
    assert "empty group" in e["filter.conditions[3].conditions"]
    assert "takes no value" in e["filter.conditions[4].value"]


def test_webhook_notification_needs_an_existing_endpoint(db: sqlite3.Connection) -> None:
    with pytest.raises(ValidationError) as info:
        make_rule(db, notification_type="webhook", notification_config={"endpoint_id": "whe_x"})
    assert "no webhook endpoint 'whe_x'" in info.value.errors["notification_config.endpoint_id"]
    with pytest.raises(ValidationError) as info:
        make_rule(db, notification_type="webhook", notification_config="{}")
    assert "required" in info.value.errors["notification_config.endpoint_id"]


# ---------------------------------------------------------------- CRUD
def test_create_update_mute_delete(db: sqlite3.Connection) -> None:
    rule = make_rule(db)
    assert (rule.state, rule.status, rule.last_value) == ("ok", "active", None)
    assert json.loads(db.execute("SELECT condition FROM alert_rules").fetchone()[0]) == cond()
    assert rule.describe() == "events > 3 in 5 min"
    updated = rules.update_rule(db, rule.rule_id, name="renamed",
                                condition=cond(threshold=9), now_ms=NOW + 1,
                                expected_updated_at=rule.updated_at)
    assert updated.name == "renamed" and updated.threshold == 9
    with pytest.raises(ConflictError):
        rules.update_rule(db, rule.rule_id, name="late", now_ms=NOW + 2,
                          expected_updated_at=rule.updated_at)
    with pytest.raises(ValidationError) as info:
        rules.update_rule(db, rule.rule_id, condition=cond(metric="x"), now_ms=NOW + 3)
    assert "condition.metric" in info.value.errors
    assert rules.mute_rule(db, rule.rule_id, now_ms=NOW + 4).muted
    assert not rules.unmute_rule(db, rule.rule_id, now_ms=NOW + 5).muted
    add_events(db, [NOW - MIN] * 10)
    engine.evaluate_all(db, Clock(NOW))
    assert rules.history(db, rule.rule_id)
    assert [r.name for r in rules.list_rules(db, SITE)] == ["renamed"]
    assert rules.delete_rule(db, rule.rule_id)
    assert rules.get_rule(db, rule.rule_id) is None
    assert db.execute("SELECT count(*) FROM alert_history").fetchone()[0] == 0


# ---------------------------------------------------------------- evaluation
def test_fires_once_then_resolves_and_logs(db: sqlite3.Connection,
                                           caplog: pytest.LogCaptureFixture) -> None:
    rule = make_rule(db)
    add_events(db, [NOW - 4 * MIN, NOW - 3 * MIN, NOW - 2 * MIN, NOW - MIN])  # 4 > 3
    caplog.set_level(logging.INFO, logger="pulse_tui.alerts")
    assert "1 firing" in engine.evaluate_all(db, Clock(NOW))
    fresh = rules.get_rule(db, rule.rule_id)
    assert fresh and (fresh.state, fresh.last_value, fresh.last_evaluated_at) == (
        "firing", 4.0, NOW)
    for minute in (1, 2):  # still firing: no new change, no new notification
        results = engine.evaluate_rules(db, Clock(NOW + minute * 1000))
        assert [r.notified for r in results] == [None]
    firing_lines = [r for r in caplog.records if r.getMessage().startswith("alert.firing")]
    assert len(firing_lines) == 1
    # window slides past the events: resolved
    results = engine.evaluate_rules(db, Clock(NOW + 3 * MIN + 30_000))
    assert [(r.state_after, r.notified) for r in results] == [("ok", "alert.resolved")]
    assert [h.state for h in rules.history(db, rule.rule_id)] == ["ok", "firing"]
    assert sum(r.getMessage().startswith("alert.resolved") for r in caplog.records) == 1


def test_window_is_half_open_and_per_site(db: sqlite3.Connection) -> None:
    rule = make_rule(db, condition=cond(threshold=0, comparison="gt"))
    add_events(db, [NOW, NOW - 5 * MIN - 1], site=SITE)  # at now: not yet; older: outside
    add_events(db, [NOW - MIN] * 3, site="site-b")
    engine.evaluate_all(db, Clock(NOW))
    fresh = rules.get_rule(db, rule.rule_id)
    assert fresh and fresh.state == "ok" and fresh.last_value == 0


def test_filter_and_distinct_metrics(db: sqlite3.Connection) -> None:
    add_events(db, [NOW - MIN] * 3, country="DE", users=["a", "a", "b"])
    add_events(db, [NOW - MIN] * 2, country=None, users=["c", None])
    flt = {"type": "and", "conditions": [{"property": "country", "operator": "not_equals",
                                          "value": "US"}]}
    de = {"type": "and", "conditions": [{"property": "country", "operator": "in",
                                         "value": ["DE"]}]}
    got = {name: engine.preview_value(db, SITE, c, Clock(NOW))[0] for name, c in {
        "events": cond(),
        "not_us": cond(filter=flt),
        "users_de": cond(metric="users", filter=de),
        "users": cond(metric="users"),
        "unset": cond(filter={"type": "or", "conditions": [
            {"property": "country", "operator": "is_not_set"}]}),
    }.items()}
    assert got == {"events": 5, "not_us": 5, "users_de": 2, "users": 3, "unset": 2}


def test_muted_rule_changes_state_but_notifies_nobody(db: sqlite3.Connection,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    rule = make_rule(db, status="muted")
    add_events(db, [NOW - MIN] * 5)
    caplog.set_level(logging.INFO, logger="pulse_tui.alerts")
    [result] = engine.evaluate_rules(db, Clock(NOW))
    assert (result.state_after, result.notified) == ("firing", None)
    assert not any(r.getMessage().startswith("alert.firing") for r in caplog.records)
    assert "muted" in caplog.text
    assert [h.state for h in rules.history(db, rule.rule_id)] == ["firing"]


def test_change_pct_with_empty_previous_window_keeps_state(db: sqlite3.Connection) -> None:
    rule = make_rule(db, condition=cond(comparison="change_pct_gt", threshold=50,
                                        window_minutes=10))
    add_events(db, [NOW - MIN] * 4)  # previous window [now-20, now-10) is empty
    [r] = engine.evaluate_rules(db, Clock(NOW))
    assert (r.value, r.state_after, r.changed) == (None, "ok", False)
    # make it firing: previous 2, current 4 -> +100 %
    add_events(db, [NOW - 15 * MIN] * 2)
    [r] = engine.evaluate_rules(db, Clock(NOW + 1))
    assert (r.value, r.state_after) == (100.0, "firing")
    # later both windows are empty: undefined again, stays firing, nothing sent
    [r] = engine.evaluate_rules(db, Clock(NOW + 60 * MIN))
    assert (r.value, r.state_after, r.notified) == (None, "firing", None)
    assert [h.state for h in rules.history(db, rule.rule_id)] == ["firing"]


def test_error_state_goes_to_history_and_back(db: sqlite3.Connection) -> None:
    rule = make_rule(db)
    db.execute("UPDATE alert_rules SET condition = '{broken' WHERE rule_id = ?", (rule.rule_id,))
    [r] = engine.evaluate_rules(db, Clock(NOW))
    assert (r.state_after, r.notified) == ("error", None) and "invalid condition" in r.message
    listed = rules.list_rules(db)[0]
    assert listed.state == "error" and listed.condition is None and listed.last_error
    db.execute("UPDATE alert_rules SET condition = ? WHERE rule_id = ?",
               (json.dumps(cond()), rule.rule_id))
    [r] = engine.evaluate_rules(db, Clock(NOW + 1))
    assert (r.state_after, r.notified) == ("ok", None)
    assert [h.state for h in rules.history(db, rule.rule_id)] == ["ok", "error"]


def test_catch_up_after_downtime_evaluates_once(db: sqlite3.Connection) -> None:
    rule = make_rule(db)
    # a burst long ago (while the worker was down), nothing now: no firing is invented
    add_events(db, [NOW - 120 * MIN] * 10)
    [r] = engine.evaluate_rules(db, Clock(NOW))
    assert r.state_after == "ok" and not rules.history(db, rule.rule_id)
    # a stale evaluation (older instant than the last one) is skipped
    add_events(db, [NOW - 30 * MIN] * 10)
    assert engine.evaluate_rules(db, Clock(NOW - 28 * MIN)) == []


def test_evaluate_one_rule_on_demand(db: sqlite3.Connection) -> None:
    a = make_rule(db, name="a")
    b = make_rule(db, name="b")
    add_events(db, [NOW - MIN] * 5)
    r = engine.evaluate_rule(db, a.rule_id, Clock(NOW))
    assert r.state_after == "firing"
    other = rules.get_rule(db, b.rule_id)
    assert other and other.last_evaluated_at is None


# ---------------------------------------------------------------- backtest
def _hourly(db: sqlite3.Connection, counts: dict[int, int]) -> None:
    """events per hour offset (hours before the current hour) into rollup_hourly directly."""
    base = NOW // HOUR_MS
    db.executemany("INSERT INTO rollup_hourly (site_id, hour, events) VALUES (?, ?, ?)",
                   [(SITE, base - off, n) for off, n in counts.items()])


def test_backtest_on_a_known_hourly_series(db: sqlite3.Connection) -> None:
    # 10 events every hour for 30 days, with two spikes: 3 h of 50 and 1 h of 40
    counts = {off: 10 for off in range(1, 24 * 31)}
    counts.update({100: 50, 99: 50, 98: 50, 10: 40})
    _hourly(db, counts)
    res = engine.backtest(db, cond(window_minutes=60, threshold=30), SITE, Clock(NOW))
    assert res.window_hours == 1 and len(res.points) == 720 and "rollups" in res.method
    base = NOW // HOUR_MS
    # the point at hour boundary t reads hour t-1: hour base-100 is seen at t = base-99
    assert [(f.start, f.end, f.peak) for f in res.firings] == [
        ((base - 99) * HOUR_MS, (base - 96) * HOUR_MS, 50.0),
        ((base - 9) * HOUR_MS, (base - 8) * HOUR_MS, 40.0),
    ]
    assert res.fire_count == 2 and res.firing_hours == 4
    assert "fired 2 times" in res.summary()
    # a 2-hour window (90 min rounds up): 10+40=50 > 45 once, 50+50 twice around the spike
    res2 = engine.backtest(db, cond(window_minutes=90, threshold=45), SITE, Clock(NOW))
    assert res2.window_hours == 2
    assert [(f.start // HOUR_MS - base, f.end and f.end // HOUR_MS - base)
            for f in res2.firings] == [(-99, -95), (-9, -7)]
    # change_pct over 1 h windows: +400 % into the first spike, +300 % into the 40 (> 250)
    res3 = engine.backtest(db, cond(window_minutes=60, comparison="change_pct_gt",
                                    threshold=250), SITE, Clock(NOW))
    assert [(f.start // HOUR_MS - base, f.end and f.end // HOUR_MS - base, f.peak)
            for f in res3.firings] == [(-99, -98, 400.0), (-9, -8, 300.0)]


def test_backtest_users_from_raw_events(db: sqlite3.Connection) -> None:
    hour = NOW // HOUR_MS * HOUR_MS
    # three distinct users 5 hours ago, the same user repeated 3 hours ago
    add_events(db, [hour - 5 * HOUR_MS + 1] * 3, users=["a", "b", "c"])
    add_events(db, [hour - 3 * HOUR_MS + 1] * 3, users=["a", "a", "a"])
    res = engine.backtest(db, cond(metric="users", window_minutes=60, threshold=2), SITE,
                          Clock(NOW), days=1)
    assert "raw events" in res.method and res.fire_count == 1
    assert res.firings[0].start == hour - 4 * HOUR_MS and res.firings[0].peak == 3
    with pytest.raises(ValidationError):
        engine.backtest(db, cond(metric="nope"), SITE, Clock(NOW))


@pytest.mark.parametrize("metric", ["events", "users"])
def test_backtest_hours_before_the_first_data_have_no_value(db: sqlite3.Connection,
                                                            metric: str) -> None:
    """Hours before data_from are unknown, not zero: "fewer than 1" does not fire on them
    (it fired for the whole period before the site's first event)."""
    hour = NOW // HOUR_MS * HOUR_MS
    add_events(db, [hour - h * HOUR_MS + 1 for h in range(1, 49)])  # the last 48 hours
    res = engine.backtest(db, cond(metric=metric, window_minutes=120, comparison="lt",
                                   threshold=1), SITE, Clock(NOW), days=7)
    assert res.data_from is not None and res.data_from // HOUR_MS == hour // HOUR_MS - 48
    known = hour - 46 * HOUR_MS  # the first point whose 2-hour window is all after data_from
    assert all(p.value is None and not p.firing for p in res.points if p.at < known)
    assert all(p.value is not None for p in res.points if p.at >= known)
    assert res.fire_count == 0
    change = engine.backtest(db, cond(metric=metric, window_minutes=60,
                                      comparison="change_pct_lt", threshold=50), SITE,
                             Clock(NOW), days=7)  # and the window before it, for change_pct
    assert [p.at for p in change.points if p.value is not None][0] == hour - 46 * HOUR_MS


def test_firing_error_firing_is_not_a_new_firing(db: sqlite3.Connection) -> None:
    rule = make_rule(db)
    add_events(db, [NOW - MIN] * 5)
    [r] = engine.evaluate_rules(db, Clock(NOW))
    assert r.notified == "alert.firing"
    good = db.execute("SELECT condition FROM alert_rules").fetchone()[0]
    db.execute("UPDATE alert_rules SET condition = '[]' WHERE rule_id = ?", (rule.rule_id,))
    [r] = engine.evaluate_rules(db, Clock(NOW + 1))
    assert (r.state_after, r.notified) == ("error", None)
    db.execute("UPDATE alert_rules SET condition = ? WHERE rule_id = ?", (good, rule.rule_id))
    [r] = engine.evaluate_rules(db, Clock(NOW + 2))
    assert (r.state_after, r.notified) == ("firing", None)
    [r] = engine.evaluate_rules(db, Clock(NOW + 10 * MIN))
    assert (r.state_after, r.notified) == ("ok", "alert.resolved")
