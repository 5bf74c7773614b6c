"""Modal listing an import job's rejected rows: line, column, value and reason, literally."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from pulse_tui.tui.widgets.columns import Column, FittedTable

REJECT_COLUMNS = (
    Column("line", "line", 7, justify="right", keep=5, grow=True),
    Column("column", "column", 12, keep=4, grow=True, max_width=24),
    Column("value", "value", 16, keep=1, grow=True, max_width=32, min_width=8),
    Column("reason", "reason"),
)

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
            yield FittedTable(REJECT_COLUMNS, id="rejects-table", detail_title="Rejected row")
            yield Static(Text("enter shows a row in full · escape closes · the full list is "
                              "NAME.errors.csv beside the file", style="dim"))

    def on_mount(self) -> None:
        table = self.query_one(FittedTable)
        table.set_rows([(str(i), {"line": line, "column": column, "value": value or "(empty)",
                                  "reason": reason})
                        for i, (line, column, value, reason) in enumerate(self.rows)])
        table.focus()

    @on(DataTable.RowSelected, "#rejects-table")
    def _row_chosen(self) -> None:
        self.query_one(FittedTable).action_row_details()
