"""Modal with one retention cell's absolute numbers and dates; s saves its users as a cohort."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from pulse_tui.models import ACQUISITION, RetentionCell, RetentionRow
from pulse_tui.textsafe import visible
from pulse_tui.tui.forms import FieldChecks
from pulse_tui.tui.guards import WriteGuard, writes
from pulse_tui.tui.widgets.field_error import FieldError


class RetentionCellScreen(WriteGuard, FieldChecks, ModalScreen[str | None]):
    """Dismisses with the name for a new static cohort of the cell's users, or None."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("s", "start_save", "Save users as cohort"),
    ]

    def __init__(self, row: RetentionRow, cell: RetentionCell) -> None:
        super().__init__()
        self.row = row
        self.cell = cell

    def compose(self) -> ComposeResult:
        row, cell = self.row, self.cell
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        kind = "acquisition week" if row.kind == ACQUISITION else "saved cohort"
        grid.add_row("cohort", Text(f"{visible(row.label)} ({kind})"))
        grid.add_row("week", Text(str(cell.week_number)))
        window = f"{cell.start.isoformat()} … {cell.last_day.isoformat()}"
        if row.kind != ACQUISITION:
            window += " (each member's own 7-day window from joining)"
        grid.add_row("window", Text(window))
        base = "users in the cohort" if row.kind == ACQUISITION else \
            "members whose window has ended"
        if cell.returning is None:
            grid.add_row("returning", Text("week not ended yet", style="yellow"))
        else:
            rate = cell.rate or 0.0
            grid.add_row("returning", Text(f"{cell.returning:,} of {cell.base:,} {base}"))
            grid.add_row("rate", Text(f"{rate:.1%}", style="bold"))
        grid.add_row("cohort size", Text(f"{row.size:,}"))
        with Vertical(id="retention-cell", classes="modal"):
            yield Static(Text("Retention cell", style="bold"))
            yield Static(grid)
            with Horizontal(classes="form-row", id="cell-save-row"):
                yield Label("Cohort name", classes="form-label")
                yield Input(id="cell-cohort-name", compact=True, disabled=True,
                            placeholder="name for a static cohort of these users")
            yield FieldError(id="cell-cohort-name-error")
            hint = "s: save these users as a static cohort · " if cell.returning else ""
            yield Static(Text(f"{hint}escape: close", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#cell-save-row").display = False

    def field_checks(self) -> dict[str, Any]:
        return {"cell-cohort-name": lambda text: None if text.strip() else
                "required: a name for the new static cohort"}

    @writes("saving users as a cohort")
    def action_start_save(self) -> None:
        if self.cell.returning is None or not self.cell.returning:
            self.notify("No returning users in this cell to save.", severity="warning")
            return
        self.query_one("#cell-save-row").display = True
        name = self.query_one("#cell-cohort-name", Input)
        name.disabled = False
        if not name.value:
            name.value = f"{self.row.label} week {self.cell.week_number} returners"
        name.focus()

    @on(Input.Submitted, "#cell-cohort-name")
    def _save(self, message: Input.Submitted) -> None:
        if self.check_all():
            return
        self.dismiss(message.value.strip())

    def action_close(self) -> None:
        self.dismiss(None)
