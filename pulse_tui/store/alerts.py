"""SQL for alerts: rule CRUD with validation, state and history, window metrics, hourly series."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from pulse_tui.alerts.conditions import (
    METRICS,
    STATES,
    STATUSES,
    AlertCondition,
    parse_condition,
    parse_notification,
)
from pulse_tui.alerts.models import AlertHistoryEntry, AlertRule
from pulse_tui.errors import ConflictError, UsageError, ValidationError
from pulse_tui.store import derived
from pulse_tui.store.tx import write_transaction

HOUR_MS = 3_600_000
MAX_NAME_CHARS = 200

_RULE_COLUMNS = (
    "rule_id, site_id, name, condition, notification_type, notification_config, status, "
    "state, last_value, last_evaluated_at, last_error, created_at, updated_at"
)


# ---------------------------------------------------------------- filters (event properties)
_POSITIVE = {"not_equals": "equals", "not_in": "in", "not_contains": "contains",
             "is_not_set": "is_set"}


def event_filter_sql(group: dict[str, Any] | None, alias: str = "") -> tuple[str, list[object]]:
    """A validated criteria group over event properties as a SQL predicate and its parameters.

    Each positive test is NULL-safe (0 or 1), so a negative operator is exactly NOT of its
    positive one; values are always bound, column names come from a fixed list.
    """
    if not group:
        return "1", []
    params: list[object] = []
    sql = _group_sql(group, alias, params)
    return sql, params


def _group_sql(group: dict[str, Any], alias: str, params: list[object]) -> str:
    joiner = " AND " if group["type"] == "and" else " OR "
    parts = []
    for cond in group["conditions"]:
        if "conditions" in cond:
            parts.append(_group_sql(cond, alias, params))
        else:
            parts.append(_condition_sql(cond, alias, params))
    return "(" + joiner.join(parts) + ")"


_COLUMNS = {"event_type", "url", "referrer", "country", "device_type"}


def _condition_sql(cond: dict[str, Any], alias: str, params: list[object]) -> str:
    prop, op, value = cond["property"], cond["operator"], cond.get("value")
    if prop not in _COLUMNS:  # validated before; never interpolate anything else
        raise UsageError(f"unknown event property {prop!r}")
    col = f"{alias}{prop}"
    negate = op in _POSITIVE
    op = _POSITIVE.get(op, op)
    if op == "equals":
        sql = f"coalesce({col} = ?, 0)"
        params.append(value)
    elif op == "in":
        sql = f"coalesce({col} IN ({', '.join('?' * len(value))}), 0)"
        params.extend(value)
    elif op == "contains":
        sql = f"coalesce(instr({col}, ?) > 0, 0)"
        params.append(value)
    elif op == "starts_with":
        sql = f"coalesce(substr({col}, 1, length(?)) = ?, 0)"
        params.extend([value, value])
    elif op == "is_set":
        sql = f"({col} IS NOT NULL AND {col} != '')"
    else:
        raise UsageError(f"unknown operator {op!r}")
    return f"(NOT {sql})" if negate else sql


# ---------------------------------------------------------------- rules
def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_text(value: object, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _rule(row: Sequence[Any]) -> AlertRule:
    """A stored row as a rule; never raises. Whatever another program wrote that breaks the
    rule (invalid or too deeply nested JSON, unknown metric, wrong types, a bad notification)
    leaves ``condition`` None with the reason in ``condition_error``, so the rule is listed,
    evaluated to ``error`` with that reason, and can be fixed or deleted."""
    (rule_id, site_id, name, cond_json, ntype, ncfg, status, state, last_value,
     last_eval, last_error, created_at, updated_at) = row
    condition: AlertCondition | None = None
    problems: list[str] = []
    try:
        condition = parse_condition(cond_json)
    except ValidationError as exc:
        problems.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - a foreign row never breaks the list
        problems.append(f"condition: unreadable ({type(exc).__name__})")
    cfg: dict[str, Any] = {}
    kind = _as_text(ntype, "log")
    try:
        kind, cfg = parse_notification(ntype if ntype is not None else "log",
                                       ncfg if ncfg is not None else {})
    except ValidationError as exc:
        problems.append(str(exc))
    except Exception as exc:  # noqa: BLE001
        problems.append(f"notification_config: unreadable ({type(exc).__name__})")
    if problems:
        condition = None
    value = last_value if isinstance(last_value, (int, float)) and not isinstance(
        last_value, bool) else None
    return AlertRule(
        rule_id=_as_text(rule_id), site_id=_as_text(site_id), name=_as_text(name, "(no name)"),
        condition=condition, condition_json=_as_text(cond_json),
        notification_type=kind, notification_config=cfg,
        status=status if status in STATUSES else "active",
        state=state if state in STATES else "ok", last_value=value,
        last_evaluated_at=_as_int(last_eval),
        last_error=None if last_error is None else _as_text(last_error),
        created_at=_as_int(created_at) or 0, updated_at=_as_int(updated_at) or 0,
        condition_error="; ".join(problems) or None,
    )


def get_rule(conn: sqlite3.Connection, rule_id: str) -> AlertRule | None:
    row = conn.execute(f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE rule_id = ?",
                       (rule_id,)).fetchone()
    return _rule(row) if row else None


def list_rules(conn: sqlite3.Connection, site_id: str | None = None) -> list[AlertRule]:
    """Rules (all sites, or one) by name: state, last value and last evaluation included."""
    sql = f"SELECT {_RULE_COLUMNS} FROM alert_rules"
    params: list[object] = []
    if site_id:
        sql += " WHERE site_id = ?"
        params.append(site_id)
    return [_rule(r) for r in conn.execute(sql + " ORDER BY name, rule_id", params)]


def _check_name(name: object, errors: dict[str, str]) -> str:
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "required"
        return ""
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        errors["name"] = f"at most {MAX_NAME_CHARS} characters"
    elif any(ord(c) < 32 for c in name):
        errors["name"] = "must not contain control characters"
    return name


def _check_notification(conn: sqlite3.Connection, site_id: str, ntype: object, ncfg: object,
                        errors: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    try:
        kind, cfg = parse_notification(ntype, ncfg)
    except ValidationError as exc:
        errors.update(exc.errors)
        return None
    if kind == "webhook":
        row = conn.execute("SELECT site_id, events FROM webhook_endpoints WHERE id = ?",
                           (cfg["endpoint_id"],)).fetchone()
        if row is None:
            errors["notification_config.endpoint_id"] = (
                f"no webhook endpoint {cfg['endpoint_id']!r}; create it first")
        elif site_id and row[0] != site_id:
            errors["notification_config.endpoint_id"] = (
                f"endpoint {cfg['endpoint_id']!r} belongs to site {row[0]!r}, not {site_id!r}")
        else:
            try:
                events = set(json.loads(row[1] or "[]"))
            except (ValueError, TypeError, RecursionError):
                events = set()
            if not events & {"alert.firing", "alert.resolved"}:
                errors["notification_config.endpoint_id"] = (
                    f"endpoint {cfg['endpoint_id']!r} subscribes to neither alert.firing nor "
                    "alert.resolved")
        cfg = {"endpoint_id": cfg["endpoint_id"]}
    else:
        cfg = {}
    return kind, cfg


def _site_exists(conn: sqlite3.Connection, site_id: str) -> bool:
    return conn.execute("SELECT 1 FROM sites WHERE id = ?", (site_id,)).fetchone() is not None


def create_rule(
    conn: sqlite3.Connection,
    *,
    site_id: str,
    name: str,
    condition: object,
    notification_type: str = "log",
    notification_config: object = None,
    status: str = "active",
    now_ms: int,
) -> AlertRule:
    """Validate and insert a rule (state ``ok``). ValidationError names each bad field."""
    errors: dict[str, str] = {}
    if not isinstance(site_id, str) or not site_id:
        errors["site_id"] = "required"
    elif not _site_exists(conn, site_id):
        errors["site_id"] = f"unknown site {site_id!r}"
    clean_name = _check_name(name, errors)
    cond: AlertCondition | None = None
    try:
        cond = parse_condition(condition)
    except ValidationError as exc:
        errors.update({k if k == "condition" else f"condition.{k}": v
                       for k, v in exc.errors.items()})
    notif = _check_notification(conn, site_id, notification_type, notification_config, errors)
    if status not in STATUSES:
        errors["status"] = f"must be one of {', '.join(STATUSES)}"
    if errors:
        raise ValidationError(errors)
    assert cond is not None and notif is not None
    rule_id = "alr_" + secrets.token_hex(8)
    with write_transaction(conn):
        conn.execute(
            "INSERT INTO alert_rules (rule_id, site_id, name, condition, notification_type, "
            "notification_config, status, created_at, updated_at, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'ok')",
            (rule_id, site_id, clean_name, cond.to_json(), notif[0],
             json.dumps(notif[1], separators=(",", ":")), status, now_ms, now_ms),
        )
    rule = get_rule(conn, rule_id)
    assert rule is not None
    return rule


_UNSET: Any = object()


def update_rule(
    conn: sqlite3.Connection,
    rule_id: str,
    *,
    name: str = _UNSET,
    condition: object = _UNSET,
    notification_type: str = _UNSET,
    notification_config: object = _UNSET,
    expected_updated_at: int | None = None,
    now_ms: int,
) -> AlertRule:
    """Change the given fields (validated like create). ``expected_updated_at``: the value the
    editor read; ConflictError when someone saved in between. The state is kept; the next
    evaluation moves it (and notifies) if the new condition says otherwise."""
    rule = get_rule(conn, rule_id)
    if rule is None:
        raise UsageError(f"no alert rule {rule_id!r}")
    errors: dict[str, str] = {}
    sets: dict[str, object] = {}
    if name is not _UNSET:
        sets["name"] = _check_name(name, errors)
    if condition is not _UNSET:
        try:
            sets["condition"] = parse_condition(condition).to_json()
        except ValidationError as exc:
            errors.update({k if k == "condition" else f"condition.{k}": v
                           for k, v in exc.errors.items()})
    if notification_type is not _UNSET or notification_config is not _UNSET:
        ntype = rule.notification_type if notification_type is _UNSET else notification_type
        ncfg = rule.notification_config if notification_config is _UNSET else notification_config
        notif = _check_notification(conn, rule.site_id, ntype, ncfg, errors)
        if notif:
            sets["notification_type"] = notif[0]
            sets["notification_config"] = json.dumps(notif[1], separators=(",", ":"))
    if errors:
        raise ValidationError(errors)
    return _apply_update(conn, rule_id, sets, expected_updated_at, now_ms)


def _apply_update(conn: sqlite3.Connection, rule_id: str, sets: dict[str, object],
                  expected_updated_at: int | None, now_ms: int) -> AlertRule:
    with write_transaction(conn):
        row = conn.execute("SELECT updated_at FROM alert_rules WHERE rule_id = ?",
                           (rule_id,)).fetchone()
        if row is None:
            raise UsageError(f"no alert rule {rule_id!r}")
        stored = _as_int(row[0]) or 0  # another program may have written any type
        if expected_updated_at is not None and stored != expected_updated_at:
            raise ConflictError("this rule was changed by someone else since you opened it; "
                                "reload it and try again")
        sets = dict(sets)
        sets["updated_at"] = max(now_ms, stored + 1)
        assignments = ", ".join(f"{k} = ?" for k in sets)  # keys are our own column names
        conn.execute(f"UPDATE alert_rules SET {assignments} WHERE rule_id = ?",
                     (*sets.values(), rule_id))
    rule = get_rule(conn, rule_id)
    assert rule is not None
    return rule


def set_muted(conn: sqlite3.Connection, rule_id: str, muted: bool, *, now_ms: int) -> AlertRule:
    """Mute (still evaluated, notifies no one) or unmute a rule."""
    return _apply_update(conn, rule_id, {"status": "muted" if muted else "active"}, None, now_ms)


def mute_rule(conn: sqlite3.Connection, rule_id: str, *, now_ms: int) -> AlertRule:
    return set_muted(conn, rule_id, True, now_ms=now_ms)


def unmute_rule(conn: sqlite3.Connection, rule_id: str, *, now_ms: int) -> AlertRule:
    return set_muted(conn, rule_id, False, now_ms=now_ms)


def delete_rule(conn: sqlite3.Connection, rule_id: str) -> bool:
    """Delete a rule and its history; False when it did not exist."""
    with write_transaction(conn):
        conn.execute("DELETE FROM alert_history WHERE rule_id = ?", (rule_id,))
        cur = conn.execute("DELETE FROM alert_rules WHERE rule_id = ?", (rule_id,))
    return cur.rowcount > 0


def rules_using_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> list[str]:
    """Names of the rules whose webhook notification goes to ``endpoint_id``."""
    return [r[0] for r in conn.execute(
        "SELECT name FROM alert_rules WHERE notification_type = 'webhook' "
        "AND json_valid(notification_config) "
        "AND json_extract(notification_config, '$.endpoint_id') = ? ORDER BY name",
        (endpoint_id,))]


# ---------------------------------------------------------------- state and history
def history(conn: sqlite3.Connection, rule_id: str | None = None, *, site_id: str | None = None,
            limit: int = 100) -> list[AlertHistoryEntry]:
    """Changes of state, newest first: of one rule, or of every rule (of a site)."""
    sql = ("SELECT h.id, h.rule_id, h.at, h.value, h.threshold, h.state, h.message "
           "FROM alert_history h")
    params: list[object] = []
    if rule_id is not None:
        sql += " WHERE h.rule_id = ?"
        params.append(rule_id)
    elif site_id:
        sql += " JOIN alert_rules r ON r.rule_id = h.rule_id WHERE r.site_id = ?"
        params.append(site_id)
    sql += " ORDER BY h.at DESC, h.id DESC LIMIT ?"
    params.append(limit)
    return [AlertHistoryEntry(*r) for r in conn.execute(sql, params)]


def read_state(conn: sqlite3.Connection, rule_id: str
               ) -> tuple[str, int | None, str, str] | None:
    """(state, last_evaluated_at, status, site_id) of a rule, read inside the caller's
    transaction."""
    row = conn.execute(
        "SELECT state, last_evaluated_at, status, site_id FROM alert_rules WHERE rule_id = ?",
        (rule_id,)).fetchone()
    if row is None:
        return None
    return (row[0] if row[0] in STATES else "ok", _as_int(row[1]),
            row[2] if row[2] in STATUSES else "active", _as_text(row[3]))


def last_notified_state(conn: sqlite3.Connection, rule_id: str) -> str:
    """The last ok/firing state in the history (what receivers were told), default ok."""
    row = conn.execute(
        "SELECT state FROM alert_history WHERE rule_id = ? AND state IN ('ok', 'firing') "
        "ORDER BY at DESC, id DESC LIMIT 1", (rule_id,)).fetchone()
    return row[0] if row else "ok"


def save_evaluation(conn: sqlite3.Connection, rule_id: str, *, at: int, state: str,
                    value: float | None, error: str | None, keep_value: bool = False) -> None:
    """Record the latest evaluation on the rule row (inside the caller's transaction)."""
    if keep_value:
        conn.execute("UPDATE alert_rules SET state = ?, last_evaluated_at = ?, last_error = ? "
                     "WHERE rule_id = ?", (state, at, error, rule_id))
    else:
        conn.execute("UPDATE alert_rules SET state = ?, last_value = ?, last_evaluated_at = ?, "
                     "last_error = ? WHERE rule_id = ?", (state, value, at, error, rule_id))


def add_history(conn: sqlite3.Connection, rule_id: str, *, at: int, state: str,
                value: float | None, threshold: float | None, message: str) -> None:
    conn.execute(
        "INSERT INTO alert_history (rule_id, at, value, threshold, state, message) "
        "VALUES (?, ?, ?, ?, ?, ?)", (rule_id, at, value, threshold, state, message))


# ---------------------------------------------------------------- metrics
# usable rows only (derived.valid_event_sql), written so that a count over the (site_id,
# timestamp_ms) index stays index-only: the few unusable rowids come from their partial index
_USABLE = f"rowid NOT IN {derived.UNUSABLE_ROWIDS}"
def _metric_expr(metric: str) -> str:
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}")
    return {"events": "count(*)", "users": "count(DISTINCT user_id)",
            "sessions": "count(DISTINCT session_id)"}[metric]


def window_metric(conn: sqlite3.Connection, site_id: str, metric: str, start_ms: int,
                  end_ms: int, flt: dict[str, Any] | None = None) -> int:
    """The metric over the site's events with start_ms <= timestamp_ms < end_ms, read through
    the (site_id, timestamp_ms) index."""
    where, params = event_filter_sql(flt)
    row = conn.execute(
        f"SELECT {_metric_expr(metric)} FROM events INDEXED BY idx_events_site_timestamp "
        f"WHERE site_id = ? AND timestamp_ms >= ? AND timestamp_ms < ? AND {where} "
        f"AND {_USABLE}",
        (site_id, start_ms, end_ms, *params)).fetchone()
    return int(row[0])


def hourly_events(conn: sqlite3.Connection, site_id: str, from_hour: int, to_hour: int
                  ) -> dict[int, int]:
    """{hour number: events} from rollup_hourly for from_hour <= hour < to_hour, after
    folding pending rows (``derived.fold_pending``); rows it could not fold are added from
    the raw events above the high-water mark."""
    unfolded = derived.fold_pending(conn)
    out: dict[int, int] = dict(conn.execute(
        "SELECT hour, events FROM rollup_hourly WHERE site_id = ? AND hour >= ? AND hour < ?",
        (site_id, from_hour, to_hour)))
    if unfolded:
        for hour, n in conn.execute(
                f"SELECT timestamp_ms / {HOUR_MS}, count(*) FROM events WHERE rowid > ? AND "
                f"{derived.VALID_EVENT} AND site_id = ? AND timestamp_ms >= ? "
                "AND timestamp_ms < ? GROUP BY 1",
                (derived.high_water_mark(conn), site_id, from_hour * HOUR_MS,
                 to_hour * HOUR_MS)):
            out[hour] = out.get(hour, 0) + n
    return out


def first_rollup_hour(conn: sqlite3.Connection, site_id: str) -> int | None:
    return conn.execute("SELECT min(hour) FROM rollup_hourly WHERE site_id = ?",
                        (site_id,)).fetchone()[0]


def hourly_raw(conn: sqlite3.Connection, site_id: str, metric: str, start_ms: int, end_ms: int,
               flt: dict[str, Any] | None = None) -> Iterator[tuple[int, object]]:
    """For raw-event backtests: (hour, 1) per event for ``events``, or distinct
    (hour, user_id | session_id) pairs for ``users`` / ``sessions``."""
    where, params = event_filter_sql(flt)
    if metric == "events":
        sql = (f"SELECT timestamp_ms / {HOUR_MS} AS h, count(*) FROM events "
               "INDEXED BY idx_events_site_timestamp "
               f"WHERE site_id = ? AND timestamp_ms >= ? AND timestamp_ms < ? AND {where} "
               f"AND {_USABLE} GROUP BY h")
    else:
        col = "user_id" if metric == "users" else "session_id"
        sql = (f"SELECT DISTINCT timestamp_ms / {HOUR_MS}, {col} FROM events "
               "INDEXED BY idx_events_site_timestamp "
               f"WHERE site_id = ? AND timestamp_ms >= ? AND timestamp_ms < ? AND {where} "
               f"AND {col} IS NOT NULL AND {_USABLE}")
    yield from conn.execute(sql, (site_id, start_ms, end_ms, *params))


def raw_events_from(conn: sqlite3.Connection, site_id: str) -> int | None:
    """From when the site's raw events are all there (None: it has none): its oldest usable
    event, or the hour after cleanup's latest cutoff when that is later (cleanup deleted
    events before it; the kept newest event may be older)."""
    row = conn.execute(  # index order, stops at the first usable row
        "SELECT timestamp_ms FROM events INDEXED BY idx_events_site_timestamp "
        f"WHERE site_id = ? AND {_USABLE} ORDER BY timestamp_ms LIMIT 1",
        (site_id,)).fetchone()
    if row is None:
        return None
    return complete_from(row[0], int(derived.get_meta(conn, derived.CLEANUP_KEY, "0") or 0))


def complete_from(first_ms: int, cleaned_before_ms: int) -> int:
    """The later of the oldest event and the first whole hour after cleanup's cutoff (the
    hour holding the cutoff lost the events before it)."""
    return max(first_ms, -(-cleaned_before_ms // HOUR_MS) * HOUR_MS)
