"""The reports computed straight from raw events: the check of the rollups and the benchmark's
baseline (slow on big files; the product reads pulse_tui.store.reports). Usable rows only
(``derived.VALID_EVENT``), like every other reader."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import timedelta

from pulse_tui.report_models import NONE_LABEL, DateRange
from pulse_tui.store import reports
from pulse_tui.store.derived import VALID_EVENT

_TOP = reports.TOP_DIMENSIONS


def raw_report(conn: sqlite3.Connection, name: str, site_id: str, rng: DateRange, *,
               limit: int = reports.DEFAULT_LIMIT, steps: Sequence[str] = ()
               ) -> list[tuple[object, ...]]:
    """Rows of report ``name`` (tuples in column order) computed from ``events`` alone."""
    base = f"FROM events WHERE site_id = ? AND timestamp_ms BETWEEN ? AND ? AND {VALID_EVENT}"
    args = (site_id, rng.start_ms, rng.end_ms)
    if name == "daily":
        got = {
            day: (ev, us, se) for day, ev, us, se in conn.execute(
                "SELECT timestamp_ms / 86400000, count(*), count(DISTINCT user_id), "
                f"count(DISTINCT session_id) {base} GROUP BY 1", args)
        }
        return [(rng.start + timedelta(days=i), *got.get(rng.first_day + i, (0, 0, 0)))
                for i in range(rng.days)]
    if name == "breakdown":
        return [tuple(r) for r in conn.execute(
            f"SELECT event_type, count(*) AS n, count(DISTINCT user_id) {base} "
            "GROUP BY event_type ORDER BY n DESC, event_type", args)]
    if name in _TOP:
        col = _TOP[name]
        return [tuple(r) for r in conn.execute(
            f"SELECT CASE WHEN {col} IS NULL OR {col} = '' THEN '{NONE_LABEL}' ELSE {col} END "
            f"AS v, count(*) AS n, count(DISTINCT user_id) {base} GROUP BY v "
            "ORDER BY n DESC, v LIMIT ?", (*args, limit))]
    if name == "funnel":
        out: list[tuple[object, ...]] = []
        times: dict[str, int] | None = None
        for k, step in enumerate(steps, start=1):
            rows = conn.execute(
                f"SELECT user_id, timestamp_ms {base} AND event_type = ? "
                "AND user_id IS NOT NULL ORDER BY timestamp_ms", (*args, step)).fetchall()
            nxt: dict[str, int] = {}
            for user, ts in rows:
                if user in nxt:
                    continue
                if times is None or (user in times and ts > times[user]):
                    nxt[user] = ts
            times = nxt
            out.append((k, step, len(times)))
        return out
    if name == "totals":
        ev, us, se = conn.execute(
            f"SELECT count(*), count(DISTINCT user_id), count(DISTINCT session_id) {base}",
            args).fetchone()
        return [(ev, us, se)]
    raise ValueError(f"no raw version of report {name!r}")
