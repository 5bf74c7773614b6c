"""Alert rule input: parsing and validating conditions, filters and notification settings (pure)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pulse_tui.errors import ValidationError

METRICS = ("events", "users", "sessions")
COMPARISONS = ("gt", "gte", "lt", "lte", "change_pct_gt", "change_pct_lt")
NOTIFICATION_TYPES = ("webhook", "log")
STATUSES = ("active", "muted")
STATES = ("ok", "firing", "error")

# an alert filter is a criteria group (SPEC 8) over event properties only
EVENT_PROPERTIES = ("event_type", "url", "referrer", "country", "device_type")
TEXT_OPERATORS = ("equals", "not_equals", "contains", "not_contains", "starts_with")
LIST_OPERATORS = ("in", "not_in")
PRESENCE_OPERATORS = ("is_set", "is_not_set")
NUMERIC_OPERATORS = ("gt", "gte", "lt", "lte")  # cohort-only (computed properties)
FILTER_OPERATORS = TEXT_OPERATORS + LIST_OPERATORS + PRESENCE_OPERATORS

MAX_WINDOW_MINUTES = 7 * 24 * 60
MAX_FILTER_DEPTH = 32  # groups, the root included (SPEC 10)
MAX_VALUE_CHARS = 8192

_COMPARISON_SIGNS = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤",
                     "change_pct_gt": ">", "change_pct_lt": "<"}
_CONDITION_KEYS = {"metric", "filter", "window_minutes", "comparison", "threshold"}


@dataclass(frozen=True, slots=True)
class AlertCondition:
    """A validated ``alert_rules.condition``; ``filter`` is the criteria group or None."""

    metric: str
    window_minutes: int
    comparison: str
    threshold: float
    filter: dict[str, Any] | None = None

    @property
    def is_change(self) -> bool:
        return self.comparison.startswith("change_pct")

    @property
    def window_ms(self) -> int:
        return self.window_minutes * 60_000

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric}
        if self.filter is not None:
            out["filter"] = self.filter
        threshold: float | int = self.threshold
        if float(threshold).is_integer():
            threshold = int(threshold)
        out.update(window_minutes=self.window_minutes, comparison=self.comparison,
                   threshold=threshold)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def holds(self, value: float) -> bool:
        """Whether the comparison holds for ``value`` (a count, or a percent for change_pct)."""
        c, t = self.comparison, self.threshold
        if c in ("gt", "change_pct_gt"):
            return value > t
        if c == "gte":
            return value >= t
        if c in ("lt", "change_pct_lt"):
            return value < t
        return value <= t  # lte

    def describe(self) -> str:
        """One line for lists, e.g. ``events > 100 in 5 min`` or ``users change > +50 % ...``."""
        sign = _COMPARISON_SIGNS[self.comparison]
        window = format_window(self.window_minutes)
        where = " (filtered)" if self.filter else ""
        if self.is_change:
            return (f"{self.metric}{where} change {sign} {self.threshold:+g} % "
                    f"over {window} vs the {window} before")
        return f"{self.metric}{where} {sign} {self.threshold:g} in {window}"


def format_window(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def _load_json(raw: object, field: str, errors: dict[str, str]) -> object:
    if isinstance(raw, (str, bytes, bytearray)):
        try:
            return json.loads(raw)
        except RecursionError:
            errors[field] = f"nested too deeply (groups nest at most {MAX_FILTER_DEPTH} levels)"
            return None
        except UnicodeDecodeError:
            errors[field] = "not valid JSON (not UTF-8 text)"
            return None
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            pos = getattr(exc, "pos", None)
            errors[field] = f"not valid JSON ({msg} at position {pos})" if pos is not None \
                else f"not valid JSON ({msg})"
            return None
    return raw


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_condition(raw: object) -> AlertCondition:
    """Validate a condition (dict or JSON text); ValidationError names every bad field."""
    errors: dict[str, str] = {}
    data = _load_json(raw, "condition", errors)
    if errors:
        raise ValidationError(errors)
    if not isinstance(data, dict):
        raise ValidationError({"condition": "must be a JSON object with metric, window_minutes, "
                                            "comparison and threshold"})
    for key in sorted(set(data) - _CONDITION_KEYS):
        errors[key] = f"unknown field (allowed: {', '.join(sorted(_CONDITION_KEYS))})"

    metric = data.get("metric")
    if metric is None:
        errors["metric"] = f"required: one of {', '.join(METRICS)}"
    elif metric not in METRICS:
        errors["metric"] = f"must be one of {', '.join(METRICS)}, not {metric!r}"

    window = data.get("window_minutes")
    if window is None:
        errors["window_minutes"] = "required: a whole number of minutes"
    elif isinstance(window, float) and window.is_integer():
        window = int(window)
    if "window_minutes" not in errors:
        if not isinstance(window, int) or isinstance(window, bool):
            errors["window_minutes"] = "must be a whole number of minutes"
        elif not 1 <= window <= MAX_WINDOW_MINUTES:
            errors["window_minutes"] = f"must be between 1 and {MAX_WINDOW_MINUTES} (7 days)"

    comparison = data.get("comparison")
    if comparison is None:
        errors["comparison"] = f"required: one of {', '.join(COMPARISONS)}"
    elif comparison not in COMPARISONS:
        errors["comparison"] = f"must be one of {', '.join(COMPARISONS)}, not {comparison!r}"

    threshold = data.get("threshold")
    if threshold is None:
        errors["threshold"] = "required: a number"
    elif not _is_number(threshold) or not math.isfinite(float(threshold)):
        errors["threshold"] = "must be a finite number"
    elif comparison in ("gt", "gte", "lt", "lte") and float(threshold) < 0:
        errors["threshold"] = "must not be negative (counts are never below 0)"

    flt = data.get("filter")
    if flt is not None:
        validate_filter(flt, "filter", errors)

    if errors:
        raise ValidationError(errors)
    return AlertCondition(metric=str(metric), window_minutes=int(window),  # type: ignore[arg-type]
                          comparison=str(comparison), threshold=float(threshold),  # type: ignore[arg-type]
                          filter=flt)


def validate_filter(group: object, path: str, errors: dict[str, str], depth: int = 1) -> None:
    """Check a criteria group over event properties; messages go to ``errors[path...]``.

    ``depth`` is the group's level (the root is 1); a group below level
    :data:`MAX_FILTER_DEPTH` is an error and is not descended into, so a hostile tree never
    recurses deeper than the limit."""
    if depth > MAX_FILTER_DEPTH:
        errors[path] = f"groups nest deeper than {MAX_FILTER_DEPTH} levels"
        return
    if not isinstance(group, dict):
        errors[path] = 'must be a group {"type": "and"|"or", "conditions": [...]}'
        return
    extra = sorted(set(group) - {"type", "conditions"})
    if extra:
        errors[path] = f"unknown field {extra[0]!r} in a group (allowed: type, conditions)"
    gtype = group.get("type")
    if gtype not in ("and", "or"):
        errors[f"{path}.type"] = f'must be "and" or "or", not {gtype!r}'
    conditions = group.get("conditions")
    if not isinstance(conditions, list):
        errors[f"{path}.conditions"] = "must be a list of conditions"
        return
    if not conditions:
        errors[f"{path}.conditions"] = "an empty group matches nothing; add a condition"
        return
    for i, cond in enumerate(conditions):
        here = f"{path}.conditions[{i}]"
        if isinstance(cond, dict) and "conditions" in cond:
            validate_filter(cond, here, errors, depth + 1)
        else:
            _validate_filter_condition(cond, here, errors)


def _validate_filter_condition(cond: object, path: str, errors: dict[str, str]) -> None:
    if not isinstance(cond, dict):
        errors[path] = 'must be {"property", "operator", "value"} or a nested group'
        return
    extra = sorted(set(cond) - {"property", "operator", "value"})
    if extra:
        errors[path] = f"unknown field {extra[0]!r} (allowed: property, operator, value)"
    prop = cond.get("property")
    if prop not in EVENT_PROPERTIES:
        errors[f"{path}.property"] = (
            f"alert filters take event properties only ({', '.join(EVENT_PROPERTIES)}), "
            f"not {prop!r}")
    op = cond.get("operator")
    value = cond.get("value")
    if op in NUMERIC_OPERATORS:
        errors[f"{path}.operator"] = (f"{op} compares numbers; event properties are text "
                                      f"(use {', '.join(TEXT_OPERATORS)})")
        return
    if op not in FILTER_OPERATORS:
        errors[f"{path}.operator"] = f"must be one of {', '.join(FILTER_OPERATORS)}, not {op!r}"
        return
    if op in PRESENCE_OPERATORS:
        if value is not None:
            errors[f"{path}.value"] = f"{op} takes no value"
    elif op in LIST_OPERATORS:
        if not isinstance(value, list) or not value:
            errors[f"{path}.value"] = f"{op} takes a non-empty list of text values"
        elif not all(isinstance(v, str) for v in value):
            errors[f"{path}.value"] = f"{op} takes text values only"
        elif any(len(v) > MAX_VALUE_CHARS for v in value):
            errors[f"{path}.value"] = f"values are limited to {MAX_VALUE_CHARS} characters"
    else:
        if not isinstance(value, str):
            errors[f"{path}.value"] = f"{op} takes a text value"
        elif op in ("contains", "not_contains", "starts_with") and value == "":
            errors[f"{path}.value"] = f"{op} needs a non-empty text"
        elif len(value) > MAX_VALUE_CHARS:
            errors[f"{path}.value"] = f"values are limited to {MAX_VALUE_CHARS} characters"


def parse_notification(notification_type: object, config: object) -> tuple[str, dict[str, Any]]:
    """Validate the notification settings (shape only; the store checks the endpoint exists)."""
    errors: dict[str, str] = {}
    if notification_type not in NOTIFICATION_TYPES:
        errors["notification_type"] = (f"must be one of {', '.join(NOTIFICATION_TYPES)}, "
                                       f"not {notification_type!r}")
    cfg = _load_json(config if config is not None else {}, "notification_config", errors)
    if "notification_config" not in errors and not isinstance(cfg, dict):
        errors["notification_config"] = "must be a JSON object"
    if not errors and notification_type == "webhook":
        endpoint = cfg.get("endpoint_id")  # type: ignore[union-attr]
        if not isinstance(endpoint, str) or not endpoint.strip():
            errors["notification_config.endpoint_id"] = (
                'required for webhook notifications: {"endpoint_id": ID}')
    if errors:
        raise ValidationError(errors)
    assert isinstance(cfg, dict)
    return str(notification_type), cfg
