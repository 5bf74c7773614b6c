"""Compiles a validated criteria tree to one parameterised SQL query returning a cohort's members.

This module is the one allowed home of SQL outside ``pulse_tui/store`` (the criteria compiler).
Property names come only from the fixed maps below and every value is bound as a parameter, so
nothing typed by an operator is ever interpolated into SQL.

The query returns ``(user_id, joined_at, last_seen_at)``, one row per member:

* candidates are the site's users: every (site, user) of ``user_first_seen`` (kept by
  ``derived.catch_up`` from the events, never touched by cleanup) plus every ``users`` row whose
  site_id is the site;
* events that are not usable (``derived.VALID_EVENT``) never count: their rowids come from the
  partial index ``idx_events_unusable``, so the covering index below still serves the pass;
* event conditions are evaluated in ONE pass over the site's events (CTE ``hits``: per user
  and distinct event condition, "some event of the user satisfies it"); event_type, country
  and device_type are read from the covering index ``idx_events_site_user`` (schema.sql), url
  and referrer from the table; ``event_count`` is a GROUP BY over the same index;
* a user condition reads the ``users`` row of that user_id whose site_id is the site or NULL;
* ``event_count`` counts the user's events on the site, ``*_days_ago`` are
  floor((now - first/last event) / 86,400,000), NULL for a user without events;
* every leaf yields 0 or 1, never NULL, so a negative operator is exactly ``NOT`` its positive;
* ``joined_at`` = first event on the site, else users.created_at; ``last_seen_at`` = latest event,
  else joined_at (cohort_members.last_seen_at is NOT NULL).
"""

from __future__ import annotations

import sqlite3

from pulse_tui.clock import DAY_MS
from pulse_tui.cohorts.criteria import Group, Node, render_condition_tree
from pulse_tui.store.derived import MAX_TS, MIN_TS, UNUSABLE_ROWIDS

# property -> SQL column; the only names that ever reach the SQL text
_EVENT_COLUMNS = {"event_type": "event_type", "url": "url", "referrer": "referrer",
                  "country": "country", "device_type": "device_type"}
_UNCOVERED = ("url", "referrer")  # event columns idx_events_site_user does not hold
_USER_COLUMNS = {"plan": "u.plan", "company": "u.company", "email": "u.email", "name": "u.name"}
_COMPUTED = {"event_count": "coalesce(c.n, 0)", "first_seen_days_ago": "b.first_days",
             "last_seen_days_ago": "b.last_days"}
# evaluate the event pass once even when several conditions read it (the hint needs 3.35+;
# older SQLite computes it once per condition, same result)
_MATERIALIZED = "MATERIALIZED " if sqlite3.sqlite_version_info >= (3, 35) else ""
_COMPARE = {"equals": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _floor_days(column: str) -> str:
    """floor((now - column) / DAY_MS) for a bound now (three ``?``), NULL when column is."""
    return (f"CASE WHEN ? - {column} >= 0 THEN (? - {column}) / {DAY_MS} "
            f"ELSE (? - {column} - {DAY_MS - 1}) / {DAY_MS} END")


class _Builder:
    """Walks the tree: WHERE text and its parameters, plus the event predicates (one each
    distinct event condition) evaluated together in a single pass over the site's events."""

    def __init__(self) -> None:
        self.params: list[object] = []
        self.event_preds: list[tuple[str, list[object]]] = []
        self._event_index: dict[tuple[str, str, object], int] = {}
        self.needs_counts = False

    def node(self, node: Node) -> str:
        return render_condition_tree(node, self.leaf)

    @staticmethod
    def _predicate(expr: str, op: str, value: object) -> tuple[str, list[object]]:
        """``expr op value`` as SQL (NULL when expr is NULL, except is_set) and its params."""
        if op in _COMPARE:
            return f"{expr} {_COMPARE[op]} ?", [value]
        if op == "in":
            assert isinstance(value, tuple) and value
            return f"{expr} IN ({', '.join('?' * len(value))})", list(value)
        if op == "contains":
            return f"instr({expr}, ?) > 0", [value]
        if op == "starts_with":
            return f"instr({expr}, ?) = 1", [value]
        if op == "is_set":
            return f"({expr} IS NOT NULL AND {expr} <> '')", []
        raise ValueError(f"operator {op} cannot be compiled positively")

    def uses_table_columns(self) -> bool:
        """True when an event condition reads a column the covering index lacks."""
        return any(k[0] in _UNCOVERED for k in self._event_index)

    def leaf(self, prop: str, op: str, value: object) -> str:
        if prop in _EVENT_COLUMNS:
            key = (prop, op, value)
            if key not in self._event_index:
                self._event_index[key] = len(self.event_preds)
                self.event_preds.append(self._predicate(_EVENT_COLUMNS[prop], op, value))
            return f"b.user_id IN (SELECT user_id FROM hits WHERE h{self._event_index[key]})"
        if prop in _USER_COLUMNS:
            pred, params = self._predicate(_USER_COLUMNS[prop], op, value)
            self.params.extend(params)
            return pred if op == "is_set" else f"coalesce({pred}, 0)"
        if prop in _COMPUTED:
            if prop == "event_count":
                self.needs_counts = True
            pred, params = self._predicate(_COMPUTED[prop], op, value)
            self.params.extend(params)
            return f"coalesce({pred}, 0)"
        raise ValueError(f"unknown property {prop!r}")


def compile_members(criteria: Group, site_id: str, now_ms: int, *, full_scan: bool = False
                    ) -> tuple[str, list[object]]:
    """SQL and parameters selecting ``(user_id, joined_at, last_seen_at)`` of the members.

    ``criteria`` must come from :func:`pulse_tui.cohorts.criteria.parse` and be non-empty.
    ``full_scan`` reads the events table in one sequential scan instead of through the site's
    index; cheaper when the site holds a large share of the events and a condition needs a
    column that ``idx_events_site_user`` does not cover (url, referrer).
    """
    b = _Builder()
    where = b.node(criteria)
    params: list[object] = [now_ms] * 6 + [site_id, site_id, site_id]
    sql = [
        "WITH base(user_id, first_ms, last_ms, first_days, last_days) AS (",
        f"  SELECT f.user_id, f.first_seen_ms, f.last_seen_ms, {_floor_days('f.first_seen_ms')},",
        f"         {_floor_days('f.last_seen_ms')}",
        "  FROM user_first_seen f WHERE f.site_id = ?",
        "  UNION ALL",
        "  SELECT u.user_id, NULL, NULL, NULL, NULL FROM users u",
        # a users row another program wrote with a user_id that is not text, or a created_at
        # that is not a time, cannot make a member (its joined_at would be that value)
        "  WHERE u.site_id = ? AND typeof(u.user_id) = 'text' AND u.user_id <> ''",
        f"    AND typeof(u.created_at) = 'integer' AND u.created_at BETWEEN {MIN_TS} AND {MAX_TS}",
        "    AND NOT EXISTS (",
        "    SELECT 1 FROM user_first_seen f WHERE f.site_id = ? AND f.user_id = u.user_id))",
    ]
    if b.event_preds:
        # one pass over the site's events, keeping the events that satisfy some condition:
        # per user, a flag per distinct event condition
        flags = ", ".join(f"({pred}) AS h{i}" for i, (pred, _) in enumerate(b.event_preds))
        flag_params = [p for _, ps in b.event_preds for p in ps]
        any_pred = " OR ".join(f"({pred})" for pred, _ in b.event_preds)
        source = "events NOT INDEXED" if full_scan and b.uses_table_columns() else "events"
        sql.append(f", hits AS {_MATERIALIZED}(SELECT DISTINCT user_id, {flags} FROM {source} "
                   f"WHERE site_id = ? AND user_id IS NOT NULL AND ({any_pred}) "
                   f"AND rowid NOT IN {UNUSABLE_ROWIDS})")
        params += flag_params + [site_id] + flag_params
    if b.needs_counts:
        sql.append(", counts(user_id, n) AS (SELECT user_id, count(*) FROM events "
                   f"WHERE site_id = ? AND user_id IS NOT NULL AND rowid NOT IN {UNUSABLE_ROWIDS} "
                   "GROUP BY user_id)")
        params.append(site_id)
    sql += [
        "SELECT b.user_id, coalesce(b.first_ms, u.created_at) AS joined_at,",
        "       coalesce(b.last_ms, b.first_ms, u.created_at) AS last_seen_at",
        "FROM base b",
        "LEFT JOIN users u ON u.user_id = b.user_id AND (u.site_id = ? OR u.site_id IS NULL)",
    ]
    params.append(site_id)
    if b.needs_counts:
        sql.append("LEFT JOIN counts c ON c.user_id = b.user_id")
    sql.append("WHERE " + where)
    params.extend(b.params)
    return "\n".join(sql), params
