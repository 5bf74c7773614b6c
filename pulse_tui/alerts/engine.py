"""Alert evaluation: rule values over their windows, state changes, notifications, backtests.

A rule is evaluated once at "now" (the Clock): its value is the metric over [now - W, now)
(change_pct: percent change against [now - 2W, now - W)). The comparison holding makes it
``firing``, not holding ``ok``; a failure ``error``. A notification goes out once per change of
state (ok -> firing: alert.firing, firing -> ok: alert.resolved); changes to or from ``error``
go to the history and the log only; muted rules change state but notify no one. A worker that
was down evaluates once at the current time when it comes back: there is no replay, so no storm.

State changes, history rows and queued webhook deliveries are written in one transaction, which
re-reads each rule's state first, so two evaluators (worker and a TUI "evaluate now") never both
notify one change.

Every function takes the :class:`~pulse_tui.backend.interface.Backends` (a bare SQLite
connection means "events in that file"): metric values are read only through
``EventsBackend`` (wherever the events live), rule states and deliveries are written to the
PULSE SQLite file (``backends.conn``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pulse_tui.alerts.conditions import AlertCondition, parse_condition
from pulse_tui.alerts.models import (
    AlertRule,
    BacktestPoint,
    BacktestResult,
    Evaluation,
    FiringPeriod,
)
from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import backends_on
from pulse_tui.clock import HOUR_MS, Clock
from pulse_tui.errors import UsageError, ValidationError
from pulse_tui.notify import delivery
from pulse_tui.store import alerts as store
from pulse_tui.store.alerts import write_transaction

log = logging.getLogger("pulse_tui.alerts")


# ---------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class _Value:
    value: float | None         # None: undefined (change_pct, previous window 0)
    current: int
    previous: int | None
    error: str | None = None


Target = Backends | sqlite3.Connection  # a bare connection: events in that SQLite file


def compute_value(target: Target, site_id: str, cond: AlertCondition,
                  now_ms: int) -> tuple[float | None, int, int | None]:
    """(value, current window metric, previous window metric or None) at ``now_ms``."""
    events = backends_on(target).events
    w = cond.window_ms
    current = events.window_metric(site_id, cond.metric, now_ms - w, now_ms, cond.filter)
    if not cond.is_change:
        return float(current), current, None
    previous = events.window_metric(site_id, cond.metric, now_ms - 2 * w, now_ms - w,
                                    cond.filter)
    return change_pct(current, previous), current, previous


def change_pct(current: float, previous: float) -> float | None:
    """Percent change (50.0 = +50 %); None when the previous value is 0 (undefined)."""
    if previous == 0:
        return None
    return (current - previous) * 100.0 / previous


def _value_of(b: Backends, rule: AlertRule, now_ms: int) -> _Value:
    if rule.condition is None:
        return _Value(None, 0, None, f"invalid condition: {rule.condition_error}")
    try:
        value, current, previous = compute_value(b, rule.site_id, rule.condition, now_ms)
    except sqlite3.Error as exc:
        return _Value(None, 0, None, f"query failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - one broken rule never stops the others
        log.exception("alert rule %s could not be evaluated", rule.rule_id)
        return _Value(None, 0, None, f"cannot evaluate: {type(exc).__name__}: {exc}"[:300])
    return _Value(value, current, previous)


def _fmt(value: float | None, cond: AlertCondition | None) -> str:
    if value is None:
        return "undefined"
    if cond is not None and cond.is_change:
        return f"{value:+.1f} %"
    return f"{value:g}"


def _message(rule: AlertRule, v: _Value, new_state: str) -> str:
    cond = rule.condition
    if v.error:
        return v.error
    assert cond is not None
    verb = "holds" if new_state == "firing" else "no longer holds"
    if cond.is_change:
        detail = (f"{cond.metric} {v.current} vs {v.previous} in the {cond.window_minutes} min "
                  f"before ({_fmt(v.value, cond)})")
    else:
        detail = f"{cond.metric} = {v.current} in the last {cond.window_minutes} min"
    return f"{detail}; {cond.describe()} {verb}"


# ---------------------------------------------------------------- evaluation
def _evaluate(b: Backends, rules: list[AlertRule], now_ms: int) -> list[Evaluation]:
    # 1. values: reads only, no lock held
    values = {r.rule_id: _value_of(b, r, now_ms) for r in rules}
    conn = b.conn
    results: list[Evaluation] = []
    log_lines: list[tuple[int, str]] = []
    # 2. states, history and notifications in one write transaction
    with write_transaction(conn):
        for rule in rules:
            v = values[rule.rule_id]
            current = store.read_state(conn, rule.rule_id)
            if current is None:  # deleted meanwhile
                continue
            state, last_at, status, site_id = current
            if last_at is not None and last_at > now_ms:
                continue  # someone evaluated at a later instant; ours is stale
            if v.error:
                new_state = "error"
            elif v.value is None:
                new_state = state  # change_pct undefined: keep the state (SPEC 9)
            else:
                assert rule.condition is not None
                new_state = "firing" if rule.condition.holds(v.value) else "ok"
            store.save_evaluation(conn, rule.rule_id, at=now_ms, state=new_state, value=v.value,
                                  error=v.error)
            if new_state == state:
                results.append(Evaluation(rule.rule_id, rule.name, now_ms, v.value, state,
                                          state, error=v.error))
                continue
            message = _message(rule, v, new_state)
            notified = None
            if new_state in ("ok", "firing"):
                # what receivers last heard: firing -> error -> firing is not a new firing
                told = store.last_notified_state(conn, rule.rule_id)
                if new_state == "firing" and told != "firing":
                    notified = "alert.firing"
                elif new_state == "ok" and told == "firing":
                    notified = "alert.resolved"
            store.add_history(conn, rule.rule_id, at=now_ms, state=new_state, value=v.value,
                              threshold=rule.threshold, message=message)
            muted = status == "muted"
            if notified and not muted:
                _notify(conn, rule, site_id, notified, v, now_ms, message)
            if not (notified and not muted and rule.notification_type == "log"):
                # (a log notification is itself the line for this change)
                level = logging.WARNING if new_state in ("firing", "error") else logging.INFO
                suffix = " (muted: nobody notified)" if muted and notified else ""
                log_lines.append((level, f"alert {rule.name!r} ({rule.rule_id}) {state} -> "
                                         f"{new_state}: {message}{suffix}"))
            results.append(Evaluation(rule.rule_id, rule.name, now_ms, v.value, state,
                                      new_state, notified=None if muted else notified,
                                      error=v.error, message=message))
    for level, line in log_lines:
        log.log(level, "%s", line)
    return results


def _notify(conn: sqlite3.Connection, rule: AlertRule, site_id: str, event_type: str,
            v: _Value, now_ms: int, message: str) -> None:
    """Queue the webhook (same transaction as the state change) or write the log line."""
    cond = rule.condition
    data: dict[str, Any] = {
        "rule_id": rule.rule_id, "rule_name": rule.name, "site_id": site_id,
        "state": "firing" if event_type == "alert.firing" else "ok",
        "value": v.value, "current": v.current, "previous": v.previous,
        "threshold": cond.threshold if cond else None,
        "condition": cond.to_dict() if cond else None,
        "evaluated_at": now_ms, "message": message,
    }
    if rule.notification_type == "webhook":
        endpoint_id = str(rule.notification_config.get("endpoint_id", ""))
        ids = delivery.enqueue_event(conn, site_id, event_type, data, now_ms,
                                     endpoint_ids=[endpoint_id])
        if not ids:
            log.warning("alert %r: endpoint %s is missing, inactive or not subscribed to %s; "
                        "nothing sent", rule.name, endpoint_id, event_type)
    else:
        log.log(logging.WARNING if event_type == "alert.firing" else logging.INFO,
                "%s: %s (%s): %s", event_type, rule.name, rule.rule_id, message)


def evaluate_rules(target: Target, clock: Clock, site_id: str | None = None
                   ) -> list[Evaluation]:
    """Evaluate every rule (of a site) once at the clock's now."""
    b = backends_on(target)
    return _evaluate(b, store.list_rules(b.conn, site_id), clock.now_ms())


def evaluate_rule(target: Target, rule_id: str, clock: Clock) -> Evaluation:
    """Evaluate one rule now (the editor's "evaluate now"); notifies like the worker does."""
    b = backends_on(target)
    rule = store.get_rule(b.conn, rule_id)
    if rule is None:
        raise UsageError(f"no alert rule {rule_id!r}")
    results = _evaluate(b, [rule], clock.now_ms())
    if results:
        return results[0]
    fresh = store.get_rule(b.conn, rule_id)
    state = fresh.state if fresh else rule.state
    return Evaluation(rule.rule_id, rule.name, clock.now_ms(), None, state, state,
                      message="skipped: evaluated at a later time by another process")


def evaluate_all(target: Target, clock: Clock, site_id: str | None = None) -> str:
    """The worker's job: evaluate every rule once, return a one-line outcome."""
    results = evaluate_rules(target, clock, site_id)
    if not results:
        return "no alert rules"
    firing = sum(1 for r in results if r.state_after == "firing")
    errors = sum(1 for r in results if r.state_after == "error")
    changed = sum(1 for r in results if r.changed)
    notified = sum(1 for r in results if r.notified)
    text = f"{len(results)} rules evaluated: {firing} firing, {errors} error"
    if changed:
        text += f"; {changed} changed state, {notified} notified"
    return text


def preview_value(target: Target, site_id: str, condition: object, clock: Clock
                  ) -> tuple[float | None, bool | None]:
    """(value now, whether it would fire) for an unsaved condition; ValidationError if bad."""
    cond = parse_condition(condition)
    value, _, _ = compute_value(target, site_id, cond, clock.now_ms())
    return value, None if value is None else cond.holds(value)


# ---------------------------------------------------------------- backtest
def backtest(target: Target, condition: object, site_id: str, clock: Clock,
             days: int = 30) -> BacktestResult:
    """How often and when ``condition`` would have fired over the last ``days`` days.

    Evaluated at each hour boundary from now - days to the last full hour, with the window
    rounded up to whole hours (H = ceil(window_minutes / 60)); change_pct compares the H hours
    before each point with the H hours before those. ``events`` without a filter reads
    rollup_hourly (exact per hour, and it outlives raw events). ``users`` and ``sessions``
    (distinct counts do not add up across hours) and filtered conditions read the raw events
    of the period once, as distinct (hour, id) pairs, and count distinct ids exactly in each
    window; hours before the oldest stored event, or before cleanup's latest cutoff, have no
    data (``data_from``).

    A point whose window (with change_pct, also the window before it) reaches into hours
    before ``data_from`` has no value and changes no state: those hours are not zero, they are
    unknown (before the site's first event, or events cleanup deleted and no rollup keeps),
    and "fewer than N" must not fire on them.
    """
    events = backends_on(target).events
    try:
        cond = parse_condition(condition)
    except ValidationError:
        raise
    if not 1 <= days <= 400:
        raise ValidationError({"days": "must be between 1 and 400"})
    now = clock.now_ms()
    h = max(1, -(-cond.window_minutes // 60))
    last_point = now // HOUR_MS                  # hour boundary at or before now
    first_point = last_point - days * 24 + 1
    reach = 2 * h if cond.is_change else h
    lo = first_point - reach                     # first hour any window reads

    series: dict[int, int] = {}
    sets: dict[int, set[object]] = defaultdict(set)
    if cond.metric == "events" and not cond.filter:
        method = (f"hourly rollups: events per hour, windows of {h} h "
                  f"(window rounded up to whole hours)")
        series = events.hourly_events(site_id, lo, last_point)
        data_from = events.first_hour_with_data(site_id)
        data_from = None if data_from is None else data_from * HOUR_MS
    else:
        what = {"events": "filtered events", "users": "distinct users",
                "sessions": "distinct sessions"}[cond.metric]
        method = (f"raw events: exact {what} per window of {h} h "
                  f"(window rounded up to whole hours)")
        for hour, item in events.hourly_raw(site_id, cond.metric, lo * HOUR_MS,
                                            last_point * HOUR_MS, cond.filter):
            if cond.metric == "events":
                series[hour] = int(item)  # type: ignore[arg-type]
            else:
                sets[hour].add(item)
        data_from = events.raw_events_from(site_id)

    def window(end_hour: int) -> float:
        if cond.metric == "events":
            return float(sum(series.get(x, 0) for x in range(end_hour - h, end_hour)))
        seen: set[object] = set()
        for x in range(end_hour - h, end_hour):
            s = sets.get(x)
            if s:
                seen |= s
        return float(len(seen))

    known_from = None if data_from is None else data_from // HOUR_MS  # the first hour with data
    points: list[BacktestPoint] = []
    firings: list[FiringPeriod] = []
    firing = False
    start = 0
    peak: float | None = None
    for t in range(first_point, last_point + 1):
        current = window(t)
        value: float | None = current
        if known_from is None or t - reach < known_from:
            value = None
        elif cond.is_change:
            value = change_pct(current, window(t - h))
        if value is not None:
            holds = cond.holds(value)
            if holds and not firing:
                firing, start, peak = True, t * HOUR_MS, value
            elif not holds and firing:
                firings.append(FiringPeriod(start, t * HOUR_MS, peak))
                firing = False
        if firing and value is not None:
            peak = value if peak is None or _worse(cond, value, peak) else peak
        points.append(BacktestPoint(t * HOUR_MS, value, firing))
    if firing:
        firings.append(FiringPeriod(start, None, peak))
    return BacktestResult(site_id=site_id, days=days, window_hours=h, method=method,
                          points=tuple(points), firings=tuple(firings), data_from=data_from)


def _worse(cond: AlertCondition, value: float, peak: float) -> bool:
    """Whether ``value`` is further past the threshold than ``peak``."""
    return value > peak if cond.comparison in ("gt", "gte", "change_pct_gt") else value < peak
