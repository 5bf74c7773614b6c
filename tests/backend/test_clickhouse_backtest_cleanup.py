"""The alert backtest after cleanup (issue 13, third pass): with events_retention_days shorter
than the backtest, ClickHouse answers the hours whose raw events cleanup deleted from what it
keeps of them (the hourly rollup), as SQLite answers from rollup_hourly: the same points, the
same firings and the same ``data_from`` on both stores. Distinct users and filtered counts have
no hourly rollup on either store: the hours before ``data_from`` have no value there."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pulse_tui.alerts import engine
from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import DAY_MS, HOUR_MS
from pulse_tui.config import Settings
from tests.backend.chdb_support import fresh_chdb_url
from tests.backend.test_clickhouse import CLOCK, EVENT_COLS, NOW, _events, _import, _write

CONDITIONS = {
    "events": {"metric": "events", "window_minutes": 180, "comparison": "lt", "threshold": 2},
    "change": {"metric": "events", "window_minutes": 60, "comparison": "change_pct_gt",
               "threshold": 50},
    "users": {"metric": "users", "window_minutes": 360, "comparison": "gt", "threshold": 1},
    "few-users": {"metric": "users", "window_minutes": 120, "comparison": "lt", "threshold": 1},
    "filtered": {"metric": "events", "window_minutes": 120, "comparison": "gt", "threshold": 0,
                 "filter": {"type": "and", "conditions": [
                     {"property": "country", "operator": "equals", "value": "US"}]}},
}


@pytest.fixture
def stores(tmp_path: Path, pulse_settings: Settings) -> Iterator[tuple[Backends, Backends]]:
    """The same 4,000 events over 75 days on SQLite and on chdb, then cleanup keeping 10
    days (rollups kept 400 days) on both."""
    events = _write(tmp_path / "events.csv", EVENT_COLS, _events(11, 4000))
    sq = open_backends(tmp_path / "sq.db", "sqlite")
    ch = open_backends(tmp_path / "ch.db", fresh_chdb_url())
    try:
        settings = replace(pulse_settings, events_retention_days=10)
        deleted = []
        for b in (sq, ch):
            assert _import(b, events).processed == 4000
            deleted.append(b.events.cleanup(settings, CLOCK).events)
        assert deleted[0] == deleted[1] > 2000  # most of the 30 days' raw events are gone
        yield sq, ch
    finally:
        ch.close()
        sq.close()


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_backtest_after_cleanup_is_the_same_on_both_stores(
        stores: tuple[Backends, Backends], name: str) -> None:
    sq, ch = stores
    want = engine.backtest(sq, CONDITIONS[name], "s1", CLOCK, 30)
    got = engine.backtest(ch, CONDITIONS[name], "s1", CLOCK, 30)
    assert got.method == want.method
    assert got.data_from == want.data_from
    assert got.points == want.points
    assert got.firings == want.firings
    if name in ("users", "few-users", "filtered"):  # raw events: the hours cleanup deleted
        # are unknown on both stores (no value, no firing), not zero
        assert want.data_from is not None and want.data_from > NOW - 11 * DAY_MS
        assert all(p.value is None and not p.firing for p in want.points
                   if p.at < want.data_from)
        assert all(f.start > want.data_from for f in want.firings)
        assert any(p.value is not None for p in want.points)
    if name in ("events", "change"):  # answered from the hourly rollup: the deleted hours
        # count what they had (not zero), and data reaches back past the cutoff
        old = [p for p in want.points if p.at < NOW - 11 * DAY_MS]
        assert sum(1 for p in old if p.value) > len(old) // 2
        assert want.data_from is not None and want.data_from < NOW - 30 * DAY_MS


def test_hourly_rollup_outlives_cleanup_and_goes_with_the_rollup_days(
        stores: tuple[Backends, Backends], pulse_settings: Settings) -> None:
    sq, ch = stores
    span = (int((NOW - 40 * DAY_MS) // HOUR_MS), int(NOW // HOUR_MS))
    assert ch.events.hourly_events("s1", *span) == sq.events.hourly_events("s1", *span)
    assert ch.events.first_hour_with_data("s1") == sq.events.first_hour_with_data("s1")
    # rollup_retention_days: the hours of older days go on both stores
    settings = replace(pulse_settings, events_retention_days=10, rollup_retention_days=20)
    for b in (sq, ch):
        b.events.cleanup(settings, CLOCK)
    assert ch.events.hourly_events("s1", *span) == sq.events.hourly_events("s1", *span)
    first = ch.events.first_hour_with_data("s1")
    assert first == sq.events.first_hour_with_data("s1")
    assert first is not None and first * HOUR_MS >= NOW - 21 * DAY_MS
    # rebuild-rollups keeps the hours of cleaned days, as SQLite's
    assert ch.events.rebuild(NOW) > 0 and sq.events.rebuild(NOW) > 0
    assert ch.events.hourly_events("s1", *span) == sq.events.hourly_events("s1", *span)


def test_a_store_made_before_the_hourly_rollup_gets_it_filled_on_open(tmp_path: Path) -> None:
    url = fresh_chdb_url()
    b = open_backends(tmp_path / "ch.db", url)
    _import(b, _write(tmp_path / "events.csv", EVENT_COLS, _events(12, 600)))
    span = (int((NOW - 80 * DAY_MS) // HOUR_MS), int(NOW // HOUR_MS) + 1)
    want = b.events.hourly_events("s1", *span)
    assert sum(want.values()) > 250
    conn = b.events.ch  # type: ignore[attr-defined]
    conn.command(f"DROP VIEW `{conn.database}`.`events_hourly_mv`")  # a store of version 3
    conn.command(f"DROP TABLE `{conn.database}`.`events_hourly`")  # made before it
    b.close()
    b = open_backends(tmp_path / "ch.db", url)
    try:
        assert b.events.hourly_events("s1", *span) == want
        _import(b, _write(tmp_path / "more.csv", EVENT_COLS, _events(13, 40, prefix="m")))
        got = b.events.hourly_events("s1", *span)
        assert sum(got.values()) > sum(want.values())  # the view counts new rows from now on
        assert got == dict(  # type: ignore[arg-type]
            b.events.hourly_raw("s1", "events", span[0] * HOUR_MS, span[1] * HOUR_MS))
    finally:
        b.close()
