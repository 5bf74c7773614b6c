"""The ClickHouse report and cohort queries against plain references: range totals with the
same-time comparison (one query for both periods, the cut decided in SQL), and cohort
criteria trees (candidates and their times from one aggregation over user_days, the kept
first-seen times and the users table)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulse_tui.backend.clickhouse.backend import CLEANED_BEFORE
from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import DAY_MS, HOUR_MS, Clock
from pulse_tui.cohorts import Group
from pulse_tui.models import NewEvent
from pulse_tui.report_models import DateRange
from tests.backend.chdb_support import fresh_chdb_url
from tests.reference import ref_funnel
from tests.unit.test_cohort_engine import NOW as COHORT_NOW
from tests.unit.test_cohort_engine import SITE, U, events_st, oracle, trees, users_st

BASE_DAY = 20_400  # 2025-11-08
TABLES = ("events", "event_ids", "user_days", "events_daily", "events_dims", "sessions",
          "users", "pulse_meta", "user_first_seen", "cleaned_user_days")
SLOW = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    b = open_backends(Path(tmp_path_factory.mktemp("q")) / "ch.db", fresh_chdb_url())
    yield b
    b.close()


def _reset(b: Backends) -> None:
    conn = b.events.ch  # type: ignore[attr-defined]
    for table in TABLES:
        conn.command(f"TRUNCATE TABLE `{conn.database}`.`{table}`")


def _day(n: int) -> date:
    return date(1970, 1, 1) + timedelta(days=n)


# ---------------------------------------------------------------- totals and the previous period
_events = st.lists(st.tuples(
    st.sampled_from(("s1", "s1", "s2")),
    st.integers(0, 11 * DAY_MS - 1),  # ms after BASE_DAY - 8
    st.sampled_from((None, "u1", "u2", "u3", "u4")),
    st.sampled_from(("a", "b", "c", "d", "e", "f"))), min_size=0, max_size=40)


def _ref_totals(evs: list[tuple[str, int, str | None, str]], lo: int, hi: int
                ) -> tuple[int, int, int]:
    inside = [e for e in evs if e[0] == "s1" and lo <= e[1] <= hi]
    return (len(inside), len({e[2] for e in inside if e[2] is not None}),
            len({e[3] for e in inside}))


@SLOW
@given(evs=_events, start=st.integers(-3, 2), days=st.integers(1, 4),
       now_off=st.one_of(st.none(), st.integers(-DAY_MS, DAY_MS)),
       cleaned=st.one_of(st.none(), st.integers(-2, 1)))
def test_range_totals_match_a_plain_reference(
        ch: Backends, evs: list[tuple[str, int, str | None, str]], start: int, days: int,
        now_off: int | None, cleaned: int | None) -> None:
    """Both periods in one query: whole days from the rollup, the previous period's last day
    cut at the same time of day when the range ends today (now_off lands "now" on the range's
    last day or a day either side), unless cleanup's cutoff (pulse_meta) passed that day."""
    _reset(ch)
    origin = (BASE_DAY - 8) * DAY_MS
    stored = [(site, origin + off, user, sess) for site, off, user, sess in evs]
    ch.events.insert_events([  # type: ignore[attr-defined]
        NewEvent(f"t{i}", site, "view", ts, f"{site}-{sess}", user)
        for i, (site, ts, user, sess) in enumerate(stored)], 0)
    rng = DateRange(_day(BASE_DAY + start), _day(BASE_DAY + start + days - 1))
    prev = rng.previous()
    cutoff = 0
    if cleaned is not None:  # cleanup's cutoff: around the previous period's last day
        cutoff = (prev.last_day + cleaned) * DAY_MS
        ch.events.meta_set(CLEANED_BEFORE, str(cutoff))  # type: ignore[attr-defined]
    now = None if now_off is None else rng.last_day * DAY_MS + 12 * HOUR_MS + now_off
    got = ch.events.range_totals("s1", rng, now)
    want_until = None
    if now is not None and now // DAY_MS == rng.last_day and (
            cutoff <= prev.last_day * DAY_MS):
        want_until = now - rng.days * DAY_MS
    assert got.previous_until_ms == want_until
    assert (got.current.events, got.current.users, got.current.sessions) == _ref_totals(
        stored, rng.start_ms, rng.end_ms)
    assert (got.previous.events, got.previous.users, got.previous.sessions) == _ref_totals(
        stored, prev.start_ms, prev.end_ms if want_until is None else want_until)
    assert got.current.range == rng and got.previous.range == prev
    assert ch.events.totals("s1", rng) == got.current


# ---------------------------------------------------------------- cohort criteria trees
@SLOW
@given(raw_events=events_st, users=users_st, tree=trees(3))
def test_cohort_criteria_on_clickhouse_match_a_plain_evaluator(
        ch: Backends, raw_events: list, users: list[U], tree: Group) -> None:
    """The members (and their joined / last-seen times), the preview's count and its sample
    of the newest ten: tests/unit/test_cohort_engine.py's plain-Python evaluator of SPEC 8/9
    on the same trees, events and users rows."""
    _reset(ch)
    events = [NewEvent(f"e{i}", s, et or "view", COHORT_NOW - day * DAY_MS - 1000 * i,
                       f"s{i}", u, url, ref, co, dev)
              for i, (u, s, et, url, ref, co, dev, day) in enumerate(raw_events)]
    ch.events.insert_events(events, 0)  # type: ignore[attr-defined]
    ch.events.upsert_users([(u.user_id, u.site_id, u.name, u.email, u.company, u.plan,  # type: ignore[attr-defined]
                             u.created_at, u.created_at) for u in users])
    want = oracle(events, users, SITE, tree, COHORT_NOW)
    got = ch.events.cohort_evaluate(SITE, tree, COHORT_NOW)
    assert {u: (j, s) for u, j, s in got} == want and len(got) == len(want)
    preview = ch.events.cohort_preview(Clock(COHORT_NOW), SITE, tree.to_json())
    assert preview.count == len(want)
    newest = sorted(want.items(), key=lambda kv: (-kv[1][1], kv[0]))[:10]
    assert [(m.user_id, m.joined_at, m.last_seen_at) for m in preview.sample] == [
        (u, j, s) for u, (j, s) in newest]



# ---------------------------------------------------------------- the ordered funnel
@SLOW
@given(evs=st.lists(st.tuples(st.sampled_from((None, "u1", "u2", "u3")),
                              st.sampled_from(("a", "b", "c")),
                              st.integers(0, 6 * DAY_MS).map(lambda t: t - t % (6 * HOUR_MS)),
                              st.sampled_from(("s1", "s1", "s2"))), max_size=40),
       steps=st.lists(st.sampled_from(("a", "b", "c", "d")), min_size=1, max_size=4),
       start=st.integers(0, 3), days=st.integers(1, 4))
def test_funnel_matches_a_plain_reference(ch: Backends, evs: list[tuple[str | None, str, int, str]],
                                          steps: list[str], start: int, days: int) -> None:
    """Steps repeated, timestamps shared (coarse: 6-hour steps) and steps with no events:
    each step's time is the earliest of its events strictly after the previous step's."""
    _reset(ch)
    origin = (BASE_DAY - 8) * DAY_MS
    stored = [NewEvent(f"f{i}", site, etype, origin + t, f"x{i}", user)
              for i, (user, etype, t, site) in enumerate(evs)]
    ch.events.insert_events(stored, 0)  # type: ignore[attr-defined]
    rng = DateRange(_day(BASE_DAY - 8 + start), _day(BASE_DAY - 8 + start + days - 1))
    inside = [e for e in stored if e.site_id == "s1"
              and rng.start_ms <= e.timestamp_ms <= rng.end_ms]
    got = ch.events.funnel("s1", rng, tuple(steps))
    assert [(r.step, r.event_type, r.users) for r in got] == ref_funnel(inside, tuple(steps))


@pytest.mark.parametrize(("tree", "needs"), [
    ({"type": "and", "conditions": [{"property": "url", "operator": "contains", "value": "/d"},
                                    {"property": "plan", "operator": "equals", "value": "pro"}]},
     True),
    ({"type": "or", "conditions": [{"property": "url", "operator": "contains", "value": "/d"},
                                   {"property": "plan", "operator": "equals", "value": "pro"}]},
     False),
    ({"type": "or", "conditions": [
        {"property": "url", "operator": "contains", "value": "/d"},
        {"type": "and", "conditions": [
            {"property": "country", "operator": "equals", "value": "DE"},
            {"property": "event_count", "operator": "gt", "value": 2}]}]}, True),
    ({"type": "and", "conditions": [
        {"property": "url", "operator": "not_contains", "value": "/d"}]}, False),
])
def test_only_trees_every_member_of_which_has_a_matching_event_join_the_flags_inner(
        tree: dict, needs: bool) -> None:
    # an INNER JOIN with the users' event flags (fl) drops every user without a matching
    # event: right only when the tree cannot select such a user
    from pulse_tui.backend.clickhouse.backend import compile_members_clickhouse
    from pulse_tui.cohorts.criteria import parse

    sql, _ = compile_members_clickhouse(parse(tree), "s1", COHORT_NOW, "e", "u", "d")
    assert ("INNER JOIN fl" in sql) is needs and ("LEFT JOIN fl" in sql) is not needs
