"""The message shown beside a form field; takes no room while there is nothing to say."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class FieldError(Static):
    DEFAULT_CLASSES = "field-error -empty"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)

    def show(self, message: str | None) -> None:
        """Set or clear the message (plain text, never markup)."""
        self.update(Text(message or ""))
        self.set_class(not message, "-empty")

    @property
    def message(self) -> str:
        return str(self.render()).strip()
