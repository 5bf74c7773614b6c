"""Data retention cleanup (SPEC 9): old events, sessions, rollups, export runs/files, deliveries.

Cutoffs are epoch ms from the Clock (PULSE_NOW); a retention of 0 days keeps that kind forever.

* Events with ``timestamp_ms`` < now - ``events_retention_days`` go, per site through the
  ``(site_id, timestamp_ms)`` index, ``BATCH_ROWS`` rows per short write transaction. In the same
  transaction the touched sessions are made consistent with the remaining events: a session
  with no event left is deleted, a partly cut one gets first/last event time and event count
  recomputed from its remaining events (user_id kept). Rows above the derived high-water mark
  (not yet folded into the rollups) and the row with the largest rowid are never deleted: the
  rollups would miss the former, and SQLite reuses rowids above the largest remaining one,
  which would hide new rows from ``derived.catch_up``. ``user_first_seen`` and
  ``acquisition_retention`` are never touched. Cohort membership is recomputed afterwards
  (``cohorts.refresh_all``).
* Rollups: rows of every ``rollup_*`` table with a ``day`` (or ``hour``) column before the UTC day
  of now - ``rollup_retention_days``, one table per transaction.
* Exports: runs started before now - ``exports_retention_days`` and their files (only files
  inside the export dir); completed one-off exports finished before that cutoff with all their
  runs; ``file_url`` pointing at a deleted file is cleared; temp files of interrupted writes.
* Webhook deliveries finished (delivered or failed) before the exports cutoff (job records).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pulse_tui.backend.interface import OutsideEvents
from pulse_tui.clock import DAY_MS, Clock
from pulse_tui.config import Settings
from pulse_tui.models import CleanupResult
from pulse_tui.store import cohorts, derived
from pulse_tui.store import exports as export_store
from pulse_tui.store.tx import write_transaction

log = logging.getLogger("pulse_tui.cleanup")

BATCH_ROWS = 5_000
PROTECTED_TABLES = frozenset({"user_first_seen", "acquisition_retention"})


# ---------------------------------------------------------------- events and sessions
def _sites_with_events(conn: sqlite3.Connection) -> list[str]:
    """Distinct site ids of events, one index seek per site (skip scan)."""
    rows = conn.execute(
        "WITH RECURSIVE s(id) AS (SELECT min(site_id) FROM events UNION ALL "
        "SELECT (SELECT min(site_id) FROM events WHERE site_id > s.id) FROM s "
        "WHERE s.id IS NOT NULL) SELECT id FROM s WHERE id IS NOT NULL")
    return [r[0] for r in rows]


def _delete_event_batch(conn: sqlite3.Connection, site_id: str, cutoff_ms: int,
                        batch: int) -> tuple[int, int, int]:
    """One write transaction: up to ``batch`` old events of the site and their sessions.
    Returns (events deleted, sessions deleted, sessions recomputed)."""
    with write_transaction(conn):
        # others' changes first; the rows deleted here are then forgotten by the watch
        # triggers (derived.discard_stale below): these days keep their rollups
        derived.catch_up(conn, int(time.time() * 1000))
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _cleanup_rows (r INTEGER PRIMARY KEY)")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _cleanup_sessions "
                     "(s TEXT PRIMARY KEY) WITHOUT ROWID")
        conn.execute("DELETE FROM temp._cleanup_rows")
        conn.execute("DELETE FROM temp._cleanup_sessions")
        top = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
        limit_rowid = min(derived.high_water_mark(conn), top - 1)
        conn.execute(
            "INSERT INTO temp._cleanup_rows (r) SELECT rowid FROM events "
            "WHERE site_id = ? AND timestamp_ms < ? AND rowid <= ? LIMIT ?",
            (site_id, cutoff_ms, limit_rowid, batch))
        conn.execute("INSERT OR IGNORE INTO temp._cleanup_sessions (s) SELECT session_id "
                     "FROM events WHERE rowid IN (SELECT r FROM temp._cleanup_rows)")
        events = conn.execute("DELETE FROM events WHERE rowid IN "
                              "(SELECT r FROM temp._cleanup_rows)").rowcount
        if events:  # a later rebuild keeps the rollups of these days (derived.history_days)
            derived.record_cleanup(conn, cutoff_ms)
            derived.discard_stale(conn)
        gone = conn.execute(
            "DELETE FROM sessions WHERE session_id IN (SELECT s FROM temp._cleanup_sessions) "
            "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.session_id = sessions.session_id "
            f"AND {derived.valid_event_sql('e')})"
        ).rowcount
        updated = conn.execute(
            "UPDATE sessions SET first_event_at = x.f, last_event_at = x.l, event_count = x.n "
            "FROM (SELECT session_id, min(timestamp_ms) AS f, max(timestamp_ms) AS l, "
            "count(*) AS n FROM events WHERE session_id IN "
            f"(SELECT s FROM temp._cleanup_sessions) AND {derived.VALID_EVENT} "
            "GROUP BY session_id) AS x "
            "WHERE sessions.session_id = x.session_id AND (sessions.first_event_at != x.f "
            "OR sessions.last_event_at != x.l OR sessions.event_count IS NOT x.n)"
        ).rowcount
        conn.execute("DELETE FROM temp._cleanup_rows")
        conn.execute("DELETE FROM temp._cleanup_sessions")
    return events, gone, updated


def delete_old_events(conn: sqlite3.Connection, cutoff_ms: int, *, batch: int = BATCH_ROWS,
                      should_stop: Callable[[], bool] | None = None) -> tuple[int, int, int]:
    """Events before ``cutoff_ms`` (event time) with their sessions, in short transactions.
    Returns (events deleted, sessions deleted, sessions recomputed)."""
    totals = [0, 0, 0]
    for site_id in _sites_with_events(conn):
        while True:
            if should_stop is not None and should_stop():
                return totals[0], totals[1], totals[2]
            n, gone, updated = _delete_event_batch(conn, site_id, cutoff_ms, batch)
            totals[0] += n
            totals[1] += gone
            totals[2] += updated
            if n < batch:
                break
    return totals[0], totals[1], totals[2]


# ---------------------------------------------------------------- rollups
def rollup_tables(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(table, time column) of every rollup_* table: ``day`` or, failing that, ``hour``."""
    out = []
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                "AND name LIKE 'rollup\\_%' ESCAPE '\\' ORDER BY name"):
        if name in PROTECTED_TABLES:
            continue
        cols = {r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')}
        if "day" in cols:
            out.append((name, "day"))
        elif "hour" in cols:
            out.append((name, "hour"))
        else:
            log.debug("rollup table %s has no day or hour column; left alone", name)
    return out


def delete_old_rollups(conn: sqlite3.Connection, before_day: int) -> int:
    """Rows of UTC days before ``before_day`` in every rollup table; one transaction per
    table with something to delete. Returns rows deleted."""
    total = 0
    for table, col in rollup_tables(conn):
        bound = before_day if col == "day" else before_day * 24
        if conn.execute(f'SELECT 1 FROM "{table}" WHERE {col} < ? LIMIT 1',
                        (bound,)).fetchone() is None:
            continue
        with write_transaction(conn):
            total += conn.execute(f'DELETE FROM "{table}" WHERE {col} < ?', (bound,)).rowcount
    return total


# ---------------------------------------------------------------- exports
def delete_old_exports(conn: sqlite3.Connection, cutoff_ms: int, export_dir: Path
                       ) -> tuple[int, int, int, int]:
    """Old runs with their files and completed one-off exports.
    Returns (runs deleted, files deleted, one-off exports deleted, temp files deleted)."""
    from pulse_tui.exports.files import remove_export_files, remove_stale_temp_files

    one_offs = [j.id for j in export_store.finished_one_off_jobs(conn, cutoff_ms)]
    runs = export_store.runs_of(conn, one_offs)
    seen = {r[0] for r in runs}
    runs += [r for r in export_store.old_runs(conn, cutoff_ms) if r[0] not in seen]
    paths = [p for _, _, p in runs if p]
    n_files = remove_export_files(paths, export_dir)
    gone_urls = []
    for p in paths:
        try:
            gone_urls.append(Path(p).resolve().as_uri())
        except (OSError, ValueError):
            continue
    n_runs = export_store.delete_runs(conn, [r[0] for r in runs], gone_urls)
    n_jobs = export_store.delete_jobs(conn, one_offs)
    return n_runs, n_files, n_jobs, remove_stale_temp_files(export_dir)


# ---------------------------------------------------------------- the pass
def refresh_cohorts(conn: sqlite3.Connection, clock: Clock, *,
                    events: OutsideEvents | None = None) -> int:
    """Every criteria cohort recomputed after events were deleted (who lost their events);
    how many. A failure is logged, never fails the pass: the periodic job refreshes too."""
    try:
        return len(cohorts.refresh_all(conn, clock, events=events))
    except Exception:  # noqa: BLE001 - membership is also refreshed by its own job
        log.exception("cohort refresh after cleanup failed")
        return 0


def run_cleanup(conn: sqlite3.Connection, settings: Settings, clock: Clock, *,
                batch: int = BATCH_ROWS, should_stop: Callable[[], bool] | None = None
                ) -> CleanupResult:
    """One cleanup pass (see the module docstring); does nothing when cleanup is disabled."""
    if not settings.cleanup_enabled:
        return CleanupResult(enabled=False)
    from pulse_tui.store.webhooks import prune_deliveries

    now = clock.now_ms()
    counts: dict[str, Any] = {}
    if settings.events_retention_days > 0:
        cutoff = now - settings.events_retention_days * DAY_MS
        counts["events_cutoff_ms"] = cutoff
        ev, gone, updated = delete_old_events(conn, cutoff, batch=batch, should_stop=should_stop)
        counts.update(events=ev, sessions_deleted=gone, sessions_updated=updated)
        if ev:
            counts["cohorts_refreshed"] = refresh_cohorts(conn, clock)
    if settings.rollup_retention_days > 0:
        before_day = (now - settings.rollup_retention_days * DAY_MS) // DAY_MS
        counts["rollup_cutoff_day"] = before_day
        counts["rollup_rows"] = delete_old_rollups(conn, before_day)
    if settings.exports_retention_days > 0:
        cutoff = now - settings.exports_retention_days * DAY_MS
        counts["exports_cutoff_ms"] = cutoff
        runs, n_files, jobs, temps = delete_old_exports(conn, cutoff, Path(settings.export_dir))
        counts.update(export_runs=runs, export_files=n_files, one_off_exports=jobs,
                      temp_files=temps)
        counts["deliveries"] = prune_deliveries(conn, cutoff)
    result = CleanupResult(**counts)
    log.info("cleanup: %s", result.describe())
    return result
