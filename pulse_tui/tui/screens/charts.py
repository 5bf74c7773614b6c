"""Pane 2, Daily charts: events, users and sessions per day, breakdown, top values, totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static
from textual_plotext import PlotextPlot

from pulse_tui.clock import format_ms
from pulse_tui.report_models import BreakdownRow, DailyRow, DateRange, RangeTotals, TopRow
from pulse_tui.textsafe import visible
from pulse_tui.tui.screens.base import PaneScreen
from pulse_tui.tui.widgets.share_table import ShareTable

TOP_DIMS: tuple[tuple[str, str], ...] = (
    ("url", "Top URLs"),
    ("referrer", "Top referrers"),
    ("country", "Top countries"),
    ("device_type", "Top devices"),
)


@dataclass(frozen=True)
class ChartData:
    site_id: str
    range: DateRange
    totals: RangeTotals
    daily: list[DailyRow]
    breakdown: list[BreakdownRow]
    top: list[TopRow]


def change_text(current: int, previous: int) -> Text:
    """▲ 12.3% / ▼ 4.0% / = against the previous period; 'new' when it was zero."""
    if previous == 0:
        return Text("new" if current else "–", style="dim")
    pct = (current - previous) / previous * 100
    if abs(pct) < 0.05:
        return Text("= 0.0%", style="dim")
    arrow, style = ("▲", "green") if pct > 0 else ("▼", "red")
    if abs(pct) >= 1000:  # the previous period barely had data: a number would mislead
        return Text(f"{arrow}>999%", style=style)
    return Text(f"{arrow}{abs(pct):.1f}%", style=style)


def day_ticks(days: list[date], max_ticks: int) -> tuple[list[int], list[str]]:
    """Positions and labels for at most ``max_ticks`` dates along the x axis."""
    if not days:
        return [], []
    step = max(1, -(-len(days) // max(1, max_ticks)))
    positions = list(range(0, len(days), step))
    return positions, [days[i].strftime("%m-%d") for i in positions]


def strip_common_origin(values: list[str]) -> tuple[list[str], str]:
    """URLs that all share one scheme://host are shown as paths, the host said once."""
    origins = {urlsplit(v)._replace(path="", query="", fragment="").geturl()
               for v in values if "://" in v}
    if len(origins) != 1 or any("://" not in v for v in values):
        return values, ""
    origin = origins.pop()
    return [v[len(origin):] or "/" for v in values], urlsplit(origin).netloc


def compact_number(value: float) -> str:
    """12 / 1.2k / 12k / 1.2M: axis labels that fit in a few columns."""
    value = float(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if scaled < 10 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}"


def value_ticks(top: float, count: int = 4) -> tuple[list[float], list[str]]:
    """Round, evenly spaced y ticks from 0 to at least ``top``."""
    if top <= 0:
        return [0.0], ["0"]
    raw = top / max(1, count)
    magnitude = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [i * step for i in range(count + 1) if i * step <= top + step]
    return ticks, [compact_number(t) for t in ticks]


class ChartPanel(Vertical, can_focus=True):
    """A focusable panel with a title line; tab and arrows move between panels."""

    def __init__(self, title: str, body: Widget, *, id: str) -> None:
        super().__init__(id=id, classes="chart-panel")
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        yield Static(Text(self.title_text, style="bold"), classes="panel-title")
        yield self.body

    def set_title(self, title: str) -> None:
        self.title_text = title
        self.query_one(".panel-title", Static).update(Text(title, style="bold"))


class ChartsScreen(PaneScreen):
    PANE = "charts"
    TITLE = "Daily charts"
    HELP = "Events, users and sessions per day; breakdowns and top values."

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    BINDINGS = [
        Binding("left_square_bracket", "shorter_range", "Shorter range"),
        Binding("right_square_bracket", "longer_range", "Longer range"),
        Binding("c", "custom_range", "Custom range"),
        Binding("d", "next_dimension", "Top: next"),
        Binding("right,down", "next_panel", "Next panel", show=False),
        Binding("left,up", "previous_panel", "Previous panel", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.dim_index = 0
        self.data: ChartData | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(id="charts-totals")
        with VerticalScroll(id="charts-body"):
            yield ChartPanel("Events per day", PlotextPlot(id="plot-events"), id="panel-events")
            yield ChartPanel("Users and sessions per day", PlotextPlot(id="plot-people"),
                             id="panel-people")
            yield ChartPanel("Events by type", ShareTable("event type", id="table-types"),
                             id="panel-types")
            yield ChartPanel(TOP_DIMS[0][1], ShareTable("value", id="table-top"),
                             id="panel-top")

    def on_mount(self) -> None:
        self.query_one("#panel-events").focus()
        self.reload()

    # ------------------------------------------------------------------ data
    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="charts-load", exit_on_error=False)
    async def _load(self) -> None:
        app = self.app
        store = app.store  # type: ignore[attr-defined]
        sites = await store.sites()
        if not sites:
            self.data = None
            self._show_empty()
            return
        site_id = app.site_id or sites[0].id  # type: ignore[attr-defined]
        rng: DateRange = app.current_range()  # type: ignore[attr-defined]
        dim = TOP_DIMS[self.dim_index][0]
        now = app.clock.now_ms()  # type: ignore[attr-defined]
        totals = await store.read(lambda d: d.events.range_totals(site_id, rng, now))
        daily = await store.read(lambda d: d.events.daily(site_id, rng))
        breakdown = await store.read(lambda d: d.events.breakdown(site_id, rng))
        top = await store.read(lambda d: d.events.top(site_id, rng, dim, 10))
        self.data = ChartData(site_id, rng, totals, daily, breakdown, top)
        self.call_after_refresh(self._show, self.data)  # after layout: sizes are final

    def _show_empty(self) -> None:
        settings = self.app.settings  # type: ignore[attr-defined]
        self.query_one("#charts-totals", Static).update(Text(
            f"No events yet. Drop CSV files into {settings.import_dir / 'events'} "
            "or run `pulse-tui simulate --rate 20`.", style="yellow"))

    def _show(self, data: ChartData) -> None:
        cur, prev = data.totals.current, data.totals.previous
        # wraps rather than cuts: the end of a custom range matters as much as its start
        line = Text()
        line.append(visible(data.site_id), style="bold underline")
        if not self.app.site_id:  # type: ignore[attr-defined]
            line.append(" (s: site)", style="dim")
        for label, now, before in (("events", cur.events, prev.events),
                                   ("users", cur.users, prev.users),
                                   ("sessions", cur.sessions, prev.sessions)):
            line.append(f"  {label} ", style="dim")
            line.append(f"{now:,} ", style="bold")
            line.append_text(change_text(now, before))
        until = data.totals.previous_until_ms
        line.append(f"   {data.range.start.isoformat()} → {data.range.end.isoformat()}"
                    f" vs previous {data.range.days} d"
                    + (f" to {format_ms(until, seconds=False)[11:]}" if until is not None else ""),
                    style="dim")
        self.query_one("#charts-totals", Static).update(line)

        days = [row.day for row in data.daily]
        xs = list(range(len(days)))
        events_plot = self.query_one("#plot-events", PlotextPlot)
        plt = events_plot.plt
        plt.clear_data()
        plt.clear_figure()
        if xs:
            values = [row.events for row in data.daily]
            plain = self._plain_markers()
            plt.bar(xs, values, marker="#" if plain else "hd", color="cyan")
            pos, labels = day_ticks(days, max(2, (events_plot.size.width or 60) // 10))
            plt.xticks(pos, labels)
            plt.yticks(*value_ticks(max(values)))
        plt.frame(False)
        events_plot.refresh()

        people_plot = self.query_one("#plot-people", PlotextPlot)
        plt = people_plot.plt
        plt.clear_data()
        plt.clear_figure()
        if xs:
            # without colour (NO_COLOR, plain consoles) the two lines differ by their marker
            plain = self._plain_markers()
            plt.plot(xs, [row.users for row in data.daily], label="users",
                     marker="*" if plain else "braille", color="green")
            plt.plot(xs, [row.sessions for row in data.daily], label="sessions",
                     marker="+" if plain else "braille", color="magenta")
            pos, labels = day_ticks(days, max(2, (people_plot.size.width or 60) // 10))
            plt.xticks(pos, labels)
            plt.yticks(*value_ticks(max(max(r.users, r.sessions) for r in data.daily)))
        plt.frame(False)
        people_plot.refresh()

        table_width = self.query_one("#table-types", ShareTable).size.width or (
            self.size.width // (2 if self.has_class("-wide") else 1) - 4)
        # the fixed columns (34) and each column's cell padding (8), one cell to spare
        label_width = max(12, table_width - 34 - 8 - 1)
        self.query_one("#table-types", ShareTable).show(
            [(r.event_type, r.events, r.users) for r in data.breakdown], cur.events,
            label_width)
        labels, host = strip_common_origin([r.value for r in data.top])
        self.query_one("#table-top", ShareTable).show(
            [(label, r.events, r.users) for label, r in zip(labels, data.top, strict=True)],
            cur.events, label_width)
        title = f"{TOP_DIMS[self.dim_index][1]}"
        if host:
            title += f" on {visible(host)}"
        self.query_one("#panel-top", ChartPanel).set_title(f"{title}  (d: next)")

    def _plain_markers(self) -> bool:
        return bool(getattr(self.app, "ascii", False) or self.app.no_color)

    def on_resize(self) -> None:
        """Ticks and table widths follow the panels: redraw from the data already loaded."""
        if self.data is not None:
            self.call_after_refresh(self._show, self.data)

    # ------------------------------------------------------------------ actions
    def action_shorter_range(self) -> None:
        self.app.step_range(-1)  # type: ignore[attr-defined]

    def action_longer_range(self) -> None:
        self.app.step_range(+1)  # type: ignore[attr-defined]

    def action_custom_range(self) -> None:
        self.app.action_custom_range()  # type: ignore[attr-defined]

    def action_next_dimension(self) -> None:
        self.dim_index = (self.dim_index + 1) % len(TOP_DIMS)
        self.query_one("#panel-top", ChartPanel).set_title(TOP_DIMS[self.dim_index][1])
        self.reload()

    def _panels(self) -> list[ChartPanel]:
        return list(self.query(ChartPanel))

    def _focused_panel_index(self) -> int:
        panels = self._panels()
        node = self.focused
        while node is not None and node not in panels:
            node = node.parent  # type: ignore[assignment]
        return panels.index(node) if node in panels else -1

    def action_next_panel(self) -> None:
        panels = self._panels()
        panels[(self._focused_panel_index() + 1) % len(panels)].focus()

    def action_previous_panel(self) -> None:
        panels = self._panels()
        panels[(self._focused_panel_index() - 1) % len(panels)].focus()
