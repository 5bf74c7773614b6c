"""A dialog with values in full (never cut), selectable with the mouse and copied with `c`."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from pulse_tui.textsafe import visible


class DetailScreen(ModalScreen[None]):
    """``fields``: (name, value) pairs shown literally, long values folded, never cut."""

    BINDINGS = [
        Binding("escape,enter,q", "dismiss", "Close"),
        Binding("c", "copy", "Copy"),
    ]

    def __init__(self, title: str, fields: Sequence[tuple[str, object]],
                 note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.fields = [(name, value if isinstance(value, Text) else visible(value, none="–"))
                       for name, value in fields]
        self.note = note

    def compose(self) -> ComposeResult:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in self.fields:
            grid.add_row(Text(name), value if isinstance(value, Text) else Text(value))
        with VerticalScroll(id="detail", classes="modal"):
            yield Static(Text(visible(self.title_text), style="bold"), id="detail-title")
            yield Static(grid, id="detail-fields")
            if self.note:
                yield Static(Text(self.note), id="detail-note")
            yield Static(Text("c copies · escape closes · the mouse selects text", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#detail", VerticalScroll).focus()

    def text(self) -> str:
        """What `c` copies: one "name: value" line per field."""
        lines = [self.title_text]
        lines += [f"{name}: {value.plain if isinstance(value, Text) else value}"
                  for name, value in self.fields]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text())
        self.notify("Copied to the clipboard.", timeout=3)
