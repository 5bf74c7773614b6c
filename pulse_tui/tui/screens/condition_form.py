"""Modal form for one criteria condition: property, operator and value picked from lists."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from pulse_tui.cohorts.criteria import OPERATOR_SPECS, PROPERTIES, validate, value_kind
from pulse_tui.cohorts.editing import problem_path
from pulse_tui.tui.forms import FieldChecks
from pulse_tui.tui.widgets.field_error import FieldError

PLACEHOLDERS = {
    "text": "text (case-sensitive)",
    "text_list": "comma-separated, e.g. US, CA",
    "number": "a number",
    "number_list": "comma-separated numbers, e.g. 1, 7, 30",
    "none": "(no value for this operator)",
}


def property_options(allowed: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    return [(f"{spec.label}  ·  {spec.kind}", name) for name, spec in PROPERTIES.items()
            if allowed is None or name in allowed]


def operator_options(prop: str) -> list[tuple[str, str]]:
    spec = PROPERTIES.get(prop)
    ops = spec.operators if spec else ()
    return [(OPERATOR_SPECS[op].label, op) for op in ops]


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # validation names the problem
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() \
        else value


def build_condition(prop: str, op: str, text: str) -> dict[str, Any]:
    """The condition's JSON from the form fields (validation happens separately)."""
    kind = value_kind(prop, op)
    condition: dict[str, Any] = {"property": prop, "operator": op}
    text = text.strip()
    if kind == "text":
        condition["value"] = text
    elif kind == "text_list":
        condition["value"] = [part.strip() for part in text.split(",") if part.strip()]
    elif kind == "number":
        condition["value"] = _number(text) if text else None
    elif kind == "number_list":
        condition["value"] = [_number(p.strip()) for p in text.split(",") if p.strip()]
    return condition


def value_text(condition: dict[str, Any]) -> str:
    value = condition.get("value")
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def check_condition(condition: dict[str, Any]) -> dict[str, str]:
    """field -> message for each problem of this one condition."""
    errors: dict[str, str] = {}
    for problem in validate({"type": "and", "conditions": [condition]}):
        _, field = problem_path(problem.path)
        errors.setdefault(field or "value", problem.message)
    return errors


class ConditionFormScreen(FieldChecks, ModalScreen[dict[str, Any] | None]):
    """Dismisses with the condition's JSON, or None when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "apply", "Apply"),
    ]

    def __init__(self, condition: dict[str, Any] | None = None, *,
                 allowed_properties: tuple[str, ...] | None = None,
                 title: str = "Condition") -> None:
        super().__init__()
        self.allowed = allowed_properties
        first = next(iter(self.allowed or tuple(PROPERTIES)))
        self.initial = condition or {"property": first, "operator": "equals", "value": ""}
        self.title_text = title

    def compose(self) -> ComposeResult:
        prop = self.initial.get("property", "event_type")
        if prop not in PROPERTIES:
            prop = "event_type"
        op = self.initial.get("operator", "equals")
        ops = [v for _, v in operator_options(prop)]
        if op not in ops:
            op = ops[0]
        with Vertical(id="condition-form", classes="modal"):
            yield Static(self.title_text, classes="form-title")
            with Horizontal(classes="form-row"):
                yield Label("Property", classes="form-label")
                yield Select(property_options(self.allowed), value=prop, allow_blank=False,
                             id="cond-property", compact=True)
            yield FieldError(id="cond-property-error")
            with Horizontal(classes="form-row"):
                yield Label("Operator", classes="form-label")
                yield Select(operator_options(prop), value=op, allow_blank=False,
                             id="cond-operator", compact=True)
            yield FieldError(id="cond-operator-error")
            with Horizontal(classes="form-row"):
                yield Label("Value", classes="form-label")
                yield Input(value_text(self.initial), id="cond-value", compact=True)
            yield FieldError(id="cond-value-error")
            yield Static("", id="cond-hint", classes="form-hint")
            with Horizontal(classes="form-buttons"):
                yield Button("Apply", id="cond-apply", variant="primary", compact=True)
                yield Button("Cancel", id="cond-cancel", compact=True)

    def on_mount(self) -> None:
        self._sync_value_field()
        self.query_one("#cond-property", Select).focus()

    def field_checks(self) -> dict[str, Any]:
        def value_problem(text: str) -> str | None:
            prop, op, _ = self._fields()
            return check_condition(build_condition(prop, op, text)).get("value")
        return {"cond-value": value_problem}

    def _fields(self) -> tuple[str, str, str]:
        prop = self.query_one("#cond-property", Select).value
        op = self.query_one("#cond-operator", Select).value
        return str(prop), str(op), self.query_one("#cond-value", Input).value

    def _sync_value_field(self) -> None:
        prop, op, _ = self._fields()
        kind = value_kind(prop, op) if op in OPERATOR_SPECS else "text"
        value = self.query_one("#cond-value", Input)
        value.placeholder = PLACEHOLDERS[kind]
        value.disabled = kind == "none"
        spec = PROPERTIES.get(prop)
        hint = {
            "event": "only events that match are counted" if self.allowed is not None else
            "holds when at least one of the user's events on the site matches",
            "user": "reads the user's users row (this site's or site-less)",
            "computed": "a number computed per user",
        }.get(spec.kind if spec else "", "")
        self.query_one("#cond-hint", Static).update(hint)

    @on(Select.Changed, "#cond-property")
    def _property_changed(self, message: Select.Changed) -> None:
        operator = self.query_one("#cond-operator", Select)
        options = operator_options(str(message.value))
        current = operator.value
        with operator.prevent(Select.Changed):
            operator.set_options(options)
            values = [v for _, v in options]
            operator.value = current if current in values else values[0]
        self._sync_value_field()

    @on(Select.Changed, "#cond-operator")
    def _operator_changed(self) -> None:
        self._sync_value_field()

    @on(Input.Submitted, "#cond-value")
    @on(Button.Pressed, "#cond-apply")
    def action_apply(self) -> None:
        prop, op, text = self._fields()
        condition = build_condition(prop, op, text)
        errors = check_condition(condition)
        for field in ("property", "operator", "value"):
            self.query_one(f"#cond-{field}-error", FieldError).show(errors.get(field, ""))
        if not errors:
            self.dismiss(condition)

    @on(Button.Pressed, "#cond-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
