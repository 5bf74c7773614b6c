"""Modal for a custom date range: two dates typed on the keyboard, validated beside the field."""

from __future__ import annotations

from datetime import date

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from pulse_tui.tui.widgets.field_error import FieldError

MAX_DAYS = 3660


class RangePickerScreen(ModalScreen[tuple[date, date] | None]):
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
            with Horizontal(classes="form-buttons"):
                yield Button("Apply", id="range-apply", variant="primary", compact=True)
                yield Button("Cancel", id="range-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#range-from", Input).focus()

    def _parse(self, field: str) -> date | None:
        widget = self.query_one(f"#range-{field}", Input)
        error = self.query_one(f"#range-{field}-error", FieldError)
        text = widget.value.strip()
        try:
            value = date.fromisoformat(text)
            if len(text) != 10:
                raise ValueError
        except ValueError:
            error.show(f"not a date: use YYYY-MM-DD (got {text!r})" if text else "required")
            return None
        error.show("")
        return value

    def _validate(self) -> tuple[date, date] | None:
        start, end = self._parse("from"), self._parse("to")
        if start is None or end is None:
            return None
        if start > end:
            self.query_one("#range-to-error", FieldError).show("must not be before From")
            return None
        if (end - start).days + 1 > MAX_DAYS:
            self.query_one("#range-to-error", FieldError).show(f"at most {MAX_DAYS} days")
            return None
        return start, end

    @on(Input.Submitted)
    def _submitted(self, message: Input.Submitted) -> None:
        if message.input.id == "range-from":
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
