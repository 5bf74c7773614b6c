"""SQL for cohorts: CRUD with optimistic saves, member previews, membership refresh, the report.

Membership (SPEC 8/9). ``refresh_cohort`` evaluates the compiled criteria (one query, see
``pulse_tui.cohorts.compiler``) into a temp table without holding the write lock, then in one
short write transaction upserts ``cohort_members``: matching users get ``is_active`` 1 (rows
keep their ``member_id``), users who stop matching keep their row with ``is_active`` 0. Static
cohorts are never recomputed. ``member_id`` of a new row is :func:`member_id`, the importer's
default (``pulse_tui.ingest.parse.member_id_for``: "m_" + sha256 of cohort_id and user_id).

Change detection. After each refresh a fingerprint of the cohort's definition (site, kind,
criteria, updated_at) is stored in ``pulse_meta`` under ``cohort_fp:<cohort_id>``; cohorts that
other programs insert or change directly in the database have no or a different fingerprint,
and :func:`refresh_changed` (a periodic worker job) recomputes them. It also recomputes every
criteria cohort when the data moved (new events or users rows in whichever store holds them:
the events backend's ``data_mark``; a new UTC day) since the last full refresh, at most once per :data:`FULL_REFRESH_MIN_INTERVAL_S`.

Write functions open their own ``BEGIN IMMEDIATE`` transaction, or join the caller's when the
connection is already in one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from pulse_tui.backend.interface import OutsideEvents
from pulse_tui.clock import DAY_MS, Clock
from pulse_tui.cohorts.compiler import compile_members
from pulse_tui.cohorts.criteria import (
    EMPTY_CRITERIA,
    CriteriaError,
    Group,
    Problem,
    parse,
    validate,
)
from pulse_tui.errors import CohortNotFound, ConflictError, NameTaken, ValidationError
from pulse_tui.models import (
    Cohort,
    CohortPreview,
    CohortSummary,
    Member,
    RefreshResult,
    member_id_for,
)
from pulse_tui.store import derived, retention
from pulse_tui.store import events as events_store
from pulse_tui.store.tx import write_transaction as _write

log = logging.getLogger(__name__)

KINDS = ("criteria", "static")
STATUSES = ("active", "archived")
MAX_NAME = 200
FP_PREFIX = "cohort_fp:"
DATA_MARK_KEY = "cohort_data_mark"
FULL_REFRESH_AT_KEY = "cohort_full_refresh_at"
FULL_REFRESH_MIN_INTERVAL_S = 60

STATIC_CRITERIA = json.dumps({"type": "and", "conditions": []})

# called with (conn, clock, changed cohort ids) after a refresh changed memberships, outside
# any transaction, and ``events=`` the events backend when the events are not in this file;
# exceptions are logged, never raised. Retention snapshots follow membership changes (SPEC 5).
MembershipHook = Callable[..., None]
MEMBERSHIP_CHANGED_HOOKS: list[MembershipHook] = [retention.on_membership_changed]


# ---------------------------------------------------------------------------- dataclasses
# ---------------------------------------------------------------------------- helpers
def member_id(cohort_id: str, user_id: str) -> str:
    """The stable cohort_members.member_id of (cohort, user): the importer's default
    (``"m_" + sha256(f"{cohort_id}\\x1f{user_id}").hexdigest()[:32]``), so an imported row and a
    computed one for the same user are the same row."""
    return member_id_for(cohort_id, user_id)


_COLS = ("cohort_id, site_id, name, description, criteria, coalesce(status, 'active'), "
         "coalesce(kind, 'criteria'), created_at, updated_at")


def _cohort(row: tuple[Any, ...]) -> Cohort:
    cid, site, name, desc, text, status, kind, created, updated = row
    group: Group | None
    problems: tuple[Problem, ...] = ()
    try:
        group = parse(text, allow_empty=(kind == "static"))
    except CriteriaError as exc:
        group, problems = None, tuple(exc.problems)
    return Cohort(cid, site, name, desc, text, group, problems, status, kind, created, updated)


def _fingerprint(site_id: str, kind: str, criteria: str, updated_at: int) -> str:
    raw = f"{site_id}\x1f{kind}\x1f{updated_at}\x1f{criteria}"
    return hashlib.sha1(raw.encode()).hexdigest()[:20]


def _check_fields(conn: sqlite3.Connection, *, name: str | None = None,
                  site_id: str | None = None, kind: str | None = None,
                  status: str | None = None) -> None:
    errors: dict[str, str] = {}
    if name is not None:
        if not name.strip():
            errors["name"] = "a name is required"
        elif len(name) > MAX_NAME:
            errors["name"] = f"longer than {MAX_NAME} characters"
    if site_id is not None and not conn.execute(
            "SELECT 1 FROM sites WHERE id = ?", (site_id,)).fetchone():
        errors["site_id"] = f"unknown site {site_id!r}"
    if kind is not None and kind not in KINDS:
        errors["kind"] = "kind must be criteria or static"
    if status is not None and status not in STATUSES:
        errors["status"] = "status must be active or archived"
    if errors:
        raise ValidationError(errors)


def _criteria_text(kind: str, criteria: object) -> tuple[Group, str]:
    if kind == "static":
        return EMPTY_CRITERIA, EMPTY_CRITERIA.to_text()
    group = parse(criteria)
    return group, group.to_text()


def _bump(now_ms: int, previous: int) -> int:
    """A new updated_at that always differs from the previous one (fixed clocks too)."""
    return max(now_ms, previous + 1)


# ---------------------------------------------------------------------------- reads
def get_cohort(conn: sqlite3.Connection, cohort_id: str) -> Cohort:
    row = conn.execute(f"SELECT {_COLS} FROM cohorts WHERE cohort_id = ?",
                       (cohort_id,)).fetchone()
    if row is None:
        raise CohortNotFound(f"cohort {cohort_id!r} does not exist (deleted by someone else?)")
    return _cohort(row)


def site_of(conn: sqlite3.Connection, cohort_id: str) -> str | None:
    """The site of a cohort, None when there is no such cohort."""
    row = conn.execute("SELECT site_id FROM cohorts WHERE cohort_id = ?", (cohort_id,)).fetchone()
    return None if row is None else row[0]


def list_cohorts(conn: sqlite3.Connection, site_id: str | None = None, *,
                 include_archived: bool = True) -> list[CohortSummary]:
    """Cohorts (of one site, or all) by name then id, with their active member counts; a
    cohort whose stored criteria are unusable is listed with ``problem`` saying why."""
    sql = ("SELECT c.cohort_id, c.site_id, c.name, coalesce(c.status, 'active'), "
           "coalesce(c.kind, 'criteria'), (SELECT count(*) FROM cohort_members m "
           "WHERE m.cohort_id = c.cohort_id AND m.is_active = 1), c.updated_at, c.criteria "
           "FROM cohorts c WHERE 1")
    params: list[object] = []
    if site_id is not None:
        sql += " AND c.site_id = ?"
        params.append(site_id)
    if not include_archived:
        sql += " AND coalesce(c.status, 'active') <> 'archived'"
    sql += " ORDER BY c.name, c.cohort_id"
    out = []
    for cid, site, name, status, kind, members, updated, text in conn.execute(sql, params):
        problem = None
        if kind not in ("static", "criteria"):
            problem = f"unknown kind {kind!r}"
        elif kind == "criteria":
            problems = validate(text)
            problem = str(problems[0]) if problems else None
        out.append(CohortSummary(_text(cid), _text(site), _text(name, "(no name)"),
                                 _text(status), _text(kind), members,
                                 updated if isinstance(updated, int) else 0, problem))
    return out


def _text(value: object, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def list_members(conn: sqlite3.Connection, cohort_id: str, *, active_only: bool = True,
                 limit: int | None = None, offset: int = 0) -> list[Member]:
    """Members by joined_at then user_id."""
    sql = ("SELECT user_id, joined_at, last_seen_at, is_active FROM cohort_members "
           "WHERE cohort_id = ?")
    if active_only:
        sql += " AND is_active = 1"
    sql += " ORDER BY joined_at, user_id LIMIT ? OFFSET ?"
    rows = conn.execute(sql, (cohort_id, -1 if limit is None else limit, offset))
    return [Member(u, j, s, bool(a)) for u, j, s, a in rows]


def evaluate(conn: sqlite3.Connection, site_id: str, criteria: Group, now_ms: int
             ) -> list[tuple[str, int, int]]:
    """The (user_id, joined_at, last_seen_at) matching ``criteria`` on the site right now,
    from the events in this file."""
    derived.fold_pending(conn)  # candidates come from user_first_seen
    sql, params = compile_members(criteria, site_id, now_ms,
                                  full_scan=_site_is_large(conn, site_id))
    return conn.execute(sql, params).fetchall()


def _site_is_large(conn: sqlite3.Connection, site_id: str) -> bool:
    """Whether the site holds a quarter or more of all users with events (then one sequential
    scan of events beats index lookups for url/referrer conditions)."""
    total, mine = conn.execute("SELECT count(*), coalesce(sum(site_id = ?), 0) "
                               "FROM user_first_seen", (site_id,)).fetchone()
    return bool(total) and mine * 4 >= total


def preview(conn: sqlite3.Connection, clock: Clock, site_id: str, criteria: object, *,
            sample: int = 10) -> CohortPreview:
    """Member count and the ``sample`` most recently seen members, writing nothing.

    Raises CriteriaError (every problem with its path) when the criteria are invalid.
    """
    group = parse(criteria)
    rows = evaluate(conn, site_id, group, clock.now_ms())
    rows.sort(key=lambda r: (-r[2], r[0]))
    return CohortPreview(len(rows), tuple(Member(u, j, s, True) for u, j, s in rows[:sample]))


def cohorts_report(conn: sqlite3.Connection, site_id: str) -> list[dict[str, object]]:
    """The ``cohorts`` report (SPEC 8): every cohort of the site, archived included, by name
    then id; members = active rows of cohort_members."""
    return [
        {"cohort_id": c.cohort_id, "name": c.name, "status": c.status, "members": c.members}
        for c in list_cohorts(conn, site_id)
    ]


def report_rows(conn: sqlite3.Connection, params: Any) -> list[dict[str, object]]:
    """``cohorts_report`` for the report registry (``params.site_id``; range ignored)."""
    return cohorts_report(conn, params.site_id)


# ---------------------------------------------------------------------------- writes
def insert_cohort(conn: sqlite3.Connection, *, cohort_id: str, site_id: str, name: str,
                  description: str | None, criteria_text: str, status: str, kind: str,
                  now_ms: int) -> None:
    """The one statement that adds a cohorts row (inside the caller's transaction); NameTaken
    when the cohort_id is already in use."""
    try:
        conn.execute(
            "INSERT INTO cohorts (cohort_id, site_id, name, description, criteria, status, "
            "created_at, updated_at, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cohort_id, site_id, name, description, criteria_text, status, now_ms, now_ms, kind),
        )
    except sqlite3.IntegrityError as exc:
        raise NameTaken(f"a cohort with id {cohort_id!r} already exists") from exc


def create_cohort(conn: sqlite3.Connection, clock: Clock, *, site_id: str, name: str,
                  criteria: object = None, description: str | None = None,
                  kind: str = "criteria", status: str = "active",
                  cohort_id: str | None = None, refresh: bool = True,
                  events: OutsideEvents | None = None) -> Cohort:
    """Validate and insert a cohort, then compute its membership (criteria cohorts; ``events``:
    the events backend when the events are not in this file, see :func:`refresh_cohort`).

    Raises ValidationError (name, site_id, kind, status) or CriteriaError; nothing is saved then.
    A static cohort's criteria are always the empty group.
    """
    _check_fields(conn, name=name, site_id=site_id, kind=kind, status=status)
    _, text = _criteria_text(kind, criteria)
    cid = cohort_id or uuid.uuid4().hex
    now = clock.now_ms()
    with _write(conn):
        insert_cohort(conn, cohort_id=cid, site_id=site_id, name=name.strip(),
                      description=description, criteria_text=text, status=status, kind=kind,
                      now_ms=now)
    if refresh and kind == "criteria":
        refresh_cohort(conn, clock, cid, events=events)
    return get_cohort(conn, cid)


_UNSET: Any = object()


def update_cohort(conn: sqlite3.Connection, clock: Clock, cohort_id: str, *,
                  expected_updated_at: int, name: str | None = None,
                  description: str | None = _UNSET, criteria: object = None,
                  refresh: bool = True, events: OutsideEvents | None = None) -> Cohort:
    """Save changes if nobody else saved since ``expected_updated_at`` (else ConflictError),
    then recompute membership. Fields left None (description: not given) are unchanged."""
    current = get_cohort(conn, cohort_id)
    _check_fields(conn, name=name)
    text = current.criteria_text
    if criteria is not None and current.kind == "criteria":
        _, text = _criteria_text(current.kind, criteria)
    new_name = name.strip() if name is not None else current.name
    new_desc = current.description if description is _UNSET else description
    with _write(conn):
        _save(conn, cohort_id, expected_updated_at, clock.now_ms(),
              "name = ?, description = ?, criteria = ?", (new_name, new_desc, text))
    if refresh and current.kind == "criteria":
        refresh_cohort(conn, clock, cohort_id, events=events)
    return get_cohort(conn, cohort_id)


def _save(conn: sqlite3.Connection, cohort_id: str, expected: int | None, now_ms: int,
          assignments: str, params: tuple[object, ...]) -> int:
    """UPDATE with the optimistic check, inside the caller's transaction; new updated_at."""
    row = conn.execute("SELECT updated_at FROM cohorts WHERE cohort_id = ?",
                       (cohort_id,)).fetchone()
    if row is None:
        raise CohortNotFound(f"cohort {cohort_id!r} does not exist (deleted by someone else?)")
    if expected is not None and row[0] != expected:
        raise ConflictError(
            f"cohort {cohort_id!r} was changed by someone else since you opened it; "
            "reload it and apply your changes again")
    updated = _bump(now_ms, row[0])
    conn.execute(f"UPDATE cohorts SET {assignments}, updated_at = ? WHERE cohort_id = ?",
                 (*params, updated, cohort_id))
    return updated


def set_status(conn: sqlite3.Connection, clock: Clock, cohort_id: str, status: str, *,
               expected_updated_at: int | None = None) -> Cohort:
    """Archive (status 'archived') or restore ('active') a cohort."""
    _check_fields(conn, status=status)
    with _write(conn):
        _save(conn, cohort_id, expected_updated_at, clock.now_ms(), "status = ?", (status,))
    return get_cohort(conn, cohort_id)


def archive_cohort(conn: sqlite3.Connection, clock: Clock, cohort_id: str, *,
                   expected_updated_at: int | None = None) -> Cohort:
    return set_status(conn, clock, cohort_id, "archived",
                      expected_updated_at=expected_updated_at)


def restore_cohort(conn: sqlite3.Connection, clock: Clock, cohort_id: str, *,
                   expected_updated_at: int | None = None) -> Cohort:
    return set_status(conn, clock, cohort_id, "active", expected_updated_at=expected_updated_at)


def duplicate_cohort(conn: sqlite3.Connection, clock: Clock, cohort_id: str, *,
                     name: str | None = None, refresh: bool = True,
                     events: OutsideEvents | None = None
                     ) -> Cohort:
    """A copy named "<name> (copy)"; a static cohort's members are copied too."""
    src = get_cohort(conn, cohort_id)
    new_name = name if name is not None else f"{src.name} (copy)"[:MAX_NAME]
    _check_fields(conn, name=new_name)
    cid = uuid.uuid4().hex
    now = clock.now_ms()
    with _write(conn):
        insert_cohort(conn, cohort_id=cid, site_id=src.site_id, name=new_name.strip(),
                      description=src.description, criteria_text=src.criteria_text,
                      status="active", kind=src.kind, now_ms=now)
        if src.kind == "static":
            _register_member_id(conn)
            conn.execute(
                "INSERT OR IGNORE INTO cohort_members (member_id, cohort_id, session_id, "
                "user_id, joined_at, last_seen_at, is_active) "
                "SELECT pulse_member_id(?, coalesce(user_id, member_id)), ?, session_id, "
                "user_id, joined_at, last_seen_at, is_active "
                "FROM cohort_members WHERE cohort_id = ?",
                (cid, cid, cohort_id),
            )
    if refresh and src.kind == "criteria":
        refresh_cohort(conn, clock, cid, events=events)
    return get_cohort(conn, cid)


def delete_cohort(conn: sqlite3.Connection, cohort_id: str, *,
                  expected_updated_at: int | None = None) -> bool:
    """Delete the cohort, its members and its retention snapshots in one transaction.

    Returns False when it did not exist; ConflictError when someone saved it meanwhile.
    """
    with _write(conn):
        row = conn.execute("SELECT updated_at FROM cohorts WHERE cohort_id = ?",
                           (cohort_id,)).fetchone()
        if row is None:
            return False
        stored = row[0] if isinstance(row[0], int) else 0  # as list_cohorts shows it
        if expected_updated_at is not None and stored != expected_updated_at:
            raise ConflictError(f"cohort {cohort_id!r} was changed by someone else; "
                                "reload it before deleting")
        conn.execute("DELETE FROM cohort_retention_snapshots WHERE cohort_id = ?", (cohort_id,))
        conn.execute("DELETE FROM cohort_members WHERE cohort_id = ?", (cohort_id,))
        conn.execute("DELETE FROM cohorts WHERE cohort_id = ?", (cohort_id,))
        conn.execute("DELETE FROM pulse_meta WHERE key = ?", (FP_PREFIX + cohort_id,))
    return True


def create_static_cohort(conn: sqlite3.Connection, site_id: str, name: str,
                         user_ids: Sequence[str], now_ms: int, *,
                         events: OutsideEvents | None = None) -> str:
    """Create a static cohort holding ``user_ids`` (one transaction); returns its cohort_id
    (a retention cell's users saved as a cohort).

    Members get ``member_id`` = :func:`member_id` (sha1 of cohort_id, US, user_id),
    ``joined_at`` = the user's first event on the site (import time ``now_ms`` when unknown),
    ``last_seen_at`` = the latest event (or joined_at), active.
    """
    errors: dict[str, str] = {}
    if not name or not name.strip():
        errors["name"] = "a name is required"
    elif len(name) > MAX_NAME:
        errors["name"] = f"longer than {MAX_NAME} characters"
    if not conn.execute("SELECT 1 FROM sites WHERE id = ?", (site_id,)).fetchone():
        errors["site_id"] = f"unknown site {site_id!r}"
    if errors:
        raise ValidationError(errors)
    cid = uuid.uuid4().hex
    users = sorted({u for u in user_ids if u})
    with _write(conn):
        insert_cohort(conn, cohort_id=cid, site_id=site_id, name=name.strip(), description=None,
                      criteria_text=STATIC_CRITERIA, status="active", kind="static",
                      now_ms=now_ms)
        # first and last events: from ``events`` when they are not in this file
        seen = events.first_last_seen(site_id, users) if events is not None else {
            u: (f, s) for u, f, s in conn.execute(
                "SELECT user_id, first_seen_ms, last_seen_ms FROM user_first_seen "
                "WHERE site_id = ? AND user_id IN (SELECT value FROM json_each(?))",
                (site_id, json.dumps(users)))
        }
        conn.executemany(
            "INSERT INTO cohort_members (member_id, cohort_id, session_id, user_id, joined_at, "
            "last_seen_at, is_active) VALUES (?, ?, NULL, ?, ?, ?, 1)",
            [(member_id(cid, u), cid, u, seen.get(u, (now_ms, now_ms))[0],
              seen.get(u, (now_ms, now_ms))[1]) for u in users])
    return cid


# ---------------------------------------------------------------------------- membership
def _register_member_id(conn: sqlite3.Connection) -> None:
    conn.create_function("pulse_member_id", 2, member_id, deterministic=True)


_MATCH_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS cohort_match (
  user_id TEXT PRIMARY KEY,
  joined_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL
) WITHOUT ROWID
"""


def refresh_cohort(conn: sqlite3.Connection, clock: Clock, cohort_id: str, *,
                   catch_up: bool = True, notify: bool = True, events: OutsideEvents | None = None
                   ) -> RefreshResult:
    """Recompute one criteria cohort's membership (static cohorts: skipped, untouched).

    ``events``: the events backend when the events are not in this file (ClickHouse); the
    matching users are then its ``cohort_evaluate``, the membership rows still live here.
    """
    now = clock.now_ms()
    if catch_up:
        derived.fold_pending(conn)
    try:
        cohort = get_cohort(conn, cohort_id)
    except CohortNotFound:
        return RefreshResult(cohort_id, skipped="deleted")
    fp = _fingerprint(cohort.site_id, cohort.kind, cohort.criteria_text, cohort.updated_at)
    if cohort.kind == "static":
        return RefreshResult(cohort_id, skipped="static")
    if cohort.criteria is None or cohort.criteria.is_empty:
        why = str(cohort.problems[0]) if cohort.problems else "empty criteria"
        with _write(conn):
            derived.set_meta(conn, FP_PREFIX + cohort_id, fp)
        return RefreshResult(cohort_id, skipped=f"invalid criteria: {why}")
    # 1. evaluate into a temp table: reads only, no write lock on the database
    conn.execute(_MATCH_TABLE)
    conn.execute("DELETE FROM temp.cohort_match")
    if events is not None:
        conn.executemany("INSERT INTO temp.cohort_match (user_id, joined_at, last_seen_at) "
                         "VALUES (?, ?, ?)",
                         events.cohort_evaluate(cohort.site_id, cohort.criteria, now))
    else:
        sql, params = compile_members(cohort.criteria, cohort.site_id, now,
                                      full_scan=_site_is_large(conn, cohort.site_id))
        conn.execute("INSERT INTO temp.cohort_match (user_id, joined_at, last_seen_at) " + sql,
                     params)
    matched = conn.execute("SELECT count(*) FROM temp.cohort_match").fetchone()[0]
    # 2. apply in one short write transaction, unless the definition changed meanwhile
    _register_member_id(conn)
    with _write(conn):
        row = conn.execute("SELECT updated_at, criteria FROM cohorts WHERE cohort_id = ?",
                           (cohort_id,)).fetchone()
        if row is None:
            return RefreshResult(cohort_id, skipped="deleted")
        if (row[0], row[1]) != (cohort.updated_at, cohort.criteria_text):
            return RefreshResult(cohort_id, skipped="changed meanwhile")
        t0 = conn.total_changes
        conn.execute(
            """
            UPDATE cohort_members
            SET joined_at = m.joined_at, last_seen_at = m.last_seen_at, is_active = 1
            FROM temp.cohort_match m
            WHERE cohort_members.cohort_id = ? AND cohort_members.user_id = m.user_id
              AND (cohort_members.is_active IS NOT 1
                   OR cohort_members.joined_at IS NOT m.joined_at
                   OR cohort_members.last_seen_at IS NOT m.last_seen_at)
            """,
            (cohort_id,),
        )
        t1 = conn.total_changes
        conn.execute(
            """
            INSERT INTO cohort_members (member_id, cohort_id, session_id, user_id, joined_at,
                                        last_seen_at, is_active)
            SELECT pulse_member_id(?, m.user_id), ?, NULL, m.user_id, m.joined_at,
                   m.last_seen_at, 1
            FROM temp.cohort_match m
            WHERE NOT EXISTS (SELECT 1 FROM cohort_members c
                              WHERE c.cohort_id = ? AND c.user_id = m.user_id)
            ON CONFLICT(member_id) DO UPDATE SET
              cohort_id = excluded.cohort_id, user_id = excluded.user_id,
              joined_at = excluded.joined_at, last_seen_at = excluded.last_seen_at,
              is_active = 1
            """,
            (cohort_id, cohort_id, cohort_id),
        )
        t2 = conn.total_changes
        conn.execute(
            """
            UPDATE cohort_members SET is_active = 0
            WHERE cohort_id = ? AND is_active IS NOT 0 AND user_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM temp.cohort_match m
                              WHERE m.user_id = cohort_members.user_id)
            """,
            (cohort_id,),
        )
        t3 = conn.total_changes
        derived.set_meta(conn, FP_PREFIX + cohort_id, fp)
    conn.execute("DELETE FROM temp.cohort_match")
    result = RefreshResult(cohort_id, matched, t2 - t1, t1 - t0, t3 - t2)
    if notify and result.changed:
        _notify(conn, clock, [cohort_id], events)
    return result


def _notify(conn: sqlite3.Connection, clock: Clock, changed: list[str],
            events: OutsideEvents | None) -> None:
    for hook in list(MEMBERSHIP_CHANGED_HOOKS):
        try:
            if events is None:
                hook(conn, clock, changed)
            else:
                hook(conn, clock, changed, events=events)
        except Exception:  # a hook's failure must not undo or block membership
            log.exception("membership-changed hook %r failed", hook)


def _data_mark(conn: sqlite3.Connection, now_ms: int, events: OutsideEvents | None) -> str:
    """What "the data moved" compares: the events store's own data mark (the file's tables, or
    the backend holding the events) and the UTC day (relative criteria move with it)."""
    data = events_store.data_mark(conn) if events is None else events.data_mark()
    return f"{data}:{now_ms // DAY_MS}"


def _criteria_cohort_ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT cohort_id FROM cohorts WHERE coalesce(kind, 'criteria') = 'criteria' "
        "ORDER BY cohort_id")]


def _refresh_many(conn: sqlite3.Connection, clock: Clock, ids: list[str],
                  events: OutsideEvents | None
                  ) -> list[RefreshResult]:
    derived.fold_pending(conn)
    results = []
    for cid in ids:
        try:
            results.append(refresh_cohort(conn, clock, cid, catch_up=False, notify=False,
                                          events=events))
        except Exception as exc:  # noqa: BLE001 - one broken cohort never stops the others
            if conn.in_transaction:
                conn.rollback()
            log.exception("cohort %s could not be refreshed", cid)
            results.append(RefreshResult(
                cid, skipped=f"invalid cohort: {type(exc).__name__}: {exc}"[:300]))
    changed = [r.cohort_id for r in results if r.changed]
    if changed:
        _notify(conn, clock, changed, events)
    return results


def refresh_all(conn: sqlite3.Connection, clock: Clock, *, events: OutsideEvents | None = None
                ) -> list[RefreshResult]:
    """Recompute every criteria cohort (archived ones too; static ones never)."""
    mark = _data_mark(conn, clock.now_ms(), events)
    results = _refresh_many(conn, clock, _criteria_cohort_ids(conn), events)
    with _write(conn):
        derived.set_meta(conn, DATA_MARK_KEY, mark)
        derived.set_meta(conn, FULL_REFRESH_AT_KEY, int(time.time() * 1000))
    return results


def changed_cohort_ids(conn: sqlite3.Connection) -> list[str]:
    """Criteria cohorts whose definition differs from the one their members were computed
    from (inserted or edited by other programs, or never computed)."""
    stored = dict(conn.execute(
        "SELECT substr(key, ?), value FROM pulse_meta WHERE key >= ? AND key < ?",
        (len(FP_PREFIX) + 1, FP_PREFIX, FP_PREFIX[:-1] + ";")))
    out = []
    for cid, site, kind, text, updated in conn.execute(
            "SELECT cohort_id, site_id, coalesce(kind, 'criteria'), criteria, updated_at "
            "FROM cohorts ORDER BY cohort_id"):
        if kind == "criteria" and stored.get(cid) != _fingerprint(site, kind, text, updated):
            out.append(cid)
    return out


def refresh_changed_results(conn: sqlite3.Connection, clock: Clock, *,
                            events: OutsideEvents | None = None
                            ) -> list[RefreshResult]:
    """Refresh the cohorts changed by other programs, or every criteria cohort when the data
    moved since the last full refresh (throttled); returns what was refreshed."""
    mark = _data_mark(conn, clock.now_ms(), events)
    last_full = int(derived.get_meta(conn, FULL_REFRESH_AT_KEY, "0") or 0)
    due = time.time() * 1000 - last_full >= FULL_REFRESH_MIN_INTERVAL_S * 1000
    if derived.get_meta(conn, DATA_MARK_KEY) != mark and due:
        results = refresh_all(conn, clock, events=events)
    else:
        results = _refresh_many(conn, clock, changed_cohort_ids(conn), events)
    # forget fingerprints of cohorts deleted by other programs
    with _write(conn):
        conn.execute(
            "DELETE FROM pulse_meta WHERE key >= ? AND key < ? AND substr(key, ?) NOT IN "
            "(SELECT cohort_id FROM cohorts)",
            (FP_PREFIX, FP_PREFIX[:-1] + ";", len(FP_PREFIX) + 1))
    return results


def describe(results: list[RefreshResult]) -> str:
    """One line for the Jobs pane and the log."""
    if not results:
        return "no cohort changed"
    done = [r for r in results if r.skipped is None]
    changed = [r for r in done if r.changed]
    skipped = [r for r in results if r.skipped is not None]
    text = (f"refreshed {len(done)} cohort(s), {len(changed)} changed "
            f"(+{sum(r.added + r.updated for r in done)} / -{sum(r.deactivated for r in done)})")
    bad = [r for r in skipped if r.skipped and r.skipped.startswith("invalid")]
    if bad:
        text += f"; {len(bad)} with invalid criteria: " + ", ".join(r.cohort_id for r in bad[:5])
    return text


def refresh_changed(conn: sqlite3.Connection, clock: Clock, *,
                    events: OutsideEvents | None = None) -> str:
    """The periodic worker job (every ~10 s): see :func:`refresh_changed_results`."""
    return describe(refresh_changed_results(conn, clock, events=events))


def refresh_all_text(conn: sqlite3.Connection, clock: Clock, *,
                     events: OutsideEvents | None = None) -> str:
    """The after-import hook: recompute every criteria cohort; one line of outcome."""
    return describe(refresh_all(conn, clock, events=events))

