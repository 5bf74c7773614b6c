"""Report queries (daily, breakdown, top-N, funnel, totals) and the report registry.

Everything except ``funnel`` reads rollups only (rollup_daily, rollup_daily_dims and the exact
distinct-count histogram rollup_distinct_gaps, see schema.sql), so 30/90-day ranges never scan
raw events and distinct users/sessions over a range are exact, also per dimension value.

Numbers are right whether or not a worker runs: every rollup reader here starts with
``derived.fold_pending`` (rows other programs inserted are folded first, days of rows they
deleted or changed are re-derived). When they cannot be folded (read-only file, another writer
holding the lock, a caller inside its own transaction) the rows above the high-water mark are
added from the raw events (:func:`_unfolded_counts`), their distinct users and sessions counted
only when the rollups do not hold them already; a site with days waiting for re-deriving
(``derived.stale``) is counted from the raw events altogether. Only usable rows count anywhere
(``derived.VALID_EVENT``).

Adding a report (cohorts, retention): write a function ``run(conn, params) -> list[row]`` where
a row is a frozen dataclass whose fields are the report's columns in order (or a Mapping / tuple
in column order), then add ONE entry at the end of this module, e.g.::

    register_report(ReportSpec("cohorts", ("cohort_id", "name", "status", "members"),
                               cohorts.report_rows, "every cohort of the site"))

The store modules it names are imported directly (none of them imports this one). ``pulse-tui
report``, the exports and the events interface pick it up from ``REPORTS``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from pulse_tui.backend.interface import OutsideEvents
from pulse_tui.clock import Clock
from pulse_tui.errors import UsageError
from pulse_tui.models import Site
from pulse_tui.report_models import DEFAULT_DAYS as DEFAULT_DAYS
from pulse_tui.report_models import (
    NONE_LABEL,
    BreakdownRow,
    DailyRow,
    DateRange,
    FunnelRow,
    RangeTotals,
    TopRow,
    Totals,
)
from pulse_tui.report_models import default_range as default_range
from pulse_tui.report_models import make_range as make_range
from pulse_tui.report_models import parse_day as parse_day
from pulse_tui.store import cohorts, derived, retention
from pulse_tui.store.derived import (
    CLEANUP_KEY,
    DAY_MS,
    DISTINCT_SESSIONS,
    DISTINCT_USERS,
    get_meta,
    valid_event_sql,
)
from pulse_tui.store.events import list_sites

DEFAULT_LIMIT = 10
# top-* report name -> events column / rollup dimension
TOP_DIMENSIONS: dict[str, str] = {
    "top-urls": "url",
    "top-referrers": "referrer",
    "top-countries": "country",
    "top-devices": "device_type",
}

# ------------------------------------------------------------------ sites, dates, ranges


def sites(conn: sqlite3.Connection) -> list[Site]:
    """Every site, by id (the charts pane's site selector), also the sites of rows other
    programs inserted: folded first when the file is writable (which registers them), else
    read from the unfolded rows."""
    known = list_sites(conn)
    if derived.fold_pending(conn):
        have = {s.id for s in known}
        extra = [r[0] for r in conn.execute(
            f"SELECT DISTINCT site_id FROM events WHERE rowid > ? AND {derived.VALID_EVENT}",
            (derived.high_water_mark(conn),)) if r[0] not in have]
        known = sorted([*known, *(Site(i, i, None, 0) for i in extra)], key=lambda s: s.id)
    else:
        known = list_sites(conn)
    return known


def resolve_site(conn: sqlite3.Connection, site_id: str | None) -> str:
    """The site a report is about: ``site_id`` if known, else the only site (UsageError)."""
    return pick_site([s.id for s in sites(conn)], site_id)


def pick_site(ids: list[str], site_id: str | None) -> str:
    """``site_id`` if it is one of ``ids``, else the only one (UsageError otherwise)."""
    if not ids:
        raise UsageError("no site in the database yet; import or simulate some events first")
    if site_id is not None:
        if site_id not in ids:
            raise UsageError(f"unknown site {site_id!r} (sites: {', '.join(ids)})")
        return site_id
    if len(ids) > 1:
        raise UsageError(f"several sites ({', '.join(ids)}); choose one with --site")
    return ids[0]


# ------------------------------------------------------------------ counts from rollups


def distinct_count(conn: sqlite3.Connection, site_id: str, rng: DateRange,
                   dim: str = DISTINCT_USERS, value: str = "") -> int:
    """Exact number of distinct entities of a key over the range (rollup_distinct_gaps).

    dim ``user`` / ``session`` (value ''), or a dimension (event_type, url, referrer, country,
    device_type) with its stored value ('' = NULL or empty) for distinct users of that value.
    """
    row = conn.execute(
        "SELECT coalesce(sum(n), 0) FROM rollup_distinct_gaps WHERE site_id = ? AND dim = ? "
        "AND value = ? AND day BETWEEN ? AND ? AND gap > day - ?",
        (site_id, dim, value, rng.first_day, rng.last_day, rng.first_day),
    ).fetchone()
    return int(row[0])


def event_count(conn: sqlite3.Connection, site_id: str, rng: DateRange) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(events), 0) FROM rollup_daily WHERE site_id = ? "
        "AND day BETWEEN ? AND ?",
        (site_id, rng.first_day, rng.last_day),
    ).fetchone()
    return int(row[0])


def unfolded_mark(conn: sqlite3.Connection) -> int | None:
    """Fold pending rows before reading (``derived.fold_pending``); the high-water mark when
    rows above it are still unfolded (the reader adds them from the raw events), else None."""
    if derived.fold_pending(conn) == 0:
        return None
    return derived.high_water_mark(conn)


def _unfolded_counts(conn: sqlite3.Connection, hwm: int, site_id: str, rng: DateRange,
                     by: str) -> dict[object, list[int]]:
    """Counts of the usable events above the high-water mark (not in the rollups yet):
    {group: [events, new users, new sessions]}; ``by`` is ``total`` (group ''), ``day``
    (UTC day number) or a dimension (its stored value, '' for NULL or empty). A user or
    session is new when the rollups do not hold it for that key in the range (per day for
    ``day``), so adding the counts to the rollups' is exact."""
    per_day = by == "day"
    group = ("e.timestamp_ms / 86400000" if per_day else "''" if by == "total"
             else f"coalesce(e.{by}, '')")
    days = "e.timestamp_ms / 86400000 AND e.timestamp_ms / 86400000" if per_day else "?5 AND ?6"
    where = (f"FROM events e WHERE e.rowid > ?1 AND {valid_event_sql('e')} AND e.site_id = ?2 "
             "AND e.timestamp_ms BETWEEN ?3 AND ?4")
    args = (hwm, site_id, rng.start_ms, rng.end_ms, *(() if per_day else
                                                     (rng.first_day, rng.last_day)))

    def new(dim: str, col: str, value: str) -> str:
        return (f"count(DISTINCT CASE WHEN e.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                f"rollup_presence p WHERE p.site_id = ?2 AND p.dim = '{dim}' AND p.value = "
                f"{value} AND p.entity = e.{col} AND p.day BETWEEN {days}) THEN e.{col} END)")

    if by in ("total", "day"):
        users = new(DISTINCT_USERS, "user_id", "''")
        sessions = new(DISTINCT_SESSIONS, "session_id", "''")
    else:
        users = new(by, "user_id", group)
        sessions = "0"
    return {g: [int(ev), int(us), int(se)] for g, ev, us, se in conn.execute(
        f"SELECT {group}, count(*), {users}, {sessions} {where} GROUP BY 1", args)}


def totals(conn: sqlite3.Connection, site_id: str, rng: DateRange) -> Totals:
    """Events, exact distinct users and sessions of the site over the range."""
    hwm = unfolded_mark(conn)  # first: folding changes the rollups read below
    if derived.stale(conn, site_id):
        return _raw_totals(conn, site_id, rng, rng.end_ms)
    ev = event_count(conn, site_id, rng)
    us = distinct_count(conn, site_id, rng, DISTINCT_USERS)
    se = distinct_count(conn, site_id, rng, DISTINCT_SESSIONS)
    if hwm is not None:
        extra = _unfolded_counts(conn, hwm, site_id, rng, "total").get("", [0, 0, 0])
        ev, us, se = ev + extra[0], us + extra[1], se + extra[2]
    return Totals(rng, ev, us, se)


def totals_until(conn: sqlite3.Connection, site_id: str, rng: DateRange, until_ms: int
                 ) -> Totals:
    """Totals of the range with its last day counted only up to ``until_ms`` (inclusive), exact:
    the whole days from the rollups, the cut day from the raw events, whose users and sessions
    count only when the range's whole days did not already have them."""
    derived.fold_pending(conn)
    if derived.stale(conn, site_id):
        return _raw_totals(conn, site_id, rng, until_ms)
    cut_start = rng.last_day * DAY_MS
    whole = DateRange(rng.start, rng.end - timedelta(days=1)) if rng.days > 1 else None
    if whole:
        t = totals(conn, site_id, whole)
        events, users, sessions = t.events, t.users, t.sessions
    else:
        events = users = sessions = 0
    hwm = unfolded_mark(conn)
    seen_before = (
        "NOT EXISTS (SELECT 1 FROM rollup_presence p WHERE p.site_id = ?1 AND p.dim = {dim} "
        "AND p.value = '' AND p.entity = e.{col} AND p.day BETWEEN ?5 AND ?6)")
    if hwm is not None:  # the whole days' rows not folded yet count as seen too
        seen_before += (
            " AND NOT EXISTS (SELECT 1 FROM events u WHERE u.rowid > ?8 AND "
            + valid_event_sql("u") + " AND u.site_id = ?1 AND u.{col} = e.{col} "
            "AND u.timestamp_ms BETWEEN ?9 AND ?2 - 1)")
    cut = conn.execute(
        "SELECT count(*), "
        "count(DISTINCT CASE WHEN " + seen_before.format(dim="?4", col="user_id")
        + " THEN e.user_id END), "
        "count(DISTINCT CASE WHEN " + seen_before.format(dim="?7", col="session_id")
        + " THEN e.session_id END) "
        "FROM events e WHERE e.site_id = ?1 AND e.timestamp_ms BETWEEN ?2 AND ?3 AND "
        + valid_event_sql("e"),
        (site_id, cut_start, until_ms, DISTINCT_USERS, rng.first_day, rng.last_day - 1,
         DISTINCT_SESSIONS, *(() if hwm is None else (hwm, rng.start_ms))),
    ).fetchone()
    return Totals(rng, events + cut[0], users + cut[1], sessions + cut[2])


def range_totals(conn: sqlite3.Connection, site_id: str, rng: DateRange,
                 now_ms: int | None = None) -> RangeTotals:
    """Totals of the range and of the equally long period before it (change arrows).

    When the range ends on the day of ``now_ms`` (today, still running), the previous period
    is counted up to the same time of its last day, so a morning is not compared with a whole
    day; unless cleanup already deleted that day's raw events (then whole days, as otherwise).
    """
    previous = rng.previous()
    if now_ms is not None and now_ms // DAY_MS == rng.last_day:
        until = now_ms - rng.days * DAY_MS
        cleaned_before = int(get_meta(conn, CLEANUP_KEY, "0") or 0)
        if cleaned_before <= previous.last_day * DAY_MS:
            return RangeTotals(totals(conn, site_id, rng),
                               totals_until(conn, site_id, previous, until), until)
    return RangeTotals(totals(conn, site_id, rng), totals(conn, site_id, previous))


def daily(conn: sqlite3.Connection, site_id: str, rng: DateRange) -> list[DailyRow]:
    """Every day of the range, oldest first, zeros included: events, users, sessions."""
    hwm = unfolded_mark(conn)  # first: folding changes the rollups read below
    if derived.stale(conn, site_id):
        from pulse_tui.store.reports_raw import raw_report
        return [DailyRow(*r) for r in raw_report(conn, "daily", site_id, rng)]  # type: ignore[arg-type]
    lo, hi = rng.first_day, rng.last_day
    events = dict(conn.execute(
        "SELECT day, events FROM rollup_daily WHERE site_id = ? AND day BETWEEN ? AND ?",
        (site_id, lo, hi)))
    distinct: dict[tuple[str, int], int] = {
        (d, day): n for d, day, n in conn.execute(
            "SELECT dim, day, sum(n) FROM rollup_distinct_gaps WHERE site_id = ? "
            "AND dim IN (?, ?) AND value = '' AND day BETWEEN ? AND ? GROUP BY dim, day",
            (site_id, DISTINCT_USERS, DISTINCT_SESSIONS, lo, hi))
    }
    extra = _unfolded_counts(conn, hwm, site_id, rng, "day") if hwm is not None else {}
    return [
        DailyRow(rng.start + timedelta(days=i),
                 int(events.get(day, 0)) + extra.get(day, [0, 0, 0])[0],
                 int(distinct.get((DISTINCT_USERS, day), 0)) + extra.get(day, [0, 0, 0])[1],
                 int(distinct.get((DISTINCT_SESSIONS, day), 0)) + extra.get(day, [0, 0, 0])[2])
        for i, day in enumerate(range(lo, hi + 1))
    ]


def _label(value: str) -> str:
    return NONE_LABEL if value == "" else value


def _ranked_values(conn: sqlite3.Connection, site_id: str, rng: DateRange, dim: str,
                   limit: int | None) -> list[tuple[str, int, int]]:
    """(stored value, events, distinct users) of a dimension, most events first, then the
    shown label; rows not folded yet added from the raw events."""
    hwm = unfolded_mark(conn)
    if derived.stale(conn, site_id):
        return _raw_ranked(conn, site_id, rng, dim, limit)
    if hwm is not None:
        extra = _unfolded_counts(conn, hwm, site_id, rng, dim)
        merged = {v: [n, 0] for v, n in _ranked_counts(conn, site_id, rng, dim, None)}
        for v, (n, users, _) in extra.items():
            merged.setdefault(str(v), [0, 0])
            merged[str(v)][0] += n
            merged[str(v)][1] = users
        ranked = sorted(merged.items(), key=lambda kv: (-kv[1][0], _label(kv[0]), kv[0]))
        if limit is not None:
            ranked = ranked[:limit]
        return [(v, n, distinct_count(conn, site_id, rng, dim, v) + users)
                for v, (n, users) in ranked]
    return [(v, n, distinct_count(conn, site_id, rng, dim, v))
            for v, n in _ranked_counts(conn, site_id, rng, dim, limit)]


def _raw_ranked(conn: sqlite3.Connection, site_id: str, rng: DateRange, dim: str,
                limit: int | None) -> list[tuple[str, int, int]]:
    """:func:`_ranked_values` from the raw events (days other programs changed that could not
    be re-derived yet: a read-only file, a writer holding the lock)."""
    rows = conn.execute(
        f"SELECT coalesce({dim}, '') AS v, count(*), count(DISTINCT user_id) FROM events "
        f"WHERE site_id = ? AND timestamp_ms BETWEEN ? AND ? AND {derived.VALID_EVENT} "
        "GROUP BY v", (site_id, rng.start_ms, rng.end_ms)).fetchall()
    ranked = sorted(((str(v), int(n), int(u)) for v, n, u in rows),
                    key=lambda r: (-r[1], _label(r[0]), r[0]))
    return ranked if limit is None else ranked[:limit]


def _raw_totals(conn: sqlite3.Connection, site_id: str, rng: DateRange, until_ms: int
                ) -> Totals:
    """Totals of the range up to ``until_ms`` from the raw events (see :func:`_raw_ranked`)."""
    ev, us, se = conn.execute(
        "SELECT count(*), count(DISTINCT user_id), count(DISTINCT session_id) FROM events "
        f"WHERE site_id = ? AND timestamp_ms BETWEEN ? AND ? AND {derived.VALID_EVENT}",
        (site_id, rng.start_ms, min(until_ms, rng.end_ms))).fetchone()
    return Totals(rng, int(ev), int(us), int(se))


def _ranked_counts(conn: sqlite3.Connection, site_id: str, rng: DateRange, dim: str,
                   limit: int | None) -> list[tuple[str, int]]:
    """(stored value, events) of a dimension from the rollups, most events first, then the
    shown label."""
    sql = (
        "SELECT value, sum(events) AS total FROM rollup_daily_dims "
        "WHERE site_id = ? AND dim = ? AND day BETWEEN ? AND ? GROUP BY value "
        f"ORDER BY total DESC, CASE value WHEN '' THEN '{NONE_LABEL}' ELSE value END, value"
    )
    params: list[object] = [site_id, dim, rng.first_day, rng.last_day]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [(v, int(n)) for v, n in conn.execute(sql, params)]


def breakdown(conn: sqlite3.Connection, site_id: str, rng: DateRange) -> list[BreakdownRow]:
    """Per event type: events and distinct users, most events first, then event_type."""
    return [BreakdownRow(value, events, users)
            for value, events, users in _ranked_values(conn, site_id, rng, "event_type", None)]


def top(conn: sqlite3.Connection, site_id: str, rng: DateRange, dim: str,
        limit: int = DEFAULT_LIMIT) -> list[TopRow]:
    """Top values of url / referrer / country / device_type by events (then value), with
    exact distinct users per value; NULL or empty is the value ``(none)``."""
    if dim not in TOP_DIMENSIONS.values():
        raise UsageError(f"not a top-N dimension: {dim!r}")
    return [TopRow(_label(value), events, users)
            for value, events, users in _ranked_values(conn, site_id, rng, dim, limit)]


def funnel(conn: sqlite3.Connection, site_id: str, rng: DateRange,
           steps: Sequence[str]) -> list[FunnelRow]:
    """Ordered funnel over raw events: users (non-null) who did step 1 in the range, then each
    later step strictly later than the previous one, all within the range.

    The range's events of the steps' types are read once through the (site_id, timestamp_ms)
    index (forced: GROUP BY user_id would otherwise tempt the planner into a per-user index over
    the site's whole history) into ``ev``; each step then joins ``ev`` to the users of the step
    before with the user as the lookup key (SQLite indexes the materialized step), so the cost is
    one pass per step, not the step's events times the previous step's users (that join order
    took 48 s for one day of 10M events and never finished 30 days)."""
    steps = tuple(steps)
    if not steps or any(not s for s in steps):
        raise UsageError("funnel needs --steps a,b,c (event types, at least one)")
    params: dict[str, object] = {"site": site_id, "lo": rng.start_ms, "hi": rng.end_ms}
    params.update({f"e{k}": step for k, step in enumerate(steps, 1)})
    kinds = ", ".join(f":e{k}" for k in range(1, len(steps) + 1))
    ctes = [
        "ev(user_id, t, event_type) AS MATERIALIZED (SELECT user_id, timestamp_ms, event_type "
        "FROM events INDEXED BY idx_events_site_timestamp WHERE site_id = :site "
        f"AND event_type IN ({kinds}) AND timestamp_ms BETWEEN :lo AND :hi "
        f"AND user_id IS NOT NULL AND {valid_event_sql()})",
        "s1(user_id, t) AS MATERIALIZED (SELECT user_id, min(t) FROM ev WHERE event_type = :e1 "
        "GROUP BY user_id)",
    ]
    for k in range(2, len(steps) + 1):
        ctes.append(
            f"s{k}(user_id, t) AS MATERIALIZED (SELECT e.user_id, min(e.t) FROM s{k - 1} p "
            f"JOIN ev e ON e.user_id = p.user_id AND e.event_type = :e{k} AND e.t > p.t "
            "GROUP BY e.user_id)"
        )
    counts = ", ".join(f"(SELECT count(*) FROM s{k})" for k in range(1, len(steps) + 1))
    row = conn.execute(f"WITH {', '.join(ctes)} SELECT {counts}", params).fetchone()
    return [FunnelRow(k + 1, step, int(row[k])) for k, step in enumerate(steps)]


# ------------------------------------------------------------------ registry


@dataclass(frozen=True, slots=True)
class ReportParams:
    """What a report run gets: the site, the range, "now" and the optional options."""

    site_id: str
    range: DateRange
    now_ms: int
    limit: int = DEFAULT_LIMIT
    steps: tuple[str, ...] = ()
    events: OutsideEvents | None = None  # the events' backend when not in this file (retention)


ReportFn = Callable[[sqlite3.Connection, ReportParams], Sequence[object]]


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """A named report: its output columns in order and the function computing its rows."""

    name: str
    columns: tuple[str, ...]
    run: ReportFn
    help: str = ""
    options: frozenset[str] = field(default_factory=frozenset)  # of "limit", "steps"


REPORTS: dict[str, ReportSpec] = {}


def register_report(spec: ReportSpec) -> ReportSpec:
    REPORTS[spec.name] = spec
    return spec


def row_values(spec: ReportSpec, row: object) -> tuple[object, ...]:
    """A row's cells in column order (dataclass fields, Mapping keys or a plain sequence)."""
    if dataclasses.is_dataclass(row):
        return tuple(getattr(row, c) for c in spec.columns)
    if isinstance(row, Mapping):
        return tuple(row[c] for c in spec.columns)
    values = tuple(row)  # type: ignore[call-overload]
    if len(values) != len(spec.columns):
        raise ValueError(f"report {spec.name}: row has {len(values)} cells, "
                         f"expected {len(spec.columns)}")
    return values


def run_report(conn: sqlite3.Connection, name: str, site_id: str, rng: DateRange, *,
               now_ms: int | None = None, limit: int = DEFAULT_LIMIT,
               steps: Sequence[str] = ()) -> list[tuple[object, ...]]:
    """Rows of a registered report as tuples in column order."""
    spec = REPORTS.get(name)
    if spec is None:
        raise UsageError(f"unknown report {name!r} (reports: {', '.join(sorted(REPORTS))})")
    params = ReportParams(site_id, rng, Clock.from_env().now_ms() if now_ms is None else now_ms,
                          limit, tuple(steps))
    return [row_values(spec, r) for r in spec.run(conn, params)]


def _top_report(dim: str) -> ReportFn:
    return lambda conn, p: top(conn, p.site_id, p.range, dim, p.limit)


register_report(ReportSpec("daily", ("day", "events", "users", "sessions"),
                           lambda conn, p: daily(conn, p.site_id, p.range),
                           "per day: events, distinct users, distinct sessions"))
register_report(ReportSpec("breakdown", ("event_type", "events", "users"),
                           lambda conn, p: breakdown(conn, p.site_id, p.range),
                           "per event type: events and distinct users"))
for _name, _dim in TOP_DIMENSIONS.items():
    register_report(ReportSpec(_name, ("value", "events", "users"), _top_report(_dim),
                               f"top {_dim} values by events, with distinct users",
                               frozenset({"limit"})))
register_report(ReportSpec("funnel", ("step", "event_type", "users"),
                           lambda conn, p: funnel(conn, p.site_id, p.range, p.steps),
                           "users who did each step in order (--steps a,b,c)",
                           frozenset({"steps"})))
# cohorts / retention: one register_report(...) line each below (see the module docstring).
register_report(ReportSpec("cohorts", ("cohort_id", "name", "status", "members"),
                           cohorts.report_rows,
                           "every cohort of the site (archived too); members = active rows"))
register_report(ReportSpec("retention", ("cohort", "size", *(f"week_{k}" for k in range(13))),
                           retention.retention_report,
                           "weekly acquisition cohorts: share returning in weeks 0..12"))
