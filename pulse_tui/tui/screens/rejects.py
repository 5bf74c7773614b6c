"""Modal listing an import job's rejected rows: line, column, value and reason, literally."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from pulse_tui.textsafe import visible

RejectRow = tuple[int, str | None, str | None, str]


class RejectsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, title: str, rows: list[RejectRow], total: int) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows
        self.total = total

    def compose(self) -> ComposeResult:
        with Vertical(id="rejects", classes="modal"):
            head = Text(self.title_text, style="bold")
            shown = len(self.rows)
            head.append(f"  {self.total} rejected row(s)" +
                        (f", first {shown} shown" if shown < self.total else ""), style="dim")
            yield Static(head)
            yield DataTable(id="rejects-table", cursor_type="row", zebra_stripes=True)
            yield Static(Text("escape closes · the full list is NAME.errors.csv beside the file",
                              style="dim"))

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column(Text("line", justify="right"), width=7)
        table.add_column("column", width=14)
        table.add_column("value", width=24)
        table.add_column("reason")
        for line, column, value, reason in self.rows:
            cut = Text(visible(value, none="(empty)"), no_wrap=True)
            cut.truncate(24, overflow="ellipsis")
            table.add_row(Text(str(line), justify="right"), Text(visible(column, none="–")),
                          cut, Text(visible(reason)))
        table.focus()
