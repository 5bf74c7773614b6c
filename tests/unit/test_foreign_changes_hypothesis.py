"""Property: another program INSERTs, DELETEs, UPDATEs and INSERT OR REPLACEs events (any
column, any SQLite type, the newest row too, rowids moved, a stored event_id written again) between PULSE's own writes and folds; every report equals
the plain-Python reference over the usable rows as they are at the end (writable file: folded
first; read-only file: read around), and every derived table equals a rebuild from the events.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from test_derived import derived_state
from test_foreign_rows_hypothesis import (
    _FAST_DIR,
    COLUMNS,
    _row,
    _template,
    changes,
    check_reports,
    good,
    usable,
)
from test_reports_hypothesis import BASE_DAY, DAY, SPAN, TYPES

from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import derived
from pulse_tui.store.connection import connect

# an update to good values: some of a good row's columns
good_update = st.tuples(good, st.sets(st.sampled_from(
    ["site_id", "event_type", "timestamp_ms", "session_id", "user_id", "url", "country"]),
    min_size=1, max_size=3))

op = st.one_of(
    st.tuples(st.just("insert"), good, changes | st.just({})),
    st.tuples(st.just("delete"), st.integers(0, 10_000)),
    st.tuples(st.just("delete-newest"), st.integers(1, 3)),
    st.tuples(st.just("update"), st.integers(0, 10_000), good_update),
    st.tuples(st.just("update-any"), st.integers(0, 10_000), changes),
    st.tuples(st.just("move-rowid"), st.integers(0, 10_000), st.booleans()),
    # INSERT OR REPLACE over a stored event_id: SQLite deletes the old row without firing
    # delete triggers (recursive_triggers is off in the other program) and inserts a new one
    st.tuples(st.just("replace"), st.integers(0, 10_000), good, changes | st.just({})),
    st.tuples(st.just("replace-newest"), good),
    st.tuples(st.just("own"), st.lists(good, min_size=1, max_size=4)),
    st.tuples(st.just("fold")),
)


def _pick(other: sqlite3.Connection, k: int) -> int | None:
    rowids = [r[0] for r in other.execute("SELECT rowid FROM events ORDER BY rowid")]
    return rowids[k % len(rowids)] if rowids else None


def _apply(other: sqlite3.Connection, conn: sqlite3.Connection, step: tuple, n: int) -> None:
    kind = step[0]
    if kind == "insert":
        row = _row(n, step[1], step[2])
        other.execute(f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) "
                      f"VALUES ({', '.join('?' * len(COLUMNS))})", row)
    elif kind == "delete":
        other.execute("DELETE FROM events WHERE rowid = ?", (_pick(other, step[1]),))
    elif kind == "delete-newest":
        other.execute("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events "
                      "ORDER BY rowid DESC LIMIT ?)", (step[1],))
    elif kind in ("update", "update-any"):
        if kind == "update":
            g, cols = step[2]
            values = dict(zip(COLUMNS, _row(n, g, {}), strict=True))
            change = {c: values[c] for c in cols}
        else:
            change = step[2]
        if change:
            other.execute(f"UPDATE OR IGNORE events SET {', '.join(f'{c} = ?' for c in change)} "
                          "WHERE rowid = ?", (*change.values(), _pick(other, step[1])))
    elif kind in ("replace", "replace-newest"):
        rowid = _pick(other, step[1] if kind == "replace" else -1)
        if rowid is not None:
            (eid,), = other.execute("SELECT event_id FROM events WHERE rowid = ?", (rowid,))
            row = (eid, *_row(n, step[2] if kind == "replace" else step[1],
                              step[3] if kind == "replace" else {})[1:])
            try:  # a NULL in a NOT NULL column aborts even a REPLACE
                other.execute(f"INSERT OR REPLACE INTO events ({', '.join(COLUMNS)}) "
                              f"VALUES ({', '.join('?' * len(COLUMNS))})", row)
            except sqlite3.IntegrityError:
                pass
    elif kind == "move-rowid":
        rowid = _pick(other, step[1])
        # to the top, or down into a free rowid (PULSE's rowids start at 1)
        target = ("(SELECT max(rowid) + 1 FROM events)" if step[2]
                  else "(SELECT max(1, min(rowid) - 1) FROM events)")
        other.execute(f"UPDATE OR IGNORE events SET rowid = {target} WHERE rowid = ?", (rowid,))
    other.commit()
    if kind == "own":
        write_batch(conn, [NewEvent(f"o{n}-{i}", g["site_id"], g["event_type"],
                                    (BASE_DAY + g["day"]) * DAY + g["ms"], g["session_id"],
                                    g["user_id"], g["url"], g["referrer"], g["country"],
                                    g["device_type"]) for i, g in enumerate(step[1])], 0)
    elif kind == "fold":
        derived.catch_up_tx(conn, 0)  # the worker


@given(
    first=st.lists(good, min_size=1, max_size=15),
    ops=st.lists(op, min_size=1, max_size=14),
    read_only=st.booleans(),
    ranges=st.lists(st.tuples(st.integers(-2, SPAN + 1), st.integers(0, SPAN)), min_size=1,
                    max_size=2),
    limit=st.integers(1, 4),
    steps=st.lists(st.sampled_from(TYPES), min_size=1, max_size=3),
)
def test_foreign_deletes_and_updates(first: list[dict], ops: list[tuple], read_only: bool,
                                     ranges: list[tuple[int, int]], limit: int,
                                     steps: list[str]) -> None:
    with tempfile.TemporaryDirectory(dir=_FAST_DIR) as tmp:
        path = Path(tmp) / "f.db"
        shutil.copyfile(_template(), path)
        conn = connect(path)
        try:
            _apply(sqlite3.connect(path), conn, ("own", first), -1)
            other = sqlite3.connect(path, timeout=10)  # the other program
            try:
                for n, step in enumerate(ops):
                    _apply(other, conn, step, n)
            finally:
                other.close()
            stored = [dict(zip(COLUMNS, r, strict=True))
                      for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM events")]
            evs = [NewEvent(r["event_id"], r["site_id"], r["event_type"], r["timestamp_ms"],
                            r["session_id"], r["user_id"], r["url"], r["referrer"],
                            r["country"], r["device_type"]) for r in stored if usable(r)]
            if read_only:
                ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                     isolation_level=None)
                try:  # retention does not read around changed rows (only inserted ones)
                    check_reports(ro, evs, ranges, limit, tuple(steps), retention_too=False)
                finally:
                    ro.close()
            check_reports(conn, evs, ranges, limit, tuple(steps))
            assert derived.pending_rows(conn) == 0 and not derived.has_stale(conn)
            assert derived.mark_ok(conn)
            # the derived tables are what a rebuild from the events makes of them
            state = derived_state(conn)
            derived.rebuild(conn, 0)
            assert derived_state(conn) == state
        finally:
            conn.close()
