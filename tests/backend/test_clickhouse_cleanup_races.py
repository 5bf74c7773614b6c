"""ClickHouse cleanup against concurrent imports and on a cluster (issue 13, third pass).

* The sessions and user_days recompute (a DELETE, then an INSERT from the events) with an
  import's rows landing between the two statements: every session and user-day still equals
  the plain aggregate over the events, nothing counted twice or lost.
* An event older than the cutoff imported after cleanup recorded what it deletes and before
  its DELETE: that pass leaves it, the next deletes and records it (never deleted unrecorded).
* With ``clickhouse_cluster`` every mutation (ALTER ... DELETE) and TRUNCATE targets the
  ``*_local`` table ON CLUSTER (a Distributed table refuses mutations), checked by ClickHouse's
  own parser (formatQuery); the statements also run, translated to this single node's tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pulse_tui.backend.clickhouse.backend import ClickHouseEvents
from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import DAY_MS, HOUR_MS
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from tests.backend.chdb_support import fresh_chdb_url
from tests.backend.test_clickhouse import CLOCK, NOW

CUTOFF = NOW - 10 * DAY_MS


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[Backends]:
    b = open_backends(tmp_path / "ch.db", fresh_chdb_url())
    yield b
    b.close()


def _event(eid: str, ts: int, session: str, user: str | None = "u1", site: str = "s1"
           ) -> NewEvent:
    return NewEvent(eid, site, "view", ts, session, user, "/", None, "US", "desktop")


def _seed(ev: ClickHouseEvents) -> None:
    """Sessions on both sides of the cutoff, wholly before it, and wholly after it."""
    rows = []
    for k in range(6):
        base = CUTOFF - 3 * HOUR_MS + k * 60_000
        rows += [_event(f"a{k}-{i}", base + i * HOUR_MS, f"straddle{k}", f"u{k % 3}")
                 for i in range(6)]
        rows += [_event(f"b{k}-{i}", CUTOFF - 5 * DAY_MS + i * HOUR_MS, f"old{k}", f"u{k}")
                 for i in range(3)]
        rows += [_event(f"c{k}-{i}", NOW - DAY_MS + i * HOUR_MS, f"new{k}", f"u{k}")
                 for i in range(2)]
    assert ev.insert_events(rows, NOW) == len(rows)


class Hooked:
    """The real connection; ``after(pattern, action)`` runs ``action`` once, right after the
    first statement matching ``pattern`` (a real interleaving: another writer's insert
    between two statements of cleanup)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.database = inner.database
        self.url = inner.url
        self.hooks: list[tuple[re.Pattern[str], Callable[[], None]]] = []
        self.fired: list[str] = []

    def after(self, pattern: str, action: Callable[[], None]) -> None:
        self.hooks.append((re.compile(pattern, re.S), action))

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.inner.command(sql, params)
        for hook in list(self.hooks):
            if hook[0].search(sql):
                self.hooks.remove(hook)
                self.fired.append(hook[0].pattern)
                hook[1]()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _sessions(ev: ClickHouseEvents) -> tuple[list[tuple], list[tuple]]:
    """(the sessions table read with GROUP BY, the same from the events)."""
    stored = ev.ch.rows(
        f"SELECT site_id, session_id, any(user_id), min(first_event_at), max(last_event_at), "
        f"sum(event_count) FROM {ev.t('sessions')} GROUP BY site_id, session_id "
        "ORDER BY session_id")
    plain = ev.ch.rows(
        f"SELECT site_id, session_id, any(user_id), min(timestamp_ms), max(timestamp_ms), "
        f"count() FROM {ev.t('events')} GROUP BY site_id, session_id ORDER BY session_id")
    return [r[:2] + r[3:] for r in stored], [r[:2] + r[3:] for r in plain]


def _user_days(ev: ClickHouseEvents) -> tuple[list[tuple], list[tuple]]:
    stored = ev.ch.rows(
        f"SELECT site_id, user_id, dayn, min(first_ms), max(last_ms), sum(events) "
        f"FROM {ev.t('user_days')} GROUP BY site_id, user_id, dayn ORDER BY user_id, dayn")
    plain = ev.ch.rows(
        f"SELECT site_id, assumeNotNull(user_id) AS u, intDiv(timestamp_ms, {DAY_MS}) AS d, "
        f"min(timestamp_ms), max(timestamp_ms), count() FROM {ev.t('events')} "
        "WHERE user_id IS NOT NULL GROUP BY site_id, u, d ORDER BY u, d")
    return stored, plain


def test_an_import_between_the_recompute_statements_counts_once(
        ch: Backends, pulse_settings: Settings) -> None:
    ev = ch.events
    assert isinstance(ev, ClickHouseEvents)
    _seed(ev)
    writer = ClickHouseEvents(ev.conn, ev.ch)  # another writer on the same store
    hooked = Hooked(ev.ch)
    # events of a session cleanup recomputes, and of a user-day it recomputes (an old day:
    # inserted after the events' delete, so they are kept), land between its statements
    hooked.after(r"ALTER TABLE .*`sessions`.* DELETE", lambda: writer.insert_events(
        [_event("late-s0", NOW - HOUR_MS, "straddle0", "u0"),
         _event("late-s1", CUTOFF - HOUR_MS // 2, "straddle1", "u1")], NOW))
    hooked.after(r"ALTER TABLE .*`user_days`.* DELETE", lambda: writer.insert_events(
        [_event("late-d0", CUTOFF - DAY_MS, "late-session", "u2")], NOW))
    ev.ch = hooked
    try:
        done = ev.cleanup(replace(pulse_settings, events_retention_days=10), CLOCK)
    finally:
        ev.ch = hooked.inner
    assert len(hooked.fired) == 2  # both interleavings happened
    assert done.events > 0 and done.sessions_updated == 6 and done.sessions_deleted == 6
    stored, plain = _sessions(ev)
    assert stored == plain
    assert ("s1", "straddle0", CUTOFF - 3 * HOUR_MS + 3 * HOUR_MS, NOW - HOUR_MS, 4) in stored
    stored_days, plain_days = _user_days(ev)
    assert stored_days == plain_days
    assert ("s1", "u2", (CUTOFF - DAY_MS) // DAY_MS, CUTOFF - DAY_MS, CUTOFF - DAY_MS, 1) \
        in stored_days


def test_an_old_event_imported_while_cleanup_runs_is_kept_or_recorded(
        ch: Backends, pulse_settings: Settings) -> None:
    # an event older than the cutoff lands after cleanup recorded what it is about to delete
    # (user_first_seen, cleaned_user_days) and before its DELETE: it is not deleted unrecorded
    # (this pass leaves it; the next deletes it and records its user and day)
    ev = ch.events
    assert isinstance(ev, ClickHouseEvents)
    _seed(ev)
    writer = ClickHouseEvents(ev.conn, ev.ch)
    late = _event("late-old", CUTOFF - 3 * DAY_MS, "late-old-session", "u-late")
    hooked = Hooked(ev.ch)
    hooked.after(r"INSERT INTO .*`cleaned_user_days`", lambda: writer.insert_events([late], NOW))
    ev.ch = hooked
    settings = replace(pulse_settings, events_retention_days=10)
    try:
        first = ev.cleanup(settings, CLOCK)
    finally:
        ev.ch = hooked.inner
    assert hooked.fired and first.events == 6 * 3 + 6 * 3  # the seeded old ones only

    def late_rows() -> tuple[int, list[tuple], list[tuple]]:
        (n,), = ev.ch.rows(f"SELECT count() FROM {ev.t('events')} WHERE event_id = 'late-old'")
        seen = ev.ch.rows(f"SELECT min(first_seen_ms), max(last_seen_ms) FROM "
                          f"{ev.t('user_first_seen')} WHERE user_id = 'u-late' HAVING count()")
        days = ev.ch.rows(f"SELECT day_num FROM {ev.t('cleaned_user_days')} "
                          "WHERE user_id = 'u-late'")
        return int(n), seen, days

    assert late_rows() == (1, [], [])
    # (the late event arrived last: the newest event stays, SPEC 9; one more arrives)
    writer.insert_events([_event("later", NOW - HOUR_MS, "later-session")], NOW)
    second = ev.cleanup(settings, CLOCK)
    assert second.events == 1
    ts = CUTOFF - 3 * DAY_MS
    assert late_rows() == (0, [(ts, ts)], [(ts // DAY_MS,)])


# ---------------------------------------------------------------- cluster mode
class ClusterRecorder:
    """A fake cluster connection: records each statement as PULSE produced it for cluster
    ``c1``, and runs it on this single node with the ``*_local`` tables and ON CLUSTER taken
    out (the schema here has the plain tables)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.database = inner.database
        self.url = inner.url
        self.statements: list[str] = []

    @staticmethod
    def _single(sql: str) -> str:
        return re.sub(r"`(\w+)_local` ON CLUSTER `c1`", r"`\1`", sql)

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.statements.append(sql)
        self.inner.command(self._single(sql), params)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        return self.inner.rows(self._single(sql), params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


MUTATION = re.compile(r"^\s*(ALTER\s+TABLE|TRUNCATE)\b|\bDELETE\s+FROM\b|\bUPDATE\b.*\bSET\b",
                      re.I | re.S)


def test_cluster_mutations_target_the_local_tables_on_cluster(
        ch: Backends, pulse_settings: Settings) -> None:
    ev = ch.events
    assert isinstance(ev, ClickHouseEvents)
    _seed(ev)
    rec = ClusterRecorder(ev.ch)
    clustered = ClickHouseEvents(ev.conn, rec, cluster="c1")  # type: ignore[arg-type]
    settings = replace(pulse_settings, events_retention_days=10, rollup_retention_days=12)
    done = clustered.cleanup(settings, CLOCK)
    assert done.events > 0 and done.rollup_rows > 0
    assert clustered.bound_to(ev.conn).cluster == "c1"
    clustered.rebuild(NOW)
    mutations = [s for s in rec.statements if MUTATION.search(s)]
    kinds = {re.match(r"\s*(\w+ \w+) (\S+)", s).group(2) for s in mutations}  # type: ignore[union-attr]
    # cleanup: events, event_ids, sessions, user_days, events_daily/dims, cleaned_user_days;
    # rebuild: TRUNCATE of the rollups, sessions and event_ids
    assert {f"`{ev.ch.database}`.`{t}_local`" for t in (
        "events", "event_ids", "sessions", "user_days", "events_daily", "events_dims",
        "cleaned_user_days")} <= kinds
    db = re.escape(f"`{ev.ch.database}`")
    for stmt in mutations:
        assert re.match(rf"\s*(ALTER TABLE|TRUNCATE TABLE) {db}\.`\w+_local` ON CLUSTER `c1`( |$)",
                        stmt), stmt
        # ClickHouse's own parser (raises on a syntax error)
        formatted = ev.ch.rows("SELECT formatQuery({q:String})", {"q": stmt})[0][0]
        assert "ON CLUSTER c1" in formatted.replace("`", "")
    # reads and inserts go through the Distributed tables (plain names)
    assert not [s for s in rec.statements if "_local" in s and not MUTATION.search(s)]
    # and what ran did what cleanup does on one node
    stored, plain = _sessions(ev)
    assert stored == plain
