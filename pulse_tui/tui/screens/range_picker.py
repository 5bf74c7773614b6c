"""Modal for a custom date range: two dates typed on the keyboard, validated beside the field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from pulse_tui.tui.forms import FieldChecks
from pulse_tui.tui.widgets.field_error import FieldError

MAX_DAYS = 3660


def parse_day(text: str) -> date | None:
    text = text.strip()
    try:
        value = date.fromisoformat(text)
    except ValueError:
        return None
    return value if len(text) == 10 else None


def day_problem(text: str) -> str | None:
    """What is wrong with a typed day, in our words (None when it is a day)."""
    text = text.strip()
    if not text:
        return "required: a day as YYYY-MM-DD"
    if parse_day(text) is None:
        return f"not a day: {text!r}; use YYYY-MM-DD, e.g. 2026-11-01"
    return None


class RangePickerScreen(FieldChecks, ModalScreen[tuple[date, date] | None]):
    """Dismisses with (from, to), both included, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, start: date, end: date, today: date) -> None:
        super().__init__()
        self.start, self.end, self.today = start, end, today

    def compose(self) -> ComposeResult:
        with Vertical(id="range-picker", classes="modal"):
            yield Static("Custom range (UTC days, both included)")
            with Horizontal(classes="form-row"):
                yield Label("From", classes="form-label")
                yield Input(self.start.isoformat(), placeholder="YYYY-MM-DD", id="range-from",
                            compact=True)
            yield FieldError(id="range-from-error")
            with Horizontal(classes="form-row"):
                yield Label("To", classes="form-label")
                yield Input(self.end.isoformat(), placeholder="YYYY-MM-DD", id="range-to",
                            compact=True)
            yield FieldError(id="range-to-error")
            yield Static("enter: next field, then apply · escape cancels", classes="form-hint")
            with Horizontal(classes="form-buttons"):
                yield Button("Apply", id="range-apply", variant="primary", compact=True)
                yield Button("Cancel", id="range-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#range-from", Input).focus()

    def field_checks(self) -> dict[str, Callable[[str], str | None]]:
        return {"range-from": day_problem, "range-to": self._to_problem}

    def _to_problem(self, text: str) -> str | None:
        problem = day_problem(text)
        if problem:
            return problem
        end = parse_day(text)
        start = parse_day(self.query_one("#range-from", Input).value)
        if start is not None and end is not None:
            if start > end:
                return f"must not be before From ({start.isoformat()})"
            if (end - start).days + 1 > MAX_DAYS:
                return f"at most {MAX_DAYS} days from From"
        return None

    def _validate(self) -> tuple[date, date] | None:
        if self.check_all():
            return None
        start = parse_day(self.query_one("#range-from", Input).value)
        end = parse_day(self.query_one("#range-to", Input).value)
        assert start is not None and end is not None
        return start, end

    @on(Input.Changed, "#range-from")
    def _from_changed(self) -> None:
        # To's error may depend on From ("must not be before From")
        if self.query_one("#range-to-error", FieldError).message:
            self.check_field("range-to")

    @on(Input.Submitted)
    def _submitted(self, message: Input.Submitted) -> None:
        if message.input.id == "range-from":
            if self.check_field("range-from") is None:
                self.query_one("#range-to", Input).focus()
        else:
            self._apply()

    @on(Button.Pressed, "#range-apply")
    def _apply(self) -> None:
        result = self._validate()
        if result is not None:
            self.dismiss(result)

    @on(Button.Pressed, "#range-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
