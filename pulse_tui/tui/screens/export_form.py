"""Modal form for an export definition: what, which format, how often; errors beside fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static

from pulse_tui.errors import PulseError, ValidationError
from pulse_tui.exports import FORMATS, FREQUENCIES, TYPES, ExportDefinition
from pulse_tui.exports import definitions as export_defs
from pulse_tui.models import CohortSummary
from pulse_tui.textsafe import visible
from pulse_tui.tui.forms import FieldChecks
from pulse_tui.tui.guards import ReportsWorkerErrors, WriteGuard, write_action, writes
from pulse_tui.tui.widgets.field_error import FieldError

FIELDS = ("name", "type", "report", "days", "cohort", "format", "frequency")
TYPE_LABELS = {"report": "report (one of the report tables)",
               "metrics": "metrics (daily numbers plus totals)",
               "audience": "audience (a cohort's members with their users rows)"}


def field_for(key: str) -> str:
    key = key.lower()
    for needle, field in (("cohort", "cohort"), ("report", "report"), ("days", "days"),
                          ("from", "days"), ("to", "days"), ("frequency", "frequency"),
                          ("scheduled", "frequency"), ("format", "format"), ("type", "type"),
                          ("name", "name"), ("filters", "report")):
        if needle in key:
            return field
    return "name"


def name_problem(text: str) -> str | None:
    return None if text.strip() else "required: a name to tell this export apart"


def days_problem(text: str) -> str | None:
    from pulse_tui.exports.definitions import MAX_DAYS

    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        return f"a whole number of days from 1 to {MAX_DAYS}"
    return None


class ExportFormScreen(WriteGuard, FieldChecks, ReportsWorkerErrors, ModalScreen[bool]):
    """Create or edit an export definition; dismisses True when saved."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, site_id: str, cohorts: list[CohortSummary],
                 export: ExportDefinition | None = None, *, reports: Sequence[str]) -> None:
        super().__init__()
        self.site_id = site_id
        self.cohorts = cohorts
        self.export = export
        self.reports = list(reports)

    def compose(self) -> ComposeResult:
        ex = self.export
        filters = ex.filters if ex else {}
        cohort_options = [(Text(visible(c.name)), c.cohort_id) for c in self.cohorts]
        with VerticalScroll(id="export-form", classes="modal"):
            yield Static(Text("New export" if ex is None else f"Edit export {visible(ex.name)}",
                              style="bold"))
            yield Static(Text(f"site {visible(self.site_id)}", style="dim"))
            yield from self._row("Name", Input(ex.name if ex else "", id="ex-name", compact=True,
                                               placeholder="e.g. Weekly traffic for finance"),
                                 "name")
            yield from self._row("Type", Select([(TYPE_LABELS[t], t) for t in TYPES],
                                                value=ex.type if ex else "report",
                                                allow_blank=False, id="ex-type", compact=True),
                                 "type")
            yield from self._row("Report", Select(
                [(name, name) for name in self.reports], value=filters.get("report", "daily"),
                allow_blank=False, id="ex-report", compact=True), "report")
            yield from self._row("Last N days", Input(str(filters.get("days", 30)), id="ex-days",
                                                      compact=True), "days")
            yield from self._row("Cohort", Select(
                cohort_options, value=filters.get("cohort_id", Select.NULL)
                if filters.get("cohort_id") in {c for _, c in cohort_options} else Select.NULL,
                allow_blank=True, prompt="choose a cohort", id="ex-cohort", compact=True),
                "cohort")
            yield from self._row("Format", Select([(f, f) for f in FORMATS],
                                                  value=ex.format if ex else "csv",
                                                  allow_blank=False, id="ex-format",
                                                  compact=True), "format")
            yield from self._row("Schedule", Select([(f, f) for f in FREQUENCIES],
                                                    value=ex.frequency if ex else "daily",
                                                    allow_blank=False, id="ex-frequency",
                                                    compact=True), "frequency")
            yield Static(Text("enter or ctrl+s saves · escape cancels", style="dim"))

    def field_checks(self) -> dict[str, Any]:
        return {"ex-name": name_problem, "ex-days": days_problem}

    def _row(self, label: str, widget: Any, field: str) -> Any:
        with Horizontal(classes="form-row", id=f"ex-row-{field}"):
            yield Label(label, classes="form-label")
            yield widget
        yield FieldError(id=f"ex-{field}-error")

    def on_mount(self) -> None:
        self._sync()
        self.query_one("#ex-name", Input).focus()

    @on(Select.Changed, "#ex-type")
    def _sync(self) -> None:
        kind = self.query_one("#ex-type", Select).value
        self.query_one("#ex-row-report").display = kind == "report"
        self.query_one("#ex-row-days").display = kind in ("report", "metrics")
        self.query_one("#ex-row-cohort").display = kind == "audience"

    def _values(self) -> dict[str, Any]:
        kind = str(self.query_one("#ex-type", Select).value)
        days_text = self.query_one("#ex-days", Input).value.strip()
        days: Any = int(days_text) if days_text.isdigit() else days_text
        if kind == "report":
            filters: dict[str, Any] = {"report": self.query_one("#ex-report", Select).value,
                                       "days": days}
        elif kind == "metrics":
            filters = {"days": days}
        else:
            cohort = self.query_one("#ex-cohort", Select).value
            filters = {"cohort_id": None if cohort is Select.NULL else cohort}
        return {"name": self.query_one("#ex-name", Input).value.strip(), "type": kind,
                "format": str(self.query_one("#ex-format", Select).value), "filters": filters,
                "scheduled": {"frequency": str(self.query_one("#ex-frequency", Select).value)}}

    def action_cancel(self) -> None:
        self.dismiss(False)

    @writes("saving an export")
    @on(Input.Submitted)
    @write_action("export-save")
    async def action_save(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        clock = self.app.clock  # type: ignore[attr-defined]
        for field in FIELDS:
            self.query_one(f"#ex-{field}-error", FieldError).show(None)
        if self.check_all():
            return
        values = self._values()
        site_id, export = self.site_id, self.export
        try:
            if export is None:
                await store.write(
                    lambda d: export_defs.create_export(d, clock, site_id=site_id, **values))
            else:
                await store.write(
                    lambda d: export_defs.update_export(d, clock, export.id, **values))
        except ValidationError as exc:
            for key, message in exc.errors.items():
                self.query_one(f"#ex-{field_for(key)}-error", FieldError).show(message)
            return
        except PulseError as exc:
            self.notify(str(exc), severity="error")
            return
        self.dismiss(True)
