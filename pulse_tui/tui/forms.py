"""Form checks shared by every dialog: a field is checked as the operator leaves it, its error
shows beside it and clears as soon as the value is fixed; submitting names what is missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.widgets import Input

from pulse_tui.tui.widgets.field_error import FieldError

Check = Callable[[str], str | None]


class FieldChecks:
    """Mixin for a screen with Inputs. ``field_checks()`` maps an Input id to a function of its
    text that returns an error message or None; the error widget is ``#<input id>-error``
    (or ``error_id_for``)."""

    def field_checks(self) -> dict[str, Check]:
        return {}

    def error_id_for(self, input_id: str) -> str:
        return f"{input_id}-error"

    def _field_error(self, input_id: str) -> FieldError | None:
        found = self.query(f"#{self.error_id_for(input_id)}")  # type: ignore[attr-defined]
        return found.first(FieldError) if found else None

    def check_field(self, input_id: str) -> str | None:
        """Check one field now and show (or clear) its error; returns the message."""
        check = self.field_checks().get(input_id)
        if check is None:
            return None
        widget = self.query_one(f"#{input_id}", Input)  # type: ignore[attr-defined]
        message = None if widget.disabled or not widget.display else check(widget.value)
        error = self._field_error(input_id)
        if error is not None:
            error.show(message)
        return message

    def check_all(self) -> list[str]:
        """Check every field; focus the first that is wrong. Returns the ids that are wrong."""
        wrong = [input_id for input_id in self.field_checks() if self.check_field(input_id)]
        if wrong:
            self.query_one(f"#{wrong[0]}", Input).focus()  # type: ignore[attr-defined]
        return wrong

    def on_input_blurred(self, event: Any) -> None:
        if event.input.id in self.field_checks():
            self.check_field(event.input.id)

    def on_input_changed(self, event: Any) -> None:
        """An error already shown goes away as soon as the value is right."""
        input_id = event.input.id
        if input_id in self.field_checks():
            error = self._field_error(input_id)
            if error is not None and error.message:
                self.check_field(input_id)
