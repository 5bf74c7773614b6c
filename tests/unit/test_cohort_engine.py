"""Compiled cohort SQL against real SQLite: every operator, NOT semantics, literals, and a
hypothesis comparison with a plain-Python evaluator of the same tree."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulse_tui.clock import DAY_MS
from pulse_tui.cohorts import (
    PROPERTIES,
    Condition,
    Group,
    compile_members,
    operators_for,
    parse,
    value_kind,
)
from pulse_tui.cohorts.criteria import NEGATIONS
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import derived
from pulse_tui.store.cohorts import evaluate

NOW = 20_000 * DAY_MS + 12 * 3_600_000  # a fixed "now" (noon UTC)
SITE = "s1"


@dataclass(frozen=True)
class U:
    user_id: str
    site_id: str | None
    plan: str | None = None
    company: str | None = None
    email: str | None = None
    name: str | None = None
    created_at: int = NOW - 50 * DAY_MS


_n = 0


def ev(user: str | None, site: str = SITE, ts: int = NOW - DAY_MS, **props: str | None
       ) -> NewEvent:
    global _n
    _n += 1
    etype = props.pop("event_type", None) or "view"
    return NewEvent(event_id=f"e{_n}", site_id=site, event_type=etype, timestamp_ms=ts,
                    session_id=f"s{_n}", user_id=user, **props)


def load(conn: sqlite3.Connection, events: list[NewEvent], users: list[U]) -> None:
    """Replace the database's events and users with these (derived first-seen rebuilt)."""
    conn.execute("BEGIN IMMEDIATE")
    for table in ("events", "users", "user_first_seen", "sessions"):
        conn.execute(f"DELETE FROM {table}")
    derived.set_meta(conn, derived.HWM_KEY, 0)
    conn.executemany(
        "INSERT INTO users (user_id, site_id, plan, company, email, name, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(u.user_id, u.site_id, u.plan, u.company, u.email, u.name, u.created_at, NOW)
         for u in users])
    conn.execute("COMMIT")
    if events:
        write_batch(conn, events, NOW)


def members(conn: sqlite3.Connection, raw: object, site: str = SITE) -> set[str]:
    return {r[0] for r in evaluate(conn, site, parse(raw), NOW)}


def c(prop: str, op: str, value: object = None) -> dict[str, object]:
    d: dict[str, object] = {"property": prop, "operator": op}
    if value is not None:
        d["value"] = value
    return d


def g(kind: str, *conds: object) -> dict[str, object]:
    return {"type": kind, "conditions": list(conds)}


def one(cond: dict[str, object]) -> dict[str, object]:
    return g("and", cond)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def world(conn: sqlite3.Connection) -> sqlite3.Connection:
    """a: US desktop + DE mobile; b: only us (lower case); c: events on the other site only and
    a users row of s1; d: events without country; e: users row only (no events); anonymous
    events never make members; f: users row of the other site."""
    events = [
        ev("a", country="US", device_type="desktop", url="https://x.example/100%/off",
           referrer="https://google.com/", event_type="signup", ts=NOW - 10 * DAY_MS),
        ev("a", country="DE", device_type="mobile", url="https://x.example/a_b",
           ts=NOW - 2 * DAY_MS - 1),
        ev("b", country="us", url="https://x.example/100x/off", referrer="",
           ts=NOW - 3 * DAY_MS),
        ev("c", site="s2", country="US", ts=NOW - DAY_MS),
        ev("d", country=None, url=None, ts=NOW - 5 * DAY_MS),
        ev("d", country="", ts=NOW - 4 * DAY_MS),
        ev("d", ts=NOW - 4 * DAY_MS + 5),
        ev(None, country="FR", ts=NOW - DAY_MS),
    ]
    users = [
        U("a", SITE, plan="pro", company="Acme", email="a@x.example", name="Ada"),
        U("b", None, plan="Pro", company="", email="b@x.example"),
        U("c", SITE, plan="free", company="100%", email="c_1@x.example", name="Cy"),
        U("e", SITE, plan="pro", created_at=NOW - 7 * DAY_MS),
        U("f", "s2", plan="pro"),
    ]
    load(conn, events, users)
    return conn


UNIVERSE = {"a", "b", "c", "d", "e"}


# ---------------------------------------------------------------------------- event properties
@pytest.mark.parametrize(("cond", "expected"), [
    (c("country", "equals", "US"), {"a"}),
    (c("country", "not_equals", "US"), {"b", "c", "d", "e"}),  # no event with US (c: other site)
    (c("country", "equals", "us"), {"b"}),  # case-sensitive
    (c("country", "in", ["DE", "us"]), {"a", "b"}),
    (c("country", "not_in", ["DE", "us"]), {"c", "d", "e"}),
    (c("country", "contains", "S"), {"a"}),
    (c("country", "not_contains", "S"), {"b", "c", "d", "e"}),
    (c("country", "starts_with", "D"), {"a"}),
    (c("country", "is_set"), {"a", "b"}),  # d has only NULL and ''
    (c("country", "is_not_set"), {"c", "d", "e"}),
    (c("url", "contains", "100%"), {"a"}),  # % literal, not a wildcard
    (c("url", "contains", "a_b"), {"a"}),
    (c("url", "contains", "_"), {"a"}),  # _ literal
    (c("url", "not_contains", "%"), {"b", "c", "d", "e"}),
    (c("url", "starts_with", "https://x.example/100%"), {"a"}),
    (c("url", "starts_with", "x.example"), set()),  # not at the start
    (c("referrer", "is_set"), {"a"}),  # b's referrer is empty
    (c("referrer", "is_not_set"), {"b", "c", "d", "e"}),
    (c("event_type", "equals", "signup"), {"a"}),
    (c("event_type", "not_equals", "view"), {"c", "e"}),  # no view on s1: no events there
    (c("device_type", "equals", "mobile"), {"a"}),
    (c("device_type", "is_not_set"), {"b", "c", "d", "e"}),
])
def test_event_property_operators(world: sqlite3.Connection, cond: dict[str, object],
                                  expected: set[str]) -> None:
    assert members(world, one(cond)) == expected


def test_negative_operators_are_exactly_not_of_positive(world: sqlite3.Connection) -> None:
    for prop in PROPERTIES:
        for neg, pos in NEGATIONS.items():
            if neg not in operators_for(prop):
                continue
            kind = value_kind(prop, pos)
            value = {"text": "US", "text_list": ["US", "pro"], "number": 2,
                     "number_list": [1, 2], "none": None}[kind]
            positive = members(world, one(c(prop, pos, value)))
            negative = members(world, one(c(prop, neg, value)))
            assert positive | negative == UNIVERSE, (prop, neg)
            assert not positive & negative, (prop, neg)


def test_anonymous_events_and_other_sites_never_make_members(world: sqlite3.Connection) -> None:
    assert members(world, one(c("country", "equals", "FR"))) == set()
    assert members(world, one(c("event_count", "gte", 0))) == UNIVERSE
    assert members(world, one(c("country", "equals", "US")), site="s2") == {"c"}
    # on s2: c (events there) does not read its s1 users row; f's s2 row counts
    assert members(world, one(c("plan", "is_set")), site="s2") == {"f"}


# ---------------------------------------------------------------------------- user properties
@pytest.mark.parametrize(("cond", "expected"), [
    (c("plan", "equals", "pro"), {"a", "e"}),  # b has "Pro" (case), d no row
    (c("plan", "not_equals", "pro"), {"b", "c", "d"}),
    (c("plan", "in", ["Pro", "free"]), {"b", "c"}),  # b's row has site_id NULL: it counts
    (c("plan", "not_in", ["Pro", "free"]), {"a", "d", "e"}),
    (c("company", "contains", "%"), {"c"}),
    (c("company", "contains", "c"), {"a"}),  # case-sensitive: Acme has lower c
    (c("company", "not_contains", "%"), {"a", "b", "d", "e"}),
    (c("company", "is_set"), {"a", "c"}),  # b's company is ''
    (c("company", "is_not_set"), {"b", "d", "e"}),
    (c("email", "starts_with", "c_"), {"c"}),
    (c("email", "starts_with", "c%"), set()),
    (c("email", "contains", "_"), {"c"}),
    (c("name", "equals", "Ada"), {"a"}),
    (c("name", "is_not_set"), {"b", "d", "e"}),
])
def test_user_property_operators(world: sqlite3.Connection, cond: dict[str, object],
                                 expected: set[str]) -> None:
    assert members(world, one(cond)) == expected


def test_user_row_of_another_site_is_ignored(world: sqlite3.Connection) -> None:
    # f's row belongs to s2: not a member of s1, and its plan is not read for s1
    assert "f" not in members(world, one(c("plan", "is_not_set")))


# ---------------------------------------------------------------------------- computed
@pytest.mark.parametrize(("cond", "expected"), [
    (c("event_count", "equals", 3), {"d"}),
    (c("event_count", "not_equals", 3), {"a", "b", "c", "e"}),
    (c("event_count", "in", [0, 1]), {"b", "c", "e"}),
    (c("event_count", "not_in", [0, 1]), {"a", "d"}),
    (c("event_count", "gt", 1), {"a", "d"}),
    (c("event_count", "gte", 1), {"a", "b", "d"}),
    (c("event_count", "lt", 1), {"c", "e"}),
    (c("event_count", "lte", 2), {"a", "b", "c", "e"}),
    (c("first_seen_days_ago", "equals", 10), {"a"}),
    (c("first_seen_days_ago", "gte", 5), {"a", "d"}),
    (c("first_seen_days_ago", "lt", 5), {"b"}),  # c, e: no events on s1 -> NULL
    (c("first_seen_days_ago", "not_in", [10, 5]), {"b", "c", "e"}),
    (c("last_seen_days_ago", "equals", 2), {"a"}),  # 2 days + 1 ms ago: floor -> 2
    (c("last_seen_days_ago", "lte", 3), {"a", "b", "d"}),
    (c("last_seen_days_ago", "gt", 2), {"b", "d"}),  # d: 4 days - 5 ms ago floors to 3
    (c("last_seen_days_ago", "in", [3]), {"b", "d"}),
])
def test_computed_property_operators(world: sqlite3.Connection, cond: dict[str, object],
                                     expected: set[str]) -> None:
    assert members(world, one(cond)) == expected


def test_future_events_floor_to_negative_days(conn: sqlite3.Connection) -> None:
    load(conn, [ev("x", ts=NOW + 1)], [])
    assert members(conn, one(c("last_seen_days_ago", "equals", -1))) == {"x"}
    assert members(conn, one(c("last_seen_days_ago", "lt", 0))) == {"x"}


def test_joined_and_last_seen(world: sqlite3.Connection) -> None:
    rows = {r[0]: r[1:] for r in evaluate(world, SITE, parse(one(c("event_count", "gte", 0))),
                                          NOW)}
    assert rows["a"] == (NOW - 10 * DAY_MS, NOW - 2 * DAY_MS - 1)
    assert rows["e"] == (NOW - 7 * DAY_MS, NOW - 7 * DAY_MS)  # users.created_at, no events
    assert rows["c"] == (NOW - 50 * DAY_MS, NOW - 50 * DAY_MS)  # events on s2 only


# ---------------------------------------------------------------------------- groups
def test_nesting_three_deep(world: sqlite3.Connection) -> None:
    raw = g("or",
            g("and", c("plan", "equals", "pro"),
              g("or", c("country", "equals", "DE"), c("event_count", "equals", 0))),
            g("and", c("country", "is_not_set"), g("or", c("event_count", "gt", 2),
                                                   c("company", "contains", "%"))))
    # a: pro + DE; e: pro + no events; d: no country + 3 events; c: no s1 country + company %
    assert members(world, raw) == {"a", "e", "d", "c"}
    assert members(world, g("and", c("plan", "equals", "pro"), c("country", "equals", "DE"),
                            c("country", "equals", "US"))) == {"a"}  # different events ok


def test_values_are_bound_never_interpolated(world: sqlite3.Connection) -> None:
    evil = "US'); DROP TABLE events; --"
    sql, params = compile_members(parse(one(c("country", "equals", evil))), SITE, NOW)
    assert evil not in sql and evil in params
    assert members(world, one(c("country", "equals", evil))) == set()
    assert world.execute("SELECT count(*) FROM events").fetchone()[0] > 0


def test_compile_rejects_empty_group() -> None:
    with pytest.raises(ValueError):
        compile_members(Group("and", ()), SITE, NOW)


# ---------------------------------------------------------------------------- property test
TEXTS = ["a", "b", "ab", "ba", "A", "%", "a%", "_", "b_", ""]  # many substring pairs
USERS = ["u1", "u2", "u3", "u4", "u5"]

text_st = st.sampled_from(TEXTS)
opt_text = st.one_of(st.none(), text_st)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    prop = draw(st.sampled_from(sorted(PROPERTIES)))
    op = draw(st.sampled_from(operators_for(prop)))
    kind = value_kind(prop, op)
    num = st.integers(min_value=-1, max_value=6)
    value: object = None
    if kind == "text":
        value = draw(st.sampled_from([t for t in TEXTS if t]) if op in (
            "contains", "not_contains", "starts_with") else text_st)
    elif kind == "text_list":
        value = tuple(draw(st.lists(text_st, min_size=1, max_size=3)))
    elif kind == "number":
        value = draw(num)
    elif kind == "number_list":
        value = tuple(draw(st.lists(num, min_size=1, max_size=3)))
    return Condition(prop, op, value)


def trees(depth: int) -> st.SearchStrategy[Group]:
    child: st.SearchStrategy[object] = conditions()
    if depth > 1:
        child = st.one_of(conditions(), trees(depth - 1))
    return st.builds(lambda t, cs: Group(t, tuple(cs)), st.sampled_from(["and", "or"]),
                     st.lists(child, min_size=1, max_size=3))


events_st = st.lists(st.builds(
    lambda u, s, et, url, ref, co, dev, day: (u, s, et, url, ref, co, dev, day),
    st.one_of(st.none(), st.sampled_from(USERS)), st.sampled_from(["s1", "s2"]),
    st.sampled_from(["view", "signup", "US"]), opt_text, opt_text, opt_text, opt_text,
    st.integers(min_value=-1, max_value=6)), min_size=2, max_size=16)
users_st = st.lists(st.builds(
    lambda u, s, p, co, e, n: U(u, s, p, co, e, n),
    st.sampled_from(USERS), st.sampled_from(["s1", "s2", None]), opt_text, opt_text, opt_text,
    opt_text), max_size=5, unique_by=lambda u: u.user_id)


def _text_holds(v: str | None, op: str, val: object) -> bool:
    if op == "is_set":
        return v is not None and v != ""
    if v is None:
        return False
    if op == "equals":
        return v == val
    if op == "in":
        return v in val  # type: ignore[operator]
    if op == "contains":
        return val in v  # type: ignore[operator]
    if op == "starts_with":
        return v.startswith(val)  # type: ignore[arg-type]
    raise AssertionError(op)


def _num_holds(x: int | None, op: str, val: object) -> bool:
    if x is None:
        return False
    return {"equals": lambda: x == val, "in": lambda: x in val,  # type: ignore[operator]
            "gt": lambda: x > val, "gte": lambda: x >= val,  # type: ignore[operator]
            "lt": lambda: x < val, "lte": lambda: x <= val}[op]()  # type: ignore[operator]


def oracle(events: list[NewEvent], users: list[U], site: str, tree: Group, now: int
           ) -> dict[str, tuple[int, int]]:
    """Plain-Python reading of SPEC 8/9 for the same tree."""
    by_user: dict[str, list[NewEvent]] = defaultdict(list)
    for e in events:
        if e.site_id == site and e.user_id is not None:
            by_user[e.user_id].append(e)
    rows = {u.user_id: u for u in users if u.site_id in (site, None)}
    universe = set(by_user) | {u.user_id for u in users if u.site_id == site}

    def holds(node: Condition | Group, uid: str) -> bool:
        if isinstance(node, Group):
            f = all if node.type == "and" else any
            return f(holds(ch, uid) for ch in node.conditions)
        op = NEGATIONS.get(node.operator)
        if op is not None:
            return not holds(Condition(node.property, op, node.value), uid)
        op, prop, val = node.operator, node.property, node.value
        evs = by_user.get(uid, [])
        kind = PROPERTIES[prop].kind
        if kind == "event":
            return any(_text_holds(getattr(e, prop), op, val) for e in evs)
        if kind == "user":
            row = rows.get(uid)
            return _text_holds(getattr(row, prop) if row else None, op, val)
        if prop == "event_count":
            return _num_holds(len(evs), op, val)
        if not evs:
            return False
        ts = min(e.timestamp_ms for e in evs) if prop == "first_seen_days_ago" else max(
            e.timestamp_ms for e in evs)
        return _num_holds((now - ts) // DAY_MS, op, val)

    out = {}
    for uid in universe:
        if holds(tree, uid):
            evs = by_user.get(uid)
            if evs:
                out[uid] = (min(e.timestamp_ms for e in evs), max(e.timestamp_ms for e in evs))
            else:
                out[uid] = (rows[uid].created_at, rows[uid].created_at)
    return out


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None, max_examples=max(settings().max_examples, 250))
@given(raw_events=events_st, users=users_st, tree=trees(3))
def test_compiled_sql_matches_python_evaluator(conn: sqlite3.Connection, raw_events: list,
                                               users: list[U], tree: Group) -> None:
    events = [ev(u, site=s, ts=NOW - day * DAY_MS - 1000 * i, event_type=et, url=url,
                 referrer=ref, country=co, device_type=dev)
              for i, (u, s, et, url, ref, co, dev, day) in enumerate(raw_events)]
    load(conn, events, users)
    expected = oracle(events, users, SITE, tree, NOW)
    got = {r[0]: (r[1], r[2]) for r in evaluate(conn, SITE, tree, NOW)}
    assert got == expected


# ------------------------------------------------------------------ other programs' users rows
@pytest.mark.parametrize("user_id, created_at", [
    (b"u2", NOW - DAY_MS), (None, NOW - DAY_MS), ("", NOW - DAY_MS),
    ("u2", "yesterday"), ("u2", b"\x01"), ("u2", 2**63 - 1), ("u2", 1.5),
], ids=["blob-id", "null-id", "empty-id", "text-time", "blob-time", "huge-time", "real-time"])
def test_users_row_of_wrong_type_makes_no_member(conn: sqlite3.Connection, user_id: object,
                                                 created_at: object) -> None:
    """A users row another program wrote with a user_id that is not text or a created_at that
    is not a time never becomes a member (its joined_at would be that value); the well-typed
    rows still do."""
    load(conn, [], [U("u1", SITE, plan="pro")])
    conn.execute("INSERT INTO users (user_id, site_id, plan, created_at, updated_at) "
                 "VALUES (?, ?, 'pro', ?, 0)", (user_id, SITE, created_at))
    got = evaluate(conn, SITE, parse({"type": "and", "conditions": [c("plan", "equals", "pro")]}),
                   NOW)
    assert [r[0] for r in got] == ["u1"]
    assert all(isinstance(r[1], int) for r in got)
