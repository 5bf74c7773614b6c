"""Schema 4's move to UTC days is exactly-once and can be run again after a crash at any step
(a store a UTC+9 session filled, then opened by this PULSE)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pulse_tui.backend.clickhouse import connection as chconn
from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import DAY_MS, HOUR_MS
from tests.backend.chdb_support import fresh_chdb_url
from tests.backend.test_clickhouse import (
    EVENT_COLS,
    LATE,
    _day_of,
    _import,
    _late_events,
    _numbers,
    _session_time_zone,
    _sqlite_numbers,
    _write,
)


@contextmanager
def _tokyo_v3_store(tmp_path: Path, url: str, path: Path) -> Iterator[tuple[Backends, Any]]:
    """A version-3 store whose events and rollups a session in Asia/Tokyo stored (local days)."""
    from pulse_tui.backend.clickhouse import schema

    b = open_backends(tmp_path / "ch.db", url)
    with _session_time_zone(b, "Asia/Tokyo") as conn:
        db = f"`{conn.database}`"
        old_day = "toDate(intDiv(timestamp_ms, 1000))"
        conn.command(f"ALTER TABLE {db}.events MODIFY COLUMN day Date MATERIALIZED {old_day}")
        for view in schema.ROLLUP_VIEWS:
            conn.command(f"DROP VIEW {db}.`{view}`")
        for name in ("events_daily", "events_dims", "events_hourly", "user_days"):
            conn.command(f"CREATE MATERIALIZED VIEW {db}.`{name}_mv` TO {db}.`{name}` AS "
                         + schema.ROLLUPS[name].replace(schema.DAY, old_day)
                         .format(src=f"{db}.`events`"))
        b.events.meta_set("schema_version", "3")  # type: ignore[attr-defined]
        _import(b, path)
        yield b, conn


@pytest.mark.parametrize("crash_at", ["TRUNCATE TABLE", "EXCHANGE TABLES", "DROP TABLE IF EXISTS"])
def test_a_crash_inside_the_utc_day_move_is_finished_on_the_next_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str) -> None:
    url = fresh_chdb_url()
    path = _write(tmp_path / "late.csv", EVENT_COLS, _late_events("y"))
    want = _sqlite_numbers(tmp_path, path)
    with _tokyo_v3_store(tmp_path, url, path) as (b, conn):
        b.close()
        real = chconn.ChdbConn.command
        crashed: list[str] = []

        def command(self: Any, sql: str, *a: Any, **k: Any) -> None:
            out = real(self, sql, *a, **k)
            if not crashed and sql.startswith(crash_at) and (
                    "events_daily" in sql or "events_v4_copy" in sql):
                crashed.append(sql)
                raise RuntimeError("killed")
            return out

        monkeypatch.setattr(chconn.ChdbConn, "command", command)
        with pytest.raises(RuntimeError):
            open_backends(tmp_path / "ch.db", url)
        monkeypatch.setattr(chconn.ChdbConn, "command", real)
        assert crashed
        b = open_backends(tmp_path / "ch.db", url)  # the migration runs again
        try:
            assert b.events.meta_get("schema_version") == "4"  # type: ignore[attr-defined]
            assert _day_of(conn, b, "y00000") == "2026-11-29"
            assert _numbers(b) == want
        finally:
            b.close()


def test_the_utc_day_move_after_a_cleanup_cutoff_keeps_every_event_once(tmp_path: Path) -> None:
    url = fresh_chdb_url()
    path = _write(tmp_path / "late.csv", EVENT_COLS, _late_events("y"))
    with _tokyo_v3_store(tmp_path, url, path) as (b, conn):
        # a cleanup ran once with its cutoff at noon UTC two days before LATE's day and deleted
        # nothing: every stored event is still counted once after the migration
        cut_day = LATE // DAY_MS - 2
        b.events.meta_set("cleaned_before", str(cut_day * DAY_MS + 12 * HOUR_MS))  # type: ignore[attr-defined]
        t = b.events.t  # type: ignore[attr-defined]
        n = conn.rows(f"SELECT count() FROM {t('events')}")[0][0]
        assert conn.rows(f"SELECT sum(events) FROM {t('events_daily')}") == [(n,)]
        b.close()
        b = open_backends(tmp_path / "ch.db", url)
        try:
            assert b.events.meta_get("schema_version") == "4"  # type: ignore[attr-defined]
            for table in ("events_daily", "events_hourly"):
                assert conn.rows(f"SELECT sum(events) FROM {t(table)}") == [(n,)], table
            assert conn.rows(f"SELECT sum(events) FROM {t('events_dims')} "
                             "WHERE dim = 'event_type'") == [(n,)]
        finally:
            b.close()


def test_a_crash_while_a_new_rollup_is_filled_has_it_filled_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = fresh_chdb_url()
    path = _write(tmp_path / "late.csv", EVENT_COLS, _late_events("y"))
    b = open_backends(tmp_path / "ch.db", url)
    _import(b, path)
    conn = b.events.ch  # type: ignore[attr-defined]
    t = b.events.t  # type: ignore[attr-defined]
    n = conn.rows(f"SELECT count() FROM {t('events')}")[0][0]
    conn.command(f"DROP VIEW {t('events_hourly_mv')}")  # a store made before events_hourly
    conn.command(f"DROP TABLE {t('events_hourly')}")
    b.close()
    real = chconn.ChdbConn.command
    crashed: list[str] = []

    def command(self: Any, sql: str, *a: Any, **k: Any) -> None:
        if not crashed and sql.startswith("INSERT INTO") and "events_hourly" in sql:
            real(self, f"{sql} LIMIT 1", *a, **k)  # the process dies with one hour stored
            crashed.append(sql)
            raise RuntimeError("killed")
        return real(self, sql, *a, **k)

    monkeypatch.setattr(chconn.ChdbConn, "command", command)
    with pytest.raises(RuntimeError):
        open_backends(tmp_path / "ch.db", url)
    monkeypatch.setattr(chconn.ChdbConn, "command", real)
    assert crashed
    b = open_backends(tmp_path / "ch.db", url)
    try:
        assert conn.rows(f"SELECT sum(events) FROM {t('events_hourly')}") == [(n,)]
    finally:
        b.close()
