"""Issue 15, property: random rows of any SQLite type in any column of ``events``, written by a
second sqlite3 connection beside PULSE's own rows, never make a report, a pane read, the
worker's fold or rebuild-rollups raise, and every report equals the plain-Python reference over
the well-typed rows (writable file: folded first; read-only file: read around; after the
worker's catch-up; after a rebuild)."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange
from pulse_tui.simulate import write_batch
from pulse_tui.store import derived, reports, retention
from pulse_tui.store.connection import connect
from pulse_tui.store.events import tail_events
from tests.unit.test_reports_hypothesis import BASE, BASE_DAY, DAY, SPAN, TYPES, reference
from tests.unit.test_retention_reference import NOW, ref_acquisition

COLUMNS = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id", "url",
           "referrer", "country", "device_type", "created_at")
REQUIRED_TEXT = ("event_id", "site_id", "event_type", "session_id")
OPTIONAL_TEXT = ("url", "referrer", "country", "device_type")
MIN_TS, MAX_TS = 946_684_800_000, 4_102_444_800_000

good_values = st.sampled_from([None, "", "US", "=x", "de", "ü", "a b"])
good = st.fixed_dictionaries({
    "site_id": st.sampled_from(["s1", "s2"]),
    "event_type": st.sampled_from(TYPES),
    "day": st.integers(0, SPAN - 1),
    "ms": st.integers(0, DAY - 1),
    "session_id": st.sampled_from(["sa", "sb", "sc", "sd"]),
    "user_id": st.sampled_from([None, "u1", "u2", "u3", "u4"]),
    "url": good_values, "referrer": good_values, "country": good_values,
    "device_type": good_values,
})

# any value SQLite can store (NaN is stored as NULL)
any_value = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 2**63 - 1, -(2**63), MIN_TS - 1, MIN_TS, MAX_TS, MAX_TS + 1,
                     1_764_000_000, 1_764_000_000_000_000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([(BASE_DAY + 1) * DAY + 0.5, float((BASE_DAY + 2) * DAY), 1.5e12]),
    st.text(max_size=12),
    st.sampled_from(["yesterday", "2026-10-29T10:00:00Z", "2026-10-29", "", " ", "1e3",
                     str((BASE_DAY + 3) * DAY), "s1", "view", "u1", "(none)x", "\x1b[31m"]),
    st.binary(max_size=6),
)
changes = st.dictionaries(st.sampled_from(COLUMNS), any_value, max_size=3)


def _row(n: int, g: dict, change: dict) -> tuple:
    row = {"event_id": f"f{n}", "timestamp_ms": (BASE_DAY + g["day"]) * DAY + g["ms"],
           "created_at": 0, **{k: v for k, v in g.items() if k not in ("day", "ms")}}
    row.update(change)
    return tuple(row[c] for c in COLUMNS)


def usable(r: dict) -> bool:
    """The rule, from the stored values (after SQLite's column affinity)."""
    def text(v: object) -> bool:
        return isinstance(v, str)
    return (all(text(r[c]) and r[c] != "" for c in REQUIRED_TEXT)
            and type(r["timestamp_ms"]) is int and MIN_TS <= r["timestamp_ms"] <= MAX_TS
            and (r["user_id"] is None or (text(r["user_id"]) and r["user_id"] != ""))
            and all(r[c] is None or text(r[c]) for c in OPTIONAL_TEXT))


_TEMPLATE: list[Path] = []
_FAST_DIR = "/dev/shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None


def _template() -> Path:
    if not _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="pulse-foreign-", dir=_FAST_DIR)
        atexit.register(shutil.rmtree, folder, True)
        path = Path(folder) / "template.db"
        c = connect(path)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def check_reports(conn: sqlite3.Connection, evs: list[NewEvent],
                  ranges: list[tuple[int, int]], limit: int, steps: tuple[str, ...], *,
                  retention_too: bool = True) -> None:
    for a, length in ranges:
        rng = DateRange(BASE + timedelta(days=a), BASE + timedelta(days=a + length))
        for site in ("s1", "s2"):
            for name in ("daily", "breakdown", "top-urls", "top-referrers", "top-countries",
                         "top-devices", "funnel"):
                got = reports.run_report(conn, name, site, rng, limit=limit, steps=steps)
                assert got == reference(evs, site, rng, name, limit, steps), (name, site, rng)
            t = reports.totals(conn, site, rng)
            sel = [e for e in evs
                   if e.site_id == site and rng.start_ms <= e.timestamp_ms <= rng.end_ms]
            assert (t.events, t.users, t.sessions) == (
                len(sel), len({e.user_id for e in sel if e.user_id}),
                len({e.session_id for e in sel}))
    # the charts pane's reads
    rng = DateRange(BASE, BASE + timedelta(days=SPAN - 1))
    reports.range_totals(conn, "s1", rng, (BASE_DAY + SPAN - 1) * DAY + DAY // 2)
    # the live pane's read: usable rows only, never raises
    for e in tail_events(conn, limit=1000):
        assert type(e.timestamp_ms) is int and isinstance(e.event_type, str)
    if not retention_too:
        return
    # acquisition retention of s1 over the well-typed rows
    start, end = BASE - timedelta(days=7), BASE + timedelta(days=SPAN)
    rows = retention.acquisition_rows(conn, "s1", start, end, NOW)
    want = ref_acquisition([(e.user_id, e.site_id, e.timestamp_ms) for e in evs
                            if e.timestamp_ms <= NOW], start, end)
    assert {r.label: (r.size, r.rates()) for r in rows} == want


@given(
    own=st.lists(good, max_size=25),
    foreign=st.lists(st.tuples(good, changes), min_size=1, max_size=25),
    mode=st.sampled_from(["writable", "read-only", "worker", "rebuild"]),
    split=st.integers(0, 25),
    ranges=st.lists(st.tuples(st.integers(-2, SPAN + 1), st.integers(0, SPAN)), min_size=1,
                    max_size=2),
    limit=st.integers(1, 4),
    steps=st.lists(st.sampled_from(TYPES), min_size=1, max_size=3),
)
def test_foreign_rows_of_any_type(own: list[dict], foreign: list[tuple[dict, dict]], mode: str,
                                  split: int, ranges: list[tuple[int, int]], limit: int,
                                  steps: list[str]) -> None:
    with tempfile.TemporaryDirectory(dir=_FAST_DIR) as tmp:
        path = Path(tmp) / "f.db"
        shutil.copyfile(_template(), path)
        conn = connect(path)
        try:
            write_batch(conn, [NewEvent(f"o{i}", g["site_id"], g["event_type"],
                                        (BASE_DAY + g["day"]) * DAY + g["ms"], g["session_id"],
                                        g["user_id"], g["url"], g["referrer"], g["country"],
                                        g["device_type"]) for i, g in enumerate(own)], 0)
            other = sqlite3.connect(path, timeout=10)  # the other program
            sql = (f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(COLUMNS))})")
            rows = [_row(n, g, ch) for n, (g, ch) in enumerate(foreign)]
            other.executemany(sql, rows[:split])
            other.commit()
            if mode == "worker":
                derived.catch_up_tx(conn, 0)  # the worker folds what was there
            other.executemany(sql, rows[split:])
            other.commit()
            other.close()
            stored = [dict(zip(COLUMNS, r, strict=True))
                      for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM events")]
            evs = [NewEvent(r["event_id"], r["site_id"], r["event_type"], r["timestamp_ms"],
                            r["session_id"], r["user_id"], r["url"], r["referrer"],
                            r["country"], r["device_type"]) for r in stored if usable(r)]
            bad = len(stored) - len(evs)
            if mode == "worker":
                derived.catch_up_tx(conn, 0)
            elif mode == "rebuild":
                derived.rebuild(conn, 0)
            if mode == "read-only":
                ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                     isolation_level=None)
                try:
                    check_reports(ro, evs, ranges, limit, tuple(steps))
                    assert derived.unusable_counts(ro)["total"] == bad
                finally:
                    ro.close()
            check_reports(conn, evs, ranges, limit, tuple(steps))
            assert derived.pending_rows(conn) == 0
            assert derived.unusable_counts(conn)["total"] == bad
            # rebuild-rollups never raises and changes no number
            derived.rebuild(conn, 0)
            check_reports(conn, evs, ranges, limit, tuple(steps))
        finally:
            conn.close()
