"""Running exports: content of report/metrics/audience exports, runs, due passes, the job.

A run: claim (one write transaction: a 'running' export_runs row, export status running),
compute the rows, write the file atomically, then one write transaction records the run
(completed with file, rows; or failed with a one-line error) and the export's status, error,
``file_url`` (latest file) and next ``next_run`` (definitions.py). export.completed webhooks are
queued after a completed run. Failures: a recurring export is retried at its next interval, a
one-off ``ONCE_RETRY_MS`` later, either at once with "run now". A run left 'running' by a
process that died is marked failed ("interrupted") when the worker's exports job starts, or
after ``STALE_RUN_MS``; its export stays due (next_run only moves when a run finishes), so it
runs again.

The services here take the :class:`~pulse_tui.backend.interface.Backends` (a bare SQLite
connection means "events in that file"): report, metrics and audience rows are read through
``EventsBackend``; definitions and runs are written to the PULSE SQLite file (``conn``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import backends_on
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.errors import PulseError, ValidationError
from pulse_tui.exports import definitions as defs
from pulse_tui.exports import files
from pulse_tui.exports.models import STALE_RUN_MS, ExportDefinition, ExportRunResult
from pulse_tui.report_models import DateRange
from pulse_tui.store import exports as store
from pulse_tui.store.connection import database_file
from pulse_tui.store.tx import write_transaction

log = logging.getLogger("pulse_tui.exports")

AUDIENCE_COLUMNS = ("user_id", "joined_at", "last_seen_at", "name", "email", "company", "plan",
                    "user_created_at", "user_updated_at")
METRICS_COLUMNS = ("day", "events", "users", "sessions")
TOTAL_LABEL = "total"


@dataclass(frozen=True, slots=True)
class ExportContent:
    """What a run writes: the rendered text and how many data rows it holds."""

    text: str
    rows: int


# ---------------------------------------------------------------- content
def export_range(filters: dict[str, Any], clock: Clock) -> DateRange:
    from pulse_tui.store import reports

    if "from" in filters or "to" in filters:
        return reports.make_range(clock, filters.get("from"), filters.get("to"))
    return reports.default_range(clock, int(filters.get("days", reports.DEFAULT_DAYS)))


Target = Backends | sqlite3.Connection  # a bare connection: events in that SQLite file


def build_content(target: Target, defn: ExportDefinition, clock: Clock) -> ExportContent:
    """Rows of the export rendered in its format (PulseError when the definition is bad)."""
    from pulse_tui.store import reports

    b = backends_on(target)
    conn, events = b.conn, b.events
    errors: dict[str, str] = {}
    filters = defs.check_filters(conn, defn.type, defn.site_id, defn.filters, errors)
    if defn.problem:
        raise PulseError(f"invalid definition: {defn.problem}")
    if errors:
        raise PulseError(f"invalid definition: {ValidationError(errors)}")
    now = clock.now_ms()
    if defn.type == "report":
        spec = reports.REPORTS[filters["report"]]
        rng = export_range(filters, clock)
        rows = events.report(spec.name, defn.site_id, rng, now_ms=now,
                             limit=int(filters.get("limit", reports.DEFAULT_LIMIT)),
                             steps=tuple(filters.get("steps", ())))
        if defn.format == "json":
            return ExportContent(files.render_json(files.records(spec.columns, rows)), len(rows))
        return ExportContent(files.render_csv(spec.columns, rows), len(rows))
    if defn.type == "metrics":
        rng = export_range(filters, clock)
        daily = [(r.day, r.events, r.users, r.sessions)
                 for r in events.daily(defn.site_id, rng)]
        t = events.totals(defn.site_id, rng)
        if defn.format == "json":
            data = {"from": rng.start.isoformat(), "to": rng.end.isoformat(),
                    "daily": files.records(METRICS_COLUMNS, daily),
                    "totals": {"events": t.events, "users": t.users, "sessions": t.sessions}}
            return ExportContent(files.render_json(data), len(daily))
        body = [*daily, (TOTAL_LABEL, t.events, t.users, t.sessions)]
        return ExportContent(files.render_csv(METRICS_COLUMNS, body), len(daily))
    # audience: the cohort's active members with their users rows
    members = events.cohort_members(filters["cohort_id"], active_only=True)
    users = events.users_rows(defn.site_id, [m.user_id for m in members
                                             if m.user_id is not None])
    empty = (None,) * 6
    rows = [(m.user_id, m.joined_at, m.last_seen_at,
             *users.get(m.user_id or "", empty)) for m in members]
    if defn.format == "json":
        return ExportContent(files.render_json(files.records(AUDIENCE_COLUMNS, rows)), len(rows))
    return ExportContent(files.render_csv(AUDIENCE_COLUMNS, rows), len(rows))


# ---------------------------------------------------------------- runs
def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, PulseError | files.ExportWriteError):
        text = f"{type(exc).__name__}: {text}"
    return text.splitlines()[0][:300]


def _claim(conn: sqlite3.Connection, export_id: str, now: int, *, only_if_due: bool
           ) -> tuple[ExportDefinition, int] | str:
    """In one write transaction: the definition and a new run id, or why not."""
    with write_transaction(conn):
        row = store.get_job(conn, export_id)
        if row is None:
            return f"no export {export_id!r}"
        defn = defs.parse_row(row)
        running = store.running_run(conn, export_id)
        if running is not None:
            if running.started_at >= now - STALE_RUN_MS:
                return "already running"
            store.interrupt_runs(conn, now, "interrupted (the process running it stopped)",
                                 export_id=export_id)
        if only_if_due and not _due(defn, now):
            return "not due"
        return defn, store.start_run(conn, export_id, now)


def _due(defn: ExportDefinition, now: int) -> bool:
    """Due by its schedule, or a definition another program wrote that cannot be used and
    is not marked failed yet (it runs once to say so, instead of staying pending silently)."""
    if defn.problem is not None:
        return defn.status != "failed"
    return defs.is_due(defn, now)


def run_export(target: Target, export_id: str, settings: Settings, clock: Clock, *,
               only_if_due: bool = False) -> ExportRunResult:
    """Run one export now (the pane's synchronous "run now", and each due run): see the
    module docstring. Never raises for a failing export: the result says failed and why."""
    b = backends_on(target)
    conn = b.conn
    now = clock.now_ms()
    claimed = _claim(conn, export_id, now, only_if_due=only_if_due)
    if isinstance(claimed, str):
        return ExportRunResult(export_id, "skipped", error=claimed)
    defn, run_id = claimed
    was_due = _due(defn, now)
    path: Path | None = None
    rows: int | None = None
    error: str | None = None
    try:
        content = build_content(b, defn, clock)
        rows = content.rows
        name = files.file_name(defn.site_id, defn.type, defn.name, now, defn.format)
        path = files.write_atomic(Path(settings.export_dir), name, content.text)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the run
        error = _one_line(exc)
        if not isinstance(exc, PulseError | files.ExportWriteError):
            log.exception("export %s (%s) failed", defn.id, defn.name)
    finished = clock.now_ms()
    ok = error is None
    next_run = defs.next_run_after(defn, now, ok=ok, was_due=was_due)
    scheduled: object = defs.scheduled_json(defn, next_run)
    if defn.problem:  # keep what the other program wrote; it is not run again until fixed
        stored = store.get_job(conn, defn.id)
        scheduled, next_run = (stored.scheduled if stored else None), None
    file_url = path.resolve().as_uri() if path is not None else None
    status = "completed" if ok else "failed"
    try:
        store.finish_run(conn, run_id, defn.id, status=status, finished_at=finished,
                         file_path=str(path) if path else None, file_url=file_url,
                         rows=rows if ok else None, error=error,
                         scheduled=scheduled)  # type: ignore[arg-type]
    except sqlite3.Error:
        # the file stays; the run stays 'running' and is recovered as interrupted later
        log.exception("cannot record the end of export run %s", run_id)
        raise
    if ok:
        log.info("export %s (%s): %d rows -> %s", defn.id, defn.name, rows or 0, path)
        try:
            from pulse_tui.notify.delivery import notify_export_completed

            notify_export_completed(conn, defn.id, finished, file_url=file_url, rows=rows)
        except Exception:  # noqa: BLE001 - a notification problem never fails the export
            log.exception("cannot queue export.completed for %s", defn.id)
    else:
        log.warning("export %s (%s) failed: %s", defn.id, defn.name, error)
    return ExportRunResult(defn.id, status, run_id, str(path) if path else None, file_url,
                           rows if ok else None, error, next_run, now, finished)


def due_export_ids(conn: sqlite3.Connection, now_ms: int) -> list[str]:
    """Exports whose next_run has come, oldest next_run first (running ones included: the
    claim skips or recovers them)."""
    due = [d for d in (defs.parse_row(r) for r in store.list_jobs(conn)) if _due(d, now_ms)]
    due.sort(key=lambda d: (d.next_run or 0, str(d.id)))
    return [d.id for d in due]


def run_due_results(target: Target, settings: Settings, clock: Clock, *,
                    should_stop: Callable[[], bool] | None = None) -> list[ExportRunResult]:
    b = backends_on(target)
    results = []
    for export_id in due_export_ids(b.conn, clock.now_ms()):
        if should_stop is not None and should_stop():
            break
        result = run_export(b, export_id, settings, clock, only_if_due=True)
        if result.status != "skipped" or result.error == "already running":
            results.append(result)
    return results


def describe(results: list[ExportRunResult]) -> str:
    if not results:
        return "no exports due"
    done = [r for r in results if r.ok]
    failed = [r for r in results if r.status == "failed"]
    busy = [r for r in results if r.status == "skipped"]
    text = f"ran {len(done) + len(failed)} export(s): {len(done)} completed"
    if failed:
        text += f", {len(failed)} failed ({failed[0].export_id}: {failed[0].error})"
    if busy:
        text += f", {len(busy)} still running"
    return text


def run_due(target: Target, settings: Settings, clock: Clock, *,
            should_stop: Callable[[], bool] | None = None) -> str:
    """Run every due export once; one line of outcome for the Jobs pane and the log."""
    return describe(run_due_results(target, settings, clock, should_stop=should_stop))


def recover_interrupted(conn: sqlite3.Connection, clock: Clock) -> int:
    """Runs left 'running' by a process that died: failed ("interrupted"). Only the worker
    (which holds the lease, so no other worker is exporting) calls this, at its start."""
    return store.interrupt_runs(conn, clock.now_ms(),
                                "interrupted (the worker stopped during the run)")


_recovered: set[str] = set()


def _db_key(conn: sqlite3.Connection) -> str:
    return database_file(conn)


def exports_job(ctx: Any) -> str:
    """The worker's periodic job (every ~30 s): run due exports."""
    if ctx.settings is None:
        return "no settings: export dir unknown"
    key = _db_key(ctx.conn)
    text = ""
    if key not in _recovered:
        _recovered.add(key)
        n = recover_interrupted(ctx.conn, ctx.clock)
        if n:
            text = f"{n} interrupted run(s) marked failed; "
    return text + run_due(ctx.backends, ctx.settings, ctx.clock, should_stop=ctx.should_stop)


__all__ = ["AUDIENCE_COLUMNS", "ExportContent", "METRICS_COLUMNS", "build_content",
           "due_export_ids", "exports_job", "recover_interrupted", "run_due", "run_due_results",
           "run_export"]
