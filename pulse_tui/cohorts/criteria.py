"""Cohort criteria: the typed tree, its JSON form, validation with a path per problem, metadata.

The JSON is the seed's: a group ``{"type": "and"|"or", "conditions": [...]}`` whose conditions
are ``{"property", "operator", "value"}`` objects or nested groups, to any depth (capped at
:data:`MAX_DEPTH` levels so a hostile file cannot exhaust the stack).

Property kinds (SPEC 8/9):

* ``event`` properties (event_type, url, referrer, country, device_type) hold for a user when at
  least one of the user's events on the site satisfies the positive operator;
* ``user`` properties (plan, company, email, name) read the ``users`` row with that user_id whose
  site_id is the cohort's site or NULL;
* ``computed`` properties (event_count, first_seen_days_ago, last_seen_days_ago) are numbers per
  user; ``*_days_ago`` are NULL (so no positive operator holds) for a user without events.

Every negative operator is exactly NOT of its positive one, also for users without events or
without a users row (``not_equals "US"`` = "no event with country US", which includes users with
no events at all; ``is_not_set plan`` includes users without a users row).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pulse_tui.errors import ValidationError

MAX_DEPTH = 32
MAX_TEXT = 8192

PropertyKind = Literal["event", "user", "computed"]
# what the value of a condition must be, given its property and operator
ValueKind = Literal["text", "text_list", "number", "number_list", "none"]
GroupType = Literal["and", "or"]

EVENT_PROPERTIES = ("event_type", "url", "referrer", "country", "device_type")
USER_PROPERTIES = ("plan", "company", "email", "name")
COMPUTED_PROPERTIES = ("event_count", "first_seen_days_ago", "last_seen_days_ago")

# every operator, in pick-list order, and the positive operator each negative one negates
OPERATORS = ("equals", "not_equals", "in", "not_in", "contains", "not_contains", "starts_with",
             "gt", "gte", "lt", "lte", "is_set", "is_not_set")
NEGATIONS = {"not_equals": "equals", "not_in": "in", "not_contains": "contains",
             "is_not_set": "is_set"}

TEXT_OPERATORS = ("equals", "not_equals", "in", "not_in", "contains", "not_contains",
                  "starts_with", "is_set", "is_not_set")
NUMBER_OPERATORS = ("equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte")


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """One operator for the editor's pick list."""

    name: str
    label: str
    negates: str | None  # the positive operator this one is NOT of, or None


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One property for the editor's pick list: its kind and the operators valid for it."""

    name: str
    label: str
    kind: PropertyKind
    operators: tuple[str, ...]

    def value_kind(self, operator: str) -> ValueKind:
        return value_kind(self.name, operator)


OPERATOR_SPECS: dict[str, OperatorSpec] = {
    op.name: op
    for op in (
        OperatorSpec("equals", "equals", None),
        OperatorSpec("not_equals", "does not equal", "equals"),
        OperatorSpec("in", "is one of", None),
        OperatorSpec("not_in", "is none of", "in"),
        OperatorSpec("contains", "contains", None),
        OperatorSpec("not_contains", "does not contain", "contains"),
        OperatorSpec("starts_with", "starts with", None),
        OperatorSpec("gt", ">", None),
        OperatorSpec("gte", "≥", None),
        OperatorSpec("lt", "<", None),
        OperatorSpec("lte", "≤", None),
        OperatorSpec("is_set", "is set", None),
        OperatorSpec("is_not_set", "is not set", "is_set"),
    )
}

_LABELS = {
    "event_type": "event type", "url": "URL", "referrer": "referrer", "country": "country",
    "device_type": "device type", "plan": "plan", "company": "company", "email": "email",
    "name": "name", "event_count": "event count", "first_seen_days_ago": "first seen (days ago)",
    "last_seen_days_ago": "last seen (days ago)",
}

PROPERTIES: dict[str, PropertySpec] = {
    **{p: PropertySpec(p, _LABELS[p], "event", TEXT_OPERATORS) for p in EVENT_PROPERTIES},
    **{p: PropertySpec(p, _LABELS[p], "user", TEXT_OPERATORS) for p in USER_PROPERTIES},
    **{p: PropertySpec(p, _LABELS[p], "computed", NUMBER_OPERATORS) for p in COMPUTED_PROPERTIES},
}


def operators_for(prop: str) -> tuple[str, ...]:
    """The operators valid for ``prop`` (empty for an unknown property)."""
    spec = PROPERTIES.get(prop)
    return spec.operators if spec else ()


def value_kind(prop: str, operator: str) -> ValueKind:
    """What the value of ``prop operator value`` must be."""
    if operator in ("is_set", "is_not_set"):
        return "none"
    numeric = prop in COMPUTED_PROPERTIES
    if operator in ("in", "not_in"):
        return "number_list" if numeric else "text_list"
    if operator in ("gt", "gte", "lt", "lte"):
        return "number"
    return "number" if numeric else "text"


# ---------------------------------------------------------------------------- the tree
@dataclass(frozen=True, slots=True)
class Condition:
    """``property operator value``; value is str, a number, a tuple of them, or None."""

    property: str
    operator: str
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"property": self.property, "operator": self.operator}
        if value_kind(self.property, self.operator) != "none":
            out["value"] = list(self.value) if isinstance(self.value, tuple) else self.value
        return out


@dataclass(frozen=True, slots=True)
class Group:
    """``{"type": "and"|"or", "conditions": [...]}``."""

    type: GroupType = "and"
    conditions: tuple[Condition | Group, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "conditions": [c.to_json() for c in self.conditions]}

    def to_text(self) -> str:
        """Compact JSON as stored in ``cohorts.criteria``."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(", ", ": "))

    @property
    def is_empty(self) -> bool:
        return not self.conditions


Node = Condition | Group

EMPTY_CRITERIA = Group("and", ())


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem: where in the tree (``conditions[1].value``; "" = the root)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class CriteriaError(ValidationError):
    """Criteria that cannot be saved; ``problems`` lists each one with its path in the tree.

    As a ValidationError, ``errors`` maps each path ("criteria" for the root) to its message(s).
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        errors: dict[str, str] = {}
        for p in self.problems:
            key = p.path or "criteria"
            errors[key] = f"{errors[key]}; {p.message}" if key in errors else p.message
        super().__init__(errors)


# ---------------------------------------------------------------------------- parsing
def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and v not in (
        float("inf"), float("-inf"))


def _check_text(v: object, path: str, problems: list[Problem], *, non_empty: bool) -> bool:
    if not isinstance(v, str):
        problems.append(Problem(path, f"expected text, got {_describe(v)}"))
        return False
    if non_empty and v == "":
        problems.append(Problem(path, "must not be empty"))
        return False
    if len(v) > MAX_TEXT:
        problems.append(Problem(path, f"longer than {MAX_TEXT} characters"))
        return False
    return True


def _describe(v: object) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, str):
        return "text"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _parse_value(prop: str, op: str, raw: dict[str, Any], path: str,
                 problems: list[Problem]) -> Any:
    kind = value_kind(prop, op)
    vpath = _join(path, "value")
    value = raw.get("value")
    if kind == "none":
        if value is not None:
            problems.append(Problem(vpath, f"{op} takes no value"))
        return None
    if "value" not in raw or value is None:
        problems.append(Problem(vpath, "a value is required"))
        return None
    if kind == "text":
        non_empty = op in ("contains", "not_contains", "starts_with")
        return value if _check_text(value, vpath, problems, non_empty=non_empty) else None
    if kind == "number":
        if not _is_number(value):
            problems.append(Problem(vpath, f"expected a number, got {_describe(value)}"))
            return None
        return value
    # lists
    if not isinstance(value, list):
        what = "numbers" if kind == "number_list" else "text values"
        problems.append(Problem(vpath, f"expected a list of {what}, got {_describe(value)}"))
        return None
    if not value:
        problems.append(Problem(vpath, "the list must not be empty"))
        return None
    ok = True
    for i, item in enumerate(value):
        ipath = f"{vpath}[{i}]"
        if kind == "number_list":
            if not _is_number(item):
                problems.append(Problem(ipath, f"expected a number, got {_describe(item)}"))
                ok = False
        elif not _check_text(item, ipath, problems, non_empty=False):
            ok = False
    return tuple(value) if ok else None


def _parse_condition(raw: dict[str, Any], path: str, problems: list[Problem]) -> Condition | None:
    before = len(problems)
    prop = raw.get("property")
    op = raw.get("operator")
    ppath, opath = _join(path, "property"), _join(path, "operator")
    if prop is None:
        problems.append(Problem(ppath, "a property is required"))
    elif not isinstance(prop, str) or prop not in PROPERTIES:
        problems.append(Problem(ppath, f"unknown property {prop!r}; expected one of "
                                       + ", ".join(PROPERTIES)))
        prop = None
    if op is None:
        problems.append(Problem(opath, "an operator is required"))
    elif not isinstance(op, str) or op not in OPERATOR_SPECS:
        problems.append(Problem(opath, f"unknown operator {op!r}"))
        op = None
    elif prop is not None and op not in PROPERTIES[prop].operators:
        kind = PROPERTIES[prop].kind
        problems.append(Problem(opath, f"{op} does not apply to {prop} ({kind} property); use "
                                       + ", ".join(PROPERTIES[prop].operators)))
        op = None
    if prop is None or op is None:
        return None
    value = _parse_value(prop, op, raw, path, problems)
    if len(problems) > before:
        return None
    return Condition(prop, op, value)


def _parse_group(raw: dict[str, Any], path: str, problems: list[Problem], depth: int,
                 allow_empty: bool) -> Group | None:
    before = len(problems)
    gtype = raw.get("type")
    if gtype not in ("and", "or"):
        problems.append(Problem(_join(path, "type"),
                                f"group type must be \"and\" or \"or\", got {gtype!r}"))
    conds = raw.get("conditions")
    cpath = _join(path, "conditions")
    children: list[Node] = []
    if not isinstance(conds, list):
        problems.append(Problem(cpath, f"expected a list of conditions, got {_describe(conds)}"))
    elif not conds:
        if not allow_empty:
            problems.append(Problem(cpath, "a group needs at least one condition"))
    else:
        for i, item in enumerate(conds):
            node = _parse_node(item, f"{cpath}[{i}]", problems, depth + 1)
            if node is not None:
                children.append(node)
    if len(problems) > before:
        return None
    return Group(gtype, tuple(children))  # type: ignore[arg-type]


def _parse_node(raw: object, path: str, problems: list[Problem], depth: int) -> Node | None:
    if not isinstance(raw, dict):
        problems.append(Problem(path, f"expected a condition or a group, got {_describe(raw)}"))
        return None
    if "conditions" in raw or ("type" in raw and "property" not in raw):
        if depth > MAX_DEPTH:  # checked before descending: no recursion past the limit
            problems.append(Problem(path, f"groups nest deeper than {MAX_DEPTH} levels"))
            return None
        return _parse_group(raw, path, problems, depth, allow_empty=False)
    return _parse_condition(raw, path, problems)


def group_depth(raw: object) -> int:
    """How many groups deep a decoded criteria value nests (0 for a non-group), counted
    without recursion so any input is safe; stops counting past :data:`MAX_DEPTH` + 1."""
    deepest = 0
    stack: list[tuple[object, int]] = [(raw, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict) or not isinstance(node.get("conditions"), list):
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in node["conditions"])
    return deepest


def validate(raw: object, *, allow_empty: bool = False) -> list[Problem]:
    """Every problem of a criteria value (JSON text or decoded); [] when it is valid."""
    return _parse(raw, allow_empty)[1]


def _parse(raw: object, allow_empty: bool) -> tuple[Group | None, list[Problem]]:
    problems: list[Problem] = []
    if isinstance(raw, Group):
        raw = raw.to_json()
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except RecursionError:
            return None, [Problem("", f"nested too deeply (groups nest at most {MAX_DEPTH} "
                                      "levels)")]
        except ValueError as exc:
            return None, [Problem("", f"not valid JSON: {exc}")]
    if not isinstance(raw, dict) or "property" in raw and "conditions" not in raw:
        return None, [Problem("", "criteria must be a group: "
                                  "{\"type\": \"and\"|\"or\", \"conditions\": [...]}")]
    group = _parse_group(raw, "", problems, 1, allow_empty)
    return group, problems


def parse(raw: object, *, allow_empty: bool = False) -> Group:
    """The typed tree of a criteria value (JSON text, decoded JSON or a Group).

    Raises CriteriaError listing every problem. ``allow_empty`` admits the empty root group
    (the criteria of a static cohort); nested empty groups are always an error.
    """
    group, problems = _parse(raw, allow_empty)
    if problems or group is None:
        raise CriteriaError(problems or [Problem("", "invalid criteria")])
    return group


def properties_used(node: Node) -> set[str]:
    """The property names a tree refers to."""
    if isinstance(node, Condition):
        return {node.property}
    out: set[str] = set()
    for child in node.conditions:
        out |= properties_used(child)
    return out


def render_condition_tree(node: Node, leaf: Callable[[str, str, object], str]) -> str:
    """One boolean expression for a parsed tree, in any SQL dialect: groups join their
    conditions with AND / OR, a negated operator is ``NOT`` of its positive form (so rows where
    the property is missing match ``not_contains``), and ``leaf(property, operator, value)``
    writes each condition. An empty group cannot be rendered (ValueError)."""
    if isinstance(node, Group):
        if not node.conditions:
            raise ValueError("an empty group cannot be compiled")
        joiner = " AND " if node.type == "and" else " OR "
        return "(" + joiner.join(render_condition_tree(c, leaf) for c in node.conditions) + ")"
    positive = NEGATIONS.get(node.operator)
    if positive is not None:
        return "(NOT " + leaf(node.property, positive, node.value) + ")"
    return leaf(node.property, node.operator, node.value)
