"""Cohort criteria (parse, validate, metadata for the editor) and their compilation to SQL."""

from __future__ import annotations

from pulse_tui.cohorts.compiler import compile_members
from pulse_tui.cohorts.criteria import (
    COMPUTED_PROPERTIES,
    EMPTY_CRITERIA,
    EVENT_PROPERTIES,
    OPERATOR_SPECS,
    OPERATORS,
    PROPERTIES,
    USER_PROPERTIES,
    Condition,
    CriteriaError,
    Group,
    Node,
    OperatorSpec,
    Problem,
    PropertySpec,
    operators_for,
    parse,
    validate,
    value_kind,
)

__all__ = [
    "COMPUTED_PROPERTIES", "EMPTY_CRITERIA", "EVENT_PROPERTIES", "OPERATORS", "OPERATOR_SPECS",
    "PROPERTIES", "USER_PROPERTIES", "Condition", "CriteriaError", "Group", "Node",
    "OperatorSpec", "Problem", "PropertySpec", "compile_members", "operators_for", "parse",
    "validate", "value_kind",
]
