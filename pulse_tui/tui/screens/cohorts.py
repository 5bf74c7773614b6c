"""Pane 3, Cohorts: the list with member counts; create, edit, duplicate, archive, delete."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from pulse_tui.clock import format_ms
from pulse_tui.errors import PulseError
from pulse_tui.models import CohortSummary
from pulse_tui.textsafe import visible
from pulse_tui.tui.guards import write_action, writes
from pulse_tui.tui.screens.base import PaneScreen
from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
from pulse_tui.tui.screens.confirm import ConfirmScreen
from pulse_tui.tui.widgets.columns import Column, FittedTable

COLUMNS = (
    Column("name", "name"),
    Column("site", "site", 12, min_total=100),
    Column("kind", "kind", 9, keep=2),
    Column("status", "status", 10, keep=2),
    Column("members", "members", 10, justify="right", keep=5, grow=True),
    Column("updated", "updated", 18, min_total=90),
)


class CohortsScreen(PaneScreen):
    PANE = "cohorts"
    TITLE = "Cohorts"
    HELP = "Cohorts with member counts; the editor builds criteria with keys alone."

    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("N", "new_static", "New static"),
        Binding("enter,e", "edit", "Edit"),
        Binding("c", "duplicate", "Duplicate"),
        Binding("a", "archive", "Archive/restore"),
        Binding("x,delete", "delete", "Delete"),
    ]

    TARGETS = {action: ("#cohorts-table", "cohort")
               for action in ("edit", "duplicate", "archive", "delete")}

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[CohortSummary] = []

    def compose_body(self) -> ComposeResult:
        yield Static(id="cohorts-title", classes="section-title")
        yield FittedTable(COLUMNS, id="cohorts-table",
                          empty="no cohorts yet: n adds one (N a static one, filled by imports)",
                          detail_title="Cohort")

    def on_mount(self) -> None:
        self.query_one("#cohorts-table", FittedTable).focus()
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="cohorts-load", exit_on_error=False)
    async def _load(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        site = self.app.site_id  # type: ignore[attr-defined]
        self.rows = await store.read(lambda d: d.control.list_cohorts(site))
        title = self.query_one("#cohorts-title", Static)
        where = f"site {visible(site)}" if site else "all sites"
        head = Text(f"{len(self.rows)} cohort(s), {where}", no_wrap=True, overflow="ellipsis")
        broken = [c for c in self.rows if c.problem]
        if broken:  # written by another program: listed, never refreshed, fix or delete it
            first = broken[0]
            head.append(f"  ✖ {len(broken)} invalid ({visible(first.name)}: "
                        f"{visible(first.problem or '')[:120]})", style="bold red")
        head.append("   n new · N static · c copy · a archive · x delete")
        title.update(head)
        self.query_one("#cohorts-table", FittedTable).set_rows(
            [(c.cohort_id, {
                "name": c.name, "site": c.site_id, "kind": c.kind,
                "status": "✖ invalid" if c.problem else c.status,
                "members": f"{c.members:,}", "updated": format_ms(c.updated_at, seconds=False),
            }) for c in self.rows],
            [{"status": "bold red" if c.problem else
              "dim" if c.status == "archived" else "green",
              "kind": "yellow" if c.kind == "static" else ""} for c in self.rows])

    def _selected(self) -> CohortSummary | None:
        key = self.query_one("#cohorts-table", FittedTable).selected_key()
        return next((c for c in self.rows if c.cohort_id == key), None)

    @on(DataTable.RowSelected, "#cohorts-table")
    def _row_chosen(self) -> None:
        self.action_edit()

    # ------------------------------------------------------------------ actions
    @writes("creating a cohort")
    @work(exclusive=True, group="cohorts-action", exit_on_error=False)
    async def action_new(self) -> None:
        site = await self.site_for_new()
        if site is None:
            return
        if await self.app.push_screen_wait(CohortEditorScreen(site_id=site)):
            self.reload()

    @writes("creating a cohort")
    @work(exclusive=True, group="cohorts-action", exit_on_error=False)
    async def action_new_static(self) -> None:
        """A static cohort: a fixed list of users filled by cohort_members imports."""
        site = await self.site_for_new()
        if site is None:
            return
        if await self.app.push_screen_wait(CohortEditorScreen(site_id=site, static=True)):
            self.reload()

    @writes("editing a cohort")
    @work(exclusive=True, group="cohorts-action", exit_on_error=False)
    async def action_edit(self) -> None:
        summary = self._selected()
        if summary is None:
            return
        store = self.app.store  # type: ignore[attr-defined]
        try:
            cohort = await store.read(lambda d: d.control.get_cohort(summary.cohort_id))
        except PulseError as exc:
            self.notify(str(exc), severity="error")
            self.reload()
            return
        if await self.app.push_screen_wait(
                CohortEditorScreen(site_id=cohort.site_id, cohort=cohort)):
            self.reload()

    @writes("duplicating a cohort")
    @write_action("cohorts-write")
    async def action_duplicate(self) -> None:
        summary = self._selected()
        if summary is None:
            return
        store = self.app.store  # type: ignore[attr-defined]
        clock = self.app.clock  # type: ignore[attr-defined]
        copy = await store.write(lambda d: d.control.duplicate_cohort(clock, summary.cohort_id))
        self.notify(f"Duplicated as {visible(copy.name)}")
        self.reload()

    @writes("archiving a cohort")
    @write_action("cohorts-write")
    async def action_archive(self) -> None:
        summary = self._selected()
        if summary is None:
            return
        store = self.app.store  # type: ignore[attr-defined]
        clock = self.app.clock  # type: ignore[attr-defined]
        archive = summary.status != "archived"
        await store.write(
            lambda d: d.control.set_cohort_archived(clock, summary.cohort_id, archive))
        if archive:
            self.notify(f"Archived {visible(summary.name)}")
        else:
            self.notify(f"Restored {visible(summary.name)}")
        self.reload()

    @writes("deleting a cohort")
    @write_action("cohorts-write")
    async def action_delete(self) -> None:
        summary = self._selected()
        if summary is None:
            return
        sure = await self.app.push_screen_wait(ConfirmScreen(
            f"Delete cohort {visible(summary.name)}?",
            f"Its {summary.members:,} member rows and retention snapshots go too. "
            "This cannot be undone.", yes="delete"))
        if not sure:
            return
        store = self.app.store  # type: ignore[attr-defined]
        await store.write(lambda d: d.control.delete_cohort(
            summary.cohort_id, expected_updated_at=summary.updated_at))
        self.notify(f"Deleted {visible(summary.name)}")
        self.reload()
