"""Cohort criteria: parsing, validation (path + message per problem), metadata, JSON round trip."""

from __future__ import annotations

import json

import pytest

from pulse_tui.cohorts import (
    COMPUTED_PROPERTIES,
    EVENT_PROPERTIES,
    OPERATORS,
    PROPERTIES,
    USER_PROPERTIES,
    Condition,
    CriteriaError,
    Group,
    Problem,
    operators_for,
    parse,
    validate,
    value_kind,
)
from pulse_tui.cohorts.criteria import MAX_DEPTH
from pulse_tui.errors import ValidationError


def cond(prop: str, op: str, value: object = None) -> dict[str, object]:
    out: dict[str, object] = {"property": prop, "operator": op}
    if value is not None:
        out["value"] = value
    return out


def group(kind: str, *conds: object) -> dict[str, object]:
    return {"type": kind, "conditions": list(conds)}


def test_seed_example_parses_to_typed_tree_and_round_trips() -> None:
    seed = group("and", cond("event_type", "equals", "user_signup"),
                 cond("country", "in", ["US", "CA"]))
    tree = parse(json.dumps(seed))
    assert tree == Group("and", (Condition("event_type", "equals", "user_signup"),
                                 Condition("country", "in", ("US", "CA"))))
    assert tree.to_json() == seed
    assert parse(tree.to_text()) == tree
    assert parse(tree) == tree


def test_nested_three_deep_round_trip() -> None:
    raw = group("or", group("and", group("or", cond("plan", "is_set"),
                                         cond("event_count", "gt", 3)),
                            cond("url", "contains", "%")), cond("email", "is_not_set"))
    tree = parse(raw)
    inner = tree.conditions[0]
    assert isinstance(inner, Group) and isinstance(inner.conditions[0], Group)
    assert tree.to_json() == raw  # is_set/is_not_set carry no value


def test_metadata_for_pick_lists() -> None:
    assert set(PROPERTIES) == {*EVENT_PROPERTIES, *USER_PROPERTIES, *COMPUTED_PROPERTIES}
    assert len(PROPERTIES) == 12 and len(OPERATORS) == 13
    assert PROPERTIES["country"].kind == "event" and PROPERTIES["plan"].kind == "user"
    assert PROPERTIES["event_count"].kind == "computed"
    assert "gt" not in operators_for("url") and "contains" in operators_for("url")
    assert "gt" in operators_for("last_seen_days_ago")
    assert "contains" not in operators_for("event_count")
    assert "is_set" not in operators_for("event_count")
    assert operators_for("nope") == ()
    assert value_kind("country", "equals") == "text"
    assert value_kind("country", "not_in") == "text_list"
    assert value_kind("event_count", "in") == "number_list"
    assert value_kind("event_count", "equals") == "number"
    assert value_kind("first_seen_days_ago", "lte") == "number"
    assert value_kind("plan", "is_not_set") == "none"
    assert PROPERTIES["plan"].value_kind("in") == "text_list"


@pytest.mark.parametrize(("raw", "path", "fragment"), [
    ([], "", "must be a group"),
    ("{not json", "", "not valid JSON"),
    (cond("plan", "equals", "x"), "", "must be a group"),
    ({"type": "xor", "conditions": [cond("plan", "is_set")]}, "type", '"and" or "or"'),
    ({"type": "and"}, "conditions", "expected a list"),
    (group("and"), "conditions", "at least one condition"),
    (group("and", cond("plan", "is_set"), group("or")), "conditions[1].conditions",
     "at least one condition"),
    (group("and", 5), "conditions[0]", "expected a condition or a group"),
    (group("and", {"operator": "equals", "value": "x"}), "conditions[0].property",
     "a property is required"),
    (group("and", cond("plan", "equals", "x"), cond("colour", "equals", "x")),
     "conditions[1].property", "unknown property 'colour'"),
    (group("and", {"property": "plan", "value": "x"}), "conditions[0].operator",
     "an operator is required"),
    (group("and", cond("plan", "like", "x")), "conditions[0].operator", "unknown operator"),
    (group("and", cond("plan", "gt", 3)), "conditions[0].operator", "does not apply to plan"),
    (group("and", cond("event_count", "contains", "3")), "conditions[0].operator",
     "does not apply to event_count"),
    (group("and", cond("event_count", "is_set")), "conditions[0].operator", "does not apply"),
    (group("and", cond("plan", "equals")), "conditions[0].value", "a value is required"),
    (group("and", cond("plan", "equals", 3)), "conditions[0].value", "expected text"),
    (group("and", cond("url", "contains", "")), "conditions[0].value", "must not be empty"),
    (group("and", cond("url", "starts_with", "")), "conditions[0].value", "must not be empty"),
    (group("and", cond("plan", "is_set", "x")), "conditions[0].value", "takes no value"),
    (group("and", cond("country", "in", "US")), "conditions[0].value", "expected a list"),
    (group("and", cond("country", "not_in", [])), "conditions[0].value", "must not be empty"),
    (group("and", cond("country", "in", ["US", 3])), "conditions[0].value[1]", "expected text"),
    (group("and", cond("event_count", "gt", "3")), "conditions[0].value", "expected a number"),
    (group("and", cond("event_count", "gt", True)), "conditions[0].value", "expected a number"),
    (group("and", cond("event_count", "in", [1, "2"])), "conditions[0].value[1]",
     "expected a number"),
    (group("or", cond("plan", "is_set"), group("and", group("or", cond("country", "in", [])))),
     "conditions[1].conditions[0].conditions[0].value", "must not be empty"),
    (group("and", cond("name", "equals", "x" * 9000)), "conditions[0].value", "longer than"),
])
def test_each_problem_has_path_and_message(raw: object, path: str, fragment: str) -> None:
    problems = validate(raw)
    assert any(p.path == path and fragment in p.message for p in problems), problems
    with pytest.raises(CriteriaError) as info:
        parse(raw)
    assert info.value.problems == problems
    assert isinstance(info.value, ValidationError)
    assert info.value.errors[path or "criteria"]


def test_every_problem_reported_at_once() -> None:
    raw = group("and", cond("plan", "gt", 1), group("or", cond("url", "in", [])),
                cond("event_count", "lt", "x"))
    paths = [p.path for p in validate(raw)]
    assert paths == ["conditions[0].operator", "conditions[1].conditions[0].value",
                     "conditions[2].value"]


def test_empty_root_group_only_when_allowed() -> None:
    assert validate(group("and")) == [Problem("conditions",
                                              "a group needs at least one condition")]
    assert validate(group("and"), allow_empty=True) == []
    assert parse(group("and"), allow_empty=True).is_empty
    # a nested empty group is never allowed
    assert validate(group("and", group("or")), allow_empty=True)


def test_depth_is_capped_with_a_message() -> None:
    raw: dict[str, object] = cond("plan", "is_set")
    for _ in range(MAX_DEPTH + 1):
        raw = group("and", raw)
    problems = validate(raw)
    assert problems and "nest deeper" in problems[0].message
    ok: dict[str, object] = cond("plan", "is_set")
    for _ in range(MAX_DEPTH - 1):
        ok = group("and", ok)
    assert validate(ok) == []


def test_valid_values_for_each_kind() -> None:
    raw = group("and", cond("event_count", "equals", 2.5), cond("event_count", "in", [1, 2]),
                cond("plan", "in", ["", "pro"]), cond("plan", "equals", ""),
                cond("last_seen_days_ago", "not_in", [0]), {"property": "plan",
                                                            "operator": "is_set", "value": None})
    assert validate(raw) == []
