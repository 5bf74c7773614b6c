"""The simulator's traffic looks real (sites, sessions, countries, devices, event types,
returning users), and textsafe.visible shows data text literally."""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict

import pytest
from conftest import FIXED_NOW_MS
from hypothesis import given
from hypothesis import strategies as st

from pulse_tui.simulate import Simulator, write_batch, write_sites, write_users
from pulse_tui.textsafe import visible

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


@pytest.fixture(scope="module")
def history() -> tuple[Simulator, list]:
    sim = Simulator(seed=42)
    today = FIXED_NOW_MS // DAY_MS
    events = [e for batch in sim.history(today - 28, today - 1) for e in batch]
    return sim, events


def test_several_sites(history: tuple[Simulator, list]) -> None:
    _, events = history
    assert len({e.site_id for e in events}) >= 3


def test_sessions_of_several_events(history: tuple[Simulator, list]) -> None:
    _, events = history
    sizes = Counter(e.session_id for e in events)
    assert sum(1 for n in sizes.values() if n >= 3) > len(sizes) // 4
    # a session stays on one site and keeps one user, in time order
    by_session = defaultdict(list)
    for e in events:
        by_session[e.session_id].append(e)
    for evs in by_session.values():
        assert len({e.site_id for e in evs}) == 1
        assert len({e.user_id for e in evs}) == 1
        stamps = [e.timestamp_ms for e in evs]
        assert stamps == sorted(stamps)


def test_countries_devices_and_types(history: tuple[Simulator, list]) -> None:
    _, events = history
    assert len({e.country for e in events}) >= 30
    assert {e.device_type for e in events} == {"desktop", "mobile", "tablet"}
    types = Counter(e.event_type for e in events)
    for needed in ("pageview", "signup", "login", "purchase"):
        assert types[needed] > 0, needed
    custom = set(types) - {"pageview", "signup", "login", "purchase"}
    assert len(custom) >= 3
    assert types["pageview"] == max(types.values())


def test_users_return_across_weeks(history: tuple[Simulator, list]) -> None:
    _, events = history
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for e in events:
        if e.user_id:
            first[e.user_id] = min(first.get(e.user_id, e.timestamp_ms), e.timestamp_ms)
            last[e.user_id] = max(last.get(e.user_id, e.timestamp_ms), e.timestamp_ms)
    returning = [u for u in first if last[u] - first[u] >= WEEK_MS]
    assert len(returning) >= 20
    later_weeks = [u for u in first if last[u] - first[u] >= 2 * WEEK_MS]
    assert later_weeks, "nobody came back after two weeks"
    assert any(e.user_id is None for e in events)  # anonymous traffic too


def test_unique_event_ids_and_deterministic_seed() -> None:
    a = [e for batch in Simulator(seed=3).history(20_000, 20_002) for e in batch]
    b = [e for batch in Simulator(seed=3).history(20_000, 20_002) for e in batch]
    assert a == b
    assert len({e.event_id for e in a}) == len(a)
    c = [e for batch in Simulator(seed=4).history(20_000, 20_002) for e in batch]
    assert a != c


def test_live_events_continue_sessions_and_land_in_db(conn: sqlite3.Connection) -> None:
    sim = Simulator(seed=8, sites=3)
    conn.execute("BEGIN IMMEDIATE")
    write_sites(conn, sim, FIXED_NOW_MS)
    conn.execute("COMMIT")
    written = 0
    for step in range(20):
        now = FIXED_NOW_MS + step * 1000
        batch = sim.live(now, 25)
        assert len(batch) == 25
        assert all(e.timestamp_ms >= now for e in batch)
        written += write_batch(conn, batch, now)
    conn.execute("BEGIN IMMEDIATE")
    write_users(conn, sim.users(), FIXED_NOW_MS)
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == written == 500
    assert conn.execute("SELECT max(event_count) FROM sessions").fetchone()[0] >= 3
    assert conn.execute("SELECT count(*) FROM sites").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0
    assert conn.execute("SELECT count(DISTINCT plan) FROM users").fetchone()[0] >= 2


# ------------------------------------------------------------------------------ textsafe
@pytest.mark.parametrize("raw, shown", [
    ("\x1b[31mred", "\\e[31mred"),
    ("a\x00b", "a\\x00b"),
    ("line1\nline2", "line1\\nline2"),
    ("cr\rlf", "cr\\rlf"),
    ("tab\there", "tab\\there"),
    ("c1\x9bcsi", "c1\\x9bcsi"),
    ("del\x7f", "del\\x7f"),
    ("bidi\u202eevil", "bidi\\u202eevil"),
    ("iso\u2066x\u2069", "iso\\u2066x\\u2069"),
    ("zw\u200bsp", "zw\\u200bsp"),
    ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
])
def test_visible_escapes_control_characters(raw: str, shown: str) -> None:
    assert visible(raw) == shown


@pytest.mark.parametrize("text", ["[red]x[/]", "[bold red]x[/]", "https://a.example/?q=[b]",
                                  "ünïcödé ✓ 日本", ""])
def test_visible_leaves_markup_and_printable_text_alone(text: str) -> None:
    assert visible(text) == text


def test_visible_none_and_non_strings() -> None:
    assert visible(None) == ""
    assert visible(None, none="–") == "–"
    assert visible(42) == "42"


@given(st.text())
def test_visible_never_lets_a_control_character_through(text: str) -> None:
    out = visible(text)
    assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in out)
    assert not any(ch in out for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert "\n" not in out
