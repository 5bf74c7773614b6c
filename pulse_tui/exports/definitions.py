"""Export definitions: per-field validation, create/update/delete, parsing, schedule maths.

Errors are ``ValidationError`` with one message per field; sub-fields of the JSON columns use
dotted keys (``filters.report``, ``filters.days``, ``filters.from``, ``filters.to``,
``filters.limit``, ``filters.steps``, ``filters.cohort_id``, ``scheduled.frequency``,
``scheduled.next_run``) and ``filters`` / ``scheduled`` for the object as a whole.

Schedule (``scheduled`` = ``{"frequency", "next_run"}``): a run is due when ``next_run`` <= now.
After a due run of a recurring export (completed or failed) ``next_run`` moves to the first
slot of its grid (``next_run + k * interval``) after now: missed runs run once, not once per
missed interval, and the time of day stays. A one-off export's ``next_run`` becomes null once
it completed; a failed one-off is retried ``ONCE_RETRY_MS`` later. A row whose ``scheduled`` is
NULL (other programs) is a one-off due at once while its status is pending.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping
from datetime import date
from typing import Any

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import control_conn
from pulse_tui.clock import Clock, parse_instant
from pulse_tui.errors import RowVanished, UsageError, ValidationError
from pulse_tui.exports.models import (
    FORMATS,
    FREQUENCIES,
    INTERVAL_MS,
    ONCE_RETRY_MS,
    TYPES,
    ExportDefinition,
    ExportSummary,
)
from pulse_tui.report_models import MAX_RANGE_DAYS
from pulse_tui.store import exports as store
from pulse_tui.store.cohorts import site_of as cohort_site_of
from pulse_tui.store.exports import ExportJobRow, ExportRun

MAX_NAME = 200
MAX_DAYS = 3660
MAX_LIMIT = 100_000

# the services' callers pass the Backends (a bare connection: the PULSE file itself)
Target = Backends | sqlite3.Connection
_UNSET: Any = object()


class ExportNotFound(RowVanished):
    """No export with that id (deleted by someone else?)."""


# ---------------------------------------------------------------- validation
def _json_object(value: object, field: str, errors: dict[str, str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except RecursionError:
            errors[field] = "nested too deeply"
            return None
        except ValueError as exc:
            errors[field] = f"not valid JSON ({exc.msg})"
            return None
        if value is None:
            return None
    if not isinstance(value, Mapping):
        errors[field] = "must be a JSON object"
        return None
    return dict(value)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _day(value: object) -> date | None:
    if not isinstance(value, str) or len(value.strip()) != 10:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def _check_range(f: dict[str, Any], out: dict[str, Any], errors: dict[str, str]) -> None:
    """``days`` N, or ``from``/``to`` dates; neither means the last 30 days."""
    has_days = "days" in f
    has_dates = "from" in f or "to" in f
    if has_days and has_dates:
        errors["filters.days"] = "give either days or from/to, not both"
        return
    if has_dates:
        start, end = _day(f.get("from")), _day(f.get("to"))
        if start is None:
            errors["filters.from"] = "a date YYYY-MM-DD is required"
        if end is None:
            errors["filters.to"] = "a date YYYY-MM-DD is required"
        if start and end:
            if start > end:
                errors["filters.from"] = f"{start.isoformat()} is after to {end.isoformat()}"
            elif (end - start).days >= MAX_RANGE_DAYS:
                errors["filters.from"] = (f"from {start.isoformat()} to {end.isoformat()} is "
                                          f"more than {MAX_RANGE_DAYS:,} days")
            out["from"], out["to"] = start.isoformat(), end.isoformat()
        return
    days = _int(f.get("days", 30))
    if days is None or not 1 <= days <= MAX_DAYS:
        errors["filters.days"] = f"a whole number of days from 1 to {MAX_DAYS}"
        return
    out["days"] = days


def check_filters(conn: sqlite3.Connection, export_type: str, site_id: str | None,
                  filters: dict[str, Any] | None, errors: dict[str, str]) -> dict[str, Any]:
    """The normalised filters of an export type; problems go to ``errors``."""
    from pulse_tui.store.reports import REPORTS

    f = dict(filters or {})
    out: dict[str, Any] = {}
    if export_type == "report":
        allowed = {"report", "days", "from", "to", "limit", "steps"}
        name = f.get("report")
        spec = REPORTS.get(name) if isinstance(name, str) else None
        if spec is None:
            errors["filters.report"] = (f"choose a report: {', '.join(REPORTS)}" if not name
                                        else f"unknown report {name!r} "
                                             f"(reports: {', '.join(REPORTS)})")
        else:
            out["report"] = name
        _check_range(f, out, errors)
        if "limit" in f:
            limit = _int(f["limit"])
            if spec is not None and "limit" not in spec.options:
                errors["filters.limit"] = f"report {name} takes no limit"
            elif limit is None or not 1 <= limit <= MAX_LIMIT:
                errors["filters.limit"] = f"a whole number from 1 to {MAX_LIMIT}"
            else:
                out["limit"] = limit
        steps_raw = f.get("steps")
        if steps_raw is not None:
            steps = ([s.strip() for s in steps_raw.split(",")] if isinstance(steps_raw, str)
                     else steps_raw)
            if spec is not None and "steps" not in spec.options:
                errors["filters.steps"] = f"report {name} takes no steps"
            elif (not isinstance(steps, list | tuple) or not steps
                  or not all(isinstance(s, str) and s.strip() for s in steps)):
                errors["filters.steps"] = "event types, at least one, none empty"
            else:
                out["steps"] = [s.strip() for s in steps]
        elif spec is not None and "steps" in spec.options:
            errors["filters.steps"] = f"report {name} needs steps (event types a,b,c)"
    elif export_type == "metrics":
        allowed = {"days", "from", "to"}
        _check_range(f, out, errors)
    elif export_type == "audience":
        allowed = {"cohort_id"}
        cid = f.get("cohort_id")
        if not isinstance(cid, str) or not cid.strip():
            errors["filters.cohort_id"] = "choose a cohort"
        else:
            cohort_site = cohort_site_of(conn, cid)
            if cohort_site is None:
                errors["filters.cohort_id"] = f"unknown cohort {cid!r}"
            elif site_id is not None and cohort_site != site_id:
                errors["filters.cohort_id"] = f"cohort {cid!r} belongs to site {cohort_site!r}"
            else:
                out["cohort_id"] = cid
    else:
        return f
    unknown = sorted(set(f) - allowed)
    if unknown:
        errors["filters"] = f"unknown key(s) for a {export_type} export: {', '.join(unknown)}"
    return out


def _check_scheduled(value: object, now_ms: int, errors: dict[str, str]) -> dict[str, Any]:
    sched = _json_object(value, "scheduled", errors)
    if "scheduled" in errors:
        return {}
    sched = sched or {}
    out = {k: v for k, v in sched.items() if k not in ("frequency", "next_run")}
    freq = sched.get("frequency", "once")
    if freq not in FREQUENCIES:
        errors["scheduled.frequency"] = f"one of {', '.join(FREQUENCIES)}"
    else:
        out["frequency"] = freq
    raw = sched.get("next_run")
    if raw is None or raw == "":
        out["next_run"] = now_ms
    else:
        nxt = _int(raw)
        if nxt is None and isinstance(raw, str):
            try:
                nxt = parse_instant(raw)
            except UsageError:
                nxt = None
        if nxt is None or nxt < 0:
            errors["scheduled.next_run"] = "epoch milliseconds or an ISO-8601 time"
        else:
            out["next_run"] = nxt
    return out


def validate(conn: sqlite3.Connection, now_ms: int, *, site_id: object, type: object,
             name: object, format: object, filters: object, scheduled: object
             ) -> dict[str, Any]:
    """Every field checked; the normalised column values, or ValidationError (all problems)."""
    errors: dict[str, str] = {}
    if not isinstance(site_id, str) or not site_id.strip():
        errors["site_id"] = "required"
    elif not store.site_exists(conn, site_id):
        errors["site_id"] = f"unknown site {site_id!r}"
    if type not in TYPES:
        errors["type"] = f"one of {', '.join(TYPES)}"
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "required"
    elif len(name.strip()) > MAX_NAME:
        errors["name"] = f"at most {MAX_NAME} characters"
    elif any(ord(c) < 32 for c in name):
        errors["name"] = "must not contain control characters"
    if format not in FORMATS:
        errors["format"] = f"one of {', '.join(FORMATS)}"
    f = _json_object(filters, "filters", errors)
    norm_filters: dict[str, Any] = {}
    if "filters" not in errors and type in TYPES:
        norm_filters = check_filters(conn, str(type), site_id if "site_id" not in errors
                                     else None, f, errors)
    sched = _check_scheduled(scheduled, now_ms, errors)
    if errors:
        raise ValidationError(errors)
    assert isinstance(name, str)
    return {"site_id": site_id, "type": type, "name": name.strip(), "format": format,
            "filters": json.dumps(norm_filters, ensure_ascii=False, sort_keys=True),
            "scheduled": json.dumps(sched, ensure_ascii=False)}


# ---------------------------------------------------------------- parsing stored rows
def parse_row(row: ExportJobRow) -> ExportDefinition:
    """A stored row as a definition; problems of rows other programs wrote go to ``problem``."""
    problems: list[str] = []
    errors: dict[str, str] = {}
    filters = _json_object(row.filters, "filters", errors) or {}
    sched: dict[str, Any] = {}
    if row.scheduled is None:
        frequency, next_run = "once", (_int(row.created_at) if (row.status or "pending") ==
                                      "pending" else None)
    else:
        sched = _json_object(row.scheduled, "scheduled", errors) or {}
        frequency = sched.get("frequency", "once")
        if frequency not in FREQUENCIES:
            problems.append(f"scheduled.frequency: unknown frequency {frequency!r}")
            frequency = "once"
        raw = sched.get("next_run")
        next_run = _int(raw) if raw is not None else None
        if raw is not None and next_run is None:
            problems.append(f"scheduled.next_run: not epoch milliseconds: {raw!r}")
    for field, message in errors.items():
        problems.append(f"{field}: {message}")
    if row.type not in TYPES:
        problems.append(f"type: unknown export type {row.type!r}")
    fmt = row.format or "csv"
    if fmt not in FORMATS:
        problems.append(f"format: unknown format {fmt!r}")
    extra = {k: v for k, v in sched.items() if k not in ("frequency", "next_run")}
    return ExportDefinition(
        id=row.id, site_id=row.site_id, type=row.type, name=row.name, format=fmt,
        filters=filters, frequency=frequency, next_run=next_run,
        status=row.status or "pending", file_url=row.file_url, error=row.error,
        created_at=_int(row.created_at) or 0, completed_at=_int(row.completed_at),
        scheduled_extra=extra,
        problem="; ".join(problems) or None)


def scheduled_json(defn: ExportDefinition, next_run: int | None) -> str:
    return json.dumps({**defn.scheduled_extra, "frequency": defn.frequency,
                       "next_run": next_run}, ensure_ascii=False)


def is_due(defn: ExportDefinition, now_ms: int) -> bool:
    return defn.next_run is not None and defn.next_run <= now_ms


def next_run_after(defn: ExportDefinition, now_ms: int, *, ok: bool, was_due: bool
                   ) -> int | None:
    """``next_run`` after a run at ``now_ms`` (see the module docstring)."""
    if defn.is_once:
        if ok:
            return None
        return now_ms + ONCE_RETRY_MS if was_due or defn.next_run is None else defn.next_run
    interval = INTERVAL_MS[defn.frequency]
    if defn.next_run is None:
        return now_ms + interval
    if defn.next_run > now_ms:  # a manual run before the slot keeps the schedule
        return defn.next_run
    missed = (now_ms - defn.next_run) // interval
    return defn.next_run + (missed + 1) * interval


# ---------------------------------------------------------------- CRUD
def get_export(conn: sqlite3.Connection, export_id: str) -> ExportDefinition:
    row = store.get_job(conn, export_id)
    if row is None:
        raise ExportNotFound(f"no export {export_id!r}")
    return parse_row(row)


def create_export(target: Target, clock: Clock, *, site_id: str, type: str,
                  name: str, format: str = "csv", filters: object = None,
                  scheduled: object = None, export_id: str | None = None) -> ExportDefinition:
    """Validate and insert a definition (status pending). ``scheduled`` defaults to a one-off
    due now; a missing ``next_run`` means now. Raises ValidationError; nothing saved then."""
    conn = control_conn(target)
    now = clock.now_ms()
    values = validate(conn, now, site_id=site_id, type=type, name=name, format=format,
                      filters=filters, scheduled=scheduled)
    eid = export_id or "exp_" + secrets.token_hex(8)
    store.insert_job(conn, {**values, "id": eid, "status": "pending", "created_at": now})
    return get_export(conn, eid)


def update_export(target: Target, clock: Clock, export_id: str, *,
                  name: str = _UNSET, type: str = _UNSET, format: str = _UNSET,
                  filters: object = _UNSET, scheduled: object = _UNSET) -> ExportDefinition:
    """Change fields of a definition (the others kept), validated as a whole. A failed export
    whose definition changes goes back to pending."""
    conn = control_conn(target)
    current = get_export(conn, export_id)
    given = {k: v for k, v in {"name": name, "type": type, "format": format,
                               "filters": filters, "scheduled": scheduled}.items()
             if v is not _UNSET}
    merged: dict[str, Any] = {
        "site_id": current.site_id, "type": current.type, "name": current.name,
        "format": current.format, "filters": current.filters,
        "scheduled": {**current.scheduled_extra, "frequency": current.frequency,
                      "next_run": current.next_run},
        **given,
    }
    values = validate(conn, clock.now_ms(), **merged)
    values.pop("site_id")
    if current.status == "failed":
        values["status"] = "pending"
        values["error"] = None
    if not store.update_job(conn, export_id, values):
        raise ExportNotFound(f"no export {export_id!r}")
    return get_export(conn, export_id)


def delete_export(target: Target, export_id: str, *, delete_files: bool = False,
                  export_dir: str | None = None) -> bool:
    """Delete a definition and its runs; with ``delete_files`` also the files its runs wrote
    (only those inside ``export_dir``). False when it did not exist."""
    conn = control_conn(target)
    from pulse_tui.exports.files import remove_export_files

    deleted, paths = store.delete_job(conn, export_id)
    if delete_files and export_dir is not None:
        remove_export_files(paths, export_dir)
    return deleted


def request_run(conn: sqlite3.Connection, clock: Clock, export_id: str) -> ExportDefinition:
    """Queue a run: the worker's exports job (every ~30 s) runs it on its next pass. A
    recurring export's ``next_run`` becomes now; the following run is then computed from now."""
    defn = get_export(conn, export_id)
    now = clock.now_ms()
    values: dict[str, Any] = {"scheduled": scheduled_json(defn, now)}
    if defn.status == "failed":
        values["status"] = "pending"
    store.update_job(conn, export_id, values)
    return get_export(conn, export_id)


def list_exports(target: Target, site_id: str | None = None) -> list[ExportSummary]:
    """Every definition (of a site) with its last run and last file, by site, name, id."""
    conn = control_conn(target)
    runs = store.last_runs(conn)
    files = store.last_files(conn)
    return [ExportSummary(parse_row(r), runs.get(r.id), files.get(r.id))
            for r in store.list_jobs(conn, site_id)]


def recent_runs(conn: sqlite3.Connection, export_id: str, limit: int = 20) -> list[ExportRun]:
    """Runs of one export, newest first."""
    return store.recent_runs(conn, export_id, limit)
