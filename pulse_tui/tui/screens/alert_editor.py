"""The alert rule editor: metric, window, comparison, threshold, filter, notification; backtest."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Label, Select, Static

from pulse_tui.alerts import engine
from pulse_tui.alerts.conditions import COMPARISONS, EVENT_PROPERTIES, METRICS
from pulse_tui.alerts.models import AlertRule
from pulse_tui.clock import format_ms
from pulse_tui.cohorts.criteria import Problem, validate
from pulse_tui.errors import ConflictError, PulseError, ValidationError
from pulse_tui.notify.models import WebhookEndpoint
from pulse_tui.textsafe import visible
from pulse_tui.tui.forms import FieldChecks
from pulse_tui.tui.guards import ReportsWorkerErrors, WriteGuard, write_action, writes
from pulse_tui.tui.screens.confirm import ConfirmScreen
from pulse_tui.tui.widgets.criteria_tree import CriteriaTree
from pulse_tui.tui.widgets.field_error import FieldError
from pulse_tui.tui.widgets.footer import PulseFooter

PREVIEW_DELAY = 0.5
COMPARISON_LABELS = {
    "gt": "is above (>)", "gte": "is at least (≥)", "lt": "is below (<)",
    "lte": "is at most (≤)", "change_pct_gt": "rises by more than % (vs previous window)",
    "change_pct_lt": "changes by less than % (e.g. -50 = halves)",
}
FIELDS = ("name", "metric", "window", "comparison", "threshold", "notification", "filter")


def field_for(key: str) -> str:
    """Map a ValidationError key (``condition.window_minutes``) to the form field it concerns."""
    key = key.lower()
    for needle, field in (("filter", "filter"), ("window", "window"), ("threshold", "threshold"),
                          ("comparison", "comparison"), ("metric", "metric"),
                          ("notification", "notification"), ("endpoint", "notification"),
                          ("name", "name")):
        if needle in key:
            return field
    return "threshold"


def _number(text: str) -> Any:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def _number_problem(text: str, what: str) -> str | None:
    if not text.strip():
        return f"required: {what}"
    try:
        float(text)
    except ValueError:
        return f"not a number: {text.strip()!r}; {what}"
    return None


class AlertEditorScreen(WriteGuard, FieldChecks, ReportsWorkerErrors, Screen[bool]):
    """Creates or edits one rule; dismisses True when saved."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "close", "Back"),
    ]

    def __init__(self, *, site_id: str, endpoints: list[WebhookEndpoint],
                 rule: AlertRule | None = None) -> None:
        super().__init__()
        self.site_id = site_id
        self.endpoints = endpoints
        self.rule = rule
        cond = rule.condition.to_dict() if rule and rule.condition else {
            "metric": "events", "window_minutes": 5, "comparison": "gt", "threshold": 100}
        self.initial_condition = cond
        self.filter: dict[str, Any] = cond.get("filter") or {"type": "and", "conditions": []}
        self._timer: Timer | None = None
        self.preview_text = ""
        self.saved_state = ""

    def compose(self) -> ComposeResult:
        cond = self.initial_condition
        title = Text("New alert rule" if self.rule is None else
                     f"Alert rule: {visible(self.rule.name)}", style="bold")
        title.append(f"   site {visible(self.site_id)}", style="dim")
        yield Static(title, id="editor-title")
        with Horizontal(id="editor-body"):
            with VerticalScroll(id="alert-form"):
                yield from self._row("Name", Input(self.rule.name if self.rule else "",
                                                   id="alert-name", compact=True,
                                                   placeholder="e.g. Traffic spike"), "name")
                yield from self._row("Metric", Select([(m, m) for m in METRICS],
                                                      value=cond["metric"], allow_blank=False,
                                                      id="alert-metric", compact=True), "metric")
                yield from self._row("Window (min)", Input(str(cond["window_minutes"]),
                                                           id="alert-window", compact=True),
                                     "window")
                yield from self._row("Fires when", Select(
                    [(COMPARISON_LABELS[c], c) for c in COMPARISONS], value=cond["comparison"],
                    allow_blank=False, id="alert-comparison", compact=True), "comparison")
                yield from self._row("Threshold", Input(f"{cond['threshold']:g}",
                                                        id="alert-threshold", compact=True),
                                     "threshold")
                yield from self._row("Notify", Select(self._notify_options(),
                                                      value=self._notify_value(),
                                                      allow_blank=False, id="alert-notify",
                                                      compact=True), "notification")
                yield Static(Text("Filter (events counted; empty = all events of the site)",
                                  style="bold"), classes="section-title")
                yield CriteriaTree(self.filter, validator=self._validate_filter,
                                   allowed_properties=EVENT_PROPERTIES, root_label="filter",
                                   id="alert-filter")
                yield FieldError(id="alert-filter-error")
            with VerticalScroll(id="preview-pane"):
                yield Static(Text("Now and over the last 30 days", style="bold"),
                             classes="section-title")
                yield Static("", id="alert-preview")
        yield PulseFooter()

    def _row(self, label: str, widget: Any, field: str) -> Any:
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            yield widget
        yield FieldError(id=f"alert-{field}-error")

    def _notify_options(self) -> list[tuple[Text | str, str]]:
        options: list[tuple[Text | str, str]] = [("log file only", "log")]
        for ep in self.endpoints:
            options.append((Text(f"webhook → {visible(ep.url)}"), f"webhook:{ep.id}"))
        return options

    def _notify_value(self) -> str:
        if self.rule and self.rule.notification_type == "webhook":
            endpoint = self.rule.notification_config.get("endpoint_id")
            if any(ep.id == endpoint for ep in self.endpoints):
                return f"webhook:{endpoint}"
        return "log"

    def on_mount(self) -> None:
        self.saved_state = self._state()
        self.query_one("#alert-name", Input).focus()
        self._schedule()

    # ------------------------------------------------------------------ model
    def _validate_filter(self, group: dict[str, Any]) -> list[Problem]:
        return validate(group, allow_empty=True)

    def condition(self) -> dict[str, Any]:
        cond: dict[str, Any] = {
            "metric": self.query_one("#alert-metric", Select).value,
            "window_minutes": _number(self.query_one("#alert-window", Input).value),
            "comparison": self.query_one("#alert-comparison", Select).value,
            "threshold": _number(self.query_one("#alert-threshold", Input).value),
        }
        if self.filter.get("conditions"):
            cond["filter"] = self.filter
        return cond

    def notification(self) -> tuple[str, dict[str, Any]]:
        value = str(self.query_one("#alert-notify", Select).value)
        if value.startswith("webhook:"):
            return "webhook", {"endpoint_id": value.split(":", 1)[1]}
        return "log", {}

    def _state(self) -> str:
        return json.dumps([self.query_one("#alert-name", Input).value, self.condition(),
                           self.notification()], sort_keys=True, default=str)

    def has_unsaved_changes(self) -> bool:
        return self.is_mounted and bool(self.saved_state) and self._state() != self.saved_state

    def field_checks(self) -> dict[str, Any]:
        return {
            "alert-name": lambda text: None if text.strip() else "required: a name for the rule",
            "alert-window": lambda text: _number_problem(text, "minutes, e.g. 5"),
            "alert-threshold": lambda text: _number_problem(text, "e.g. 100"),
        }

    def _show_errors(self, errors: dict[str, str], *, saving: bool = False) -> None:
        by_field: dict[str, str] = {}
        for key, message in errors.items():
            by_field.setdefault(field_for(key), message)
        for field in FIELDS:
            if field == "name" and not saving:
                continue  # the preview does not check the name; leaving the field does
            self.query_one(f"#alert-{field}-error", FieldError).show(by_field.get(field))

    # ------------------------------------------------------------------ preview
    @on(Input.Changed)
    @on(Select.Changed)
    @on(CriteriaTree.Changed)
    def _changed(self, message: Any) -> None:
        if isinstance(message, CriteriaTree.Changed):
            self.filter = message.criteria
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(PREVIEW_DELAY, self._preview)

    @work(exclusive=True, group="alert-preview", exit_on_error=False)
    async def _preview(self) -> None:
        out = self.query_one("#alert-preview", Static)
        store = self.app.store  # type: ignore[attr-defined]
        clock = self.app.clock  # type: ignore[attr-defined]
        condition = self.condition()
        site_id = self.site_id
        try:
            value, fires = await store.read(
                lambda d: engine.preview_value(d, site_id, condition, clock))
        except ValidationError as exc:
            self._show_errors(exc.errors)
            out.update(Text("fix the fields with a message under them to see values", style="dim"))
            return
        self._show_errors({})
        text = Text()
        text.append("value now  ", style="dim")
        text.append("undefined (previous window was 0)" if value is None else f"{value:g}",
                    style="bold")
        if fires is not None:
            text.append("   would fire" if fires else "   would not fire",
                        style="bold red" if fires else "green")
        text.append("\n\n")
        out.update(text)
        result = await store.read(
            lambda d: engine.backtest(d, condition, site_id, clock, 30))
        text.append("backtest  ", style="dim")
        text.append(result.summary())
        text.append(f"\n({result.method})\n", style="dim")
        for firing in list(result.firings)[-8:]:
            end = "still firing" if firing.end is None else format_ms(firing.end, seconds=False)
            text.append(f"  ▲ {format_ms(firing.start, seconds=False)} → {end}\n", style="red")
        self.preview_text = text.plain
        out.update(text)

    # ------------------------------------------------------------------ save / close
    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_save()

    @writes("saving an alert rule")
    @write_action("alert-save")
    async def action_save(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        now = self.app.clock.now_ms()  # type: ignore[attr-defined]
        name = self.query_one("#alert-name", Input).value.strip()
        ntype, ncfg = self.notification()
        if self.check_all():
            return
        if self.query_one("#alert-filter", CriteriaTree).validate_now():
            self.query_one("#alert-filter-error", FieldError).show("fix the filter conditions")
            return
        condition, site_id, rule = self.condition(), self.site_id, self.rule
        try:
            if rule is None:
                await store.write(lambda d: d.control.create_rule(
                    site_id=site_id, name=name, condition=condition, notification_type=ntype,
                    notification_config=ncfg, now_ms=now))
            else:
                await store.write(lambda d: d.control.update_rule(
                    rule.rule_id, name=name, condition=condition, notification_type=ntype,
                    notification_config=ncfg, expected_updated_at=rule.updated_at,
                    now_ms=now))
        except ValidationError as exc:
            self._show_errors(exc.errors, saving=True)
            self.notify("Not saved: see the messages under the fields.", severity="error")
            return
        except (ConflictError, PulseError) as exc:
            self.notify(f"Not saved: {exc}", severity="error", timeout=10)
            return
        self.notify(f"Saved alert {visible(name)}.")
        self.dismiss(True)

    @work(exclusive=True, group="alert-close", exit_on_error=False)
    async def action_close(self) -> None:
        if self._state() != self.saved_state and not await self.app.push_screen_wait(
                ConfirmScreen("Discard unsaved changes?", yes="discard")):
            return
        self.dismiss(False)
