"""Pane 4, Retention grid: weekly acquisition cohorts and saved cohorts, weeks 0..12, shaded."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from pulse_tui.clock import format_ms
from pulse_tui.models import ACQUISITION, WEEKS, RetentionCell, RetentionGrid, RetentionRow
from pulse_tui.textsafe import visible
from pulse_tui.tui.guards import write_action, writes
from pulse_tui.tui.screens.base import PaneScreen
from pulse_tui.tui.screens.retention_cell import RetentionCellScreen
from pulse_tui.tui.widgets.columns import NavTable, distinct_labels

# the ramp varies colour AND glyph, so it reads in 256 colours, 16 colours and monochrome
RAMP: tuple[tuple[float, str, str], ...] = (
    (0.00, " ", "on grey15"),
    (0.05, "░", "on dark_green"),
    (0.15, "▒", "on green4"),
    (0.30, "▓", "on green3"),
    (0.60, "█", "black on green1"),
)
VIEWS = ("all", "acquisition", "cohorts")
CELL_WIDTH = 6
LABEL_WIDTH = 20  # with the size and six week columns: 79 cells, so 80x24 needs no scrolling


def shade(rate: float | None, *, users: bool = True) -> Text:
    """A cell: glyph + percentage on a background by value; '…' where the week has not ended;
    '–' for a cohort without users (no share to show)."""
    if rate is None:
        return Text("  …   ", style="dim")
    if not users:
        return Text("  –   ", style="dim")
    glyph, style = RAMP[0][1], RAMP[0][2]
    for threshold, g, s in RAMP:
        if rate >= threshold:
            glyph, style = g, s
    pct = f"{rate * 100:3.0f}%"
    return Text(f"{glyph}{pct} ", style=style)


class RetentionScreen(PaneScreen):
    PANE = "retention"
    TITLE = "Retention"
    HELP = "Weekly retention: acquisition weeks of the range and saved cohorts."

    BINDINGS = [
        Binding("enter", "open_cell", "Cell details", show=False),
        Binding("r", "recompute", "Recompute"),
        Binding("t", "toggle_view", "Acquisition/cohorts"),
        Binding("left_square_bracket", "shorter_range", "Shorter range", show=False),
        Binding("right_square_bracket", "longer_range", "Longer range", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.grid: RetentionGrid | None = None
        self.view = 0
        self.rows: dict[str, RetentionRow] = {}
        self._auto_computed: set[tuple[str, str, str]] = set()

    def compose_body(self) -> ComposeResult:
        yield Static(id="retention-title", classes="section-title")
        table = NavTable(id="retention-table", cursor_type="cell", zebra_stripes=False,
                         fixed_columns=2)
        yield table
        yield Static(id="retention-legend", classes="section-title")

    def on_mount(self) -> None:
        table = self.query_one("#retention-table", DataTable)
        self._columns(table, WEEKS)
        legend = Text()
        for threshold, glyph, style in RAMP[1:]:
            legend.append(f"{glyph}≥{threshold:.0%}", style=style)
            legend.append(" ")
        legend.append(" … not ended · enter numbers · t view · r recompute", style="dim")
        self.query_one("#retention-legend", Static).update(legend)
        table.focus()
        self.reload()

    def reload(self) -> None:
        self._load()

    @staticmethod
    def _columns(table: DataTable, weeks: int) -> None:
        """The label, size and week 0 .. weeks-1 columns (rebuilt when the count changes)."""
        if len(table.columns) == weeks + 2:
            return
        table.clear(columns=True)
        table.add_column("cohort", key="label", width=LABEL_WIDTH)
        table.add_column(Text("size", justify="right"), key="size", width=7)
        for k in range(weeks):
            table.add_column(Text(f"w{k}", justify="right"), key=f"w{k}", width=CELL_WIDTH)

    async def _site(self) -> str | None:
        site = self.app.site_id  # type: ignore[attr-defined]
        if site:
            return site
        sites = await self.app.store.sites()  # type: ignore[attr-defined]
        return sites[0].id if sites else None

    @work(exclusive=True, group="retention-load", exit_on_error=False)
    async def _load(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        site = await self._site()
        title = self.query_one("#retention-title", Static)
        if site is None:
            title.update(Text("No events yet: nothing to measure.", style="yellow"))
            return
        rng = self.app.current_range()  # type: ignore[attr-defined]
        grid = await store.read(lambda d: d.events.retention_grid(site, rng.start, rng.end))
        key = (site, rng.start.isoformat(), rng.end.isoformat())
        missing = any(r.captured_at is None for r in (*grid.acquisition, *grid.cohorts))
        if missing and getattr(self.app, "read_only", False):
            # a read-only session computes the grid live and stores nothing
            now_ms = self.app.clock.now_ms()  # type: ignore[attr-defined]
            grid = await store.read(
                lambda d: d.events.compute_retention(site, rng.start, rng.end, now_ms))
        elif missing and key not in self._auto_computed:
            # never snapshotted for this site and range: compute once, then read snapshots
            self._auto_computed.add(key)
            title.update(Text("computing retention…", style="yellow"))
            clock = self.app.clock  # type: ignore[attr-defined]
            grid = await store.write(
                lambda d: d.events.refresh_retention(site, clock, rng.start, rng.end))
        self.grid = grid
        self._show()

    def _show(self) -> None:
        grid = self.grid
        if grid is None:
            return
        table = self.query_one("#retention-table", DataTable)
        keep = table.cursor_coordinate
        table.clear()
        self.rows = {}
        view = VIEWS[self.view]
        rows: list[RetentionRow] = []
        if view in ("all", "acquisition"):
            rows.extend(grid.acquisition)
        if view in ("all", "cohorts"):
            rows.extend(grid.cohorts)
        # weeks 0 .. 12 as far as they fit; on a narrow screen at least up to the first week
        # that has ended for no row (later ones only say "not ended"), so the default 30 days
        # fit 80 columns without scrolling
        ended = [c.week_number for row in rows for c in row.cells if c.returning is not None]
        needed = min(WEEKS, max(ended, default=WEEKS - 2) + 2)
        width = table.size.width or self.app.size.width
        fit = (width - (LABEL_WIDTH + 2) - (7 + 2)) // (CELL_WIDTH + 2)
        weeks = max(needed, min(WEEKS, fit))
        self._columns(table, weeks)
        labels = distinct_labels([visible(row.label) for row in rows], LABEL_WIDTH - 1)
        for row, shown in zip(rows, labels, strict=True):
            key = f"{row.kind}:{row.key}"
            self.rows[key] = row
            label = Text(shown, no_wrap=True, style="bold" if row.kind != ACQUISITION else "")
            cells = [shade(c.rate, users=bool(c.base)) for c in row.cells[:weeks]]
            cells += [Text("")] * (weeks - len(cells))
            table.add_row(label, Text(f"{row.size:,}", justify="right"), *cells, key=key)
        if table.row_count:
            table.cursor_coordinate = keep if keep.row < table.row_count else keep._replace(row=0)
        empty = {"acquisition": "no acquisition week in this range: [ and ] change the range",
                 "cohorts": "no saved cohort on this site: 3 Cohorts, n adds one; t switches "
                            "the view",
                 "all": "no users in this range: [ and ] change the range, s the site"}
        table.show_empty(None if table.row_count else empty[view])
        captured = format_ms(grid.captured_at, seconds=False) if grid.captured_at else "never"
        # wraps rather than cuts; "all sites" shows one site, and says how to pick another
        title = Text()
        title.append(visible(grid.site_id), style="bold underline")
        if not self.app.site_id:  # type: ignore[attr-defined]
            title.append(" (s: site)", style="dim")
        title.append(f"  {len(grid.acquisition)} week(s) from {grid.start.isoformat()}"
                     f" · {len(grid.cohorts)} cohort(s)")
        title.append(f"  view {view}", style="bold")
        title.append(f"  captured {captured}", style="dim")
        self.query_one("#retention-title", Static).update(title)

    # ------------------------------------------------------------------ actions
    def on_resize(self) -> None:
        self._show()  # as many week columns as fit

    def action_toggle_view(self) -> None:
        self.view = (self.view + 1) % len(VIEWS)
        self._show()

    def action_shorter_range(self) -> None:
        self.app.step_range(-1)  # type: ignore[attr-defined]

    def action_longer_range(self) -> None:
        self.app.step_range(+1)  # type: ignore[attr-defined]

    @writes("recomputing retention")
    @write_action("retention-write")
    async def action_recompute(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        site = await self._site()
        if site is None:
            return
        rng = self.app.current_range()  # type: ignore[attr-defined]
        self.query_one("#retention-title", Static).update(
            Text("recomputing retention for every cohort of the site…", style="yellow"))
        clock = self.app.clock  # type: ignore[attr-defined]
        self.grid = await store.write(
            lambda d: d.events.refresh_retention(site, clock, rng.start, rng.end))
        self._show()
        self.notify("Retention recomputed.")

    def _selected_cell(self) -> tuple[RetentionRow, RetentionCell] | None:
        table = self.query_one("#retention-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate)
        row = self.rows.get(str(key.row_key.value))
        column = str(key.column_key.value)
        if row is None or not column.startswith("w"):
            return None
        week = int(column[1:])
        if week >= len(row.cells):
            return None
        return row, row.cells[week]

    @on(DataTable.CellSelected, "#retention-table")
    def _cell_chosen(self) -> None:
        self.action_open_cell()

    @write_action("retention-write")
    async def action_open_cell(self) -> None:
        chosen = self._selected_cell()
        if chosen is None:
            return
        row, cell = chosen
        name = await self.app.push_screen_wait(RetentionCellScreen(row, cell))
        if not name:
            return
        store = self.app.store  # type: ignore[attr-defined]
        now = self.app.clock.now_ms()  # type: ignore[attr-defined]
        users = await store.read(
            lambda d: d.events.retention_cell_users(row, cell.week_number, now))
        if not users:
            self.notify("No users in this cell.", severity="warning")
            return
        await store.write(
            lambda d: d.events.save_users_as_static_cohort(row.site_id, name, users, now))
        self.notify(f"Saved {len(users):,} users as static cohort {visible(name)}.")
        self.reload()
