"""Pane 1, Live events: newest first as they land from any writer; pause, filter, rate."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Select, Sparkline, Static

from pulse_tui.backend.interface import LiveCursor
from pulse_tui.models import SEARCH_SCAN, Event
from pulse_tui.textsafe import visible
from pulse_tui.tui.screens.base import PaneScreen
from pulse_tui.tui.screens.event_detail import EventDetailScreen
from pulse_tui.tui.widgets.columns import NavTable, cell

MAX_KEPT = 1000      # events kept in memory (bounded, whatever the rate)
MAX_SHOWN = 300      # rows in the table
RATE_SECONDS = 60    # sparkline span
ALL_TYPES = "__all__"


def event_time(ms: int, today_day: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms // 86_400_000 == today_day:
        return stamp.strftime("%H:%M:%S")
    return stamp.strftime("%m-%d %H:%M")


def matches(event: Event, event_type: str | None, text: str) -> bool:
    if event_type and event.event_type != event_type:
        return False
    if text:
        hay = " ".join(
            str(v) for v in (event.event_type, event.site_id, event.user_id, event.url,
                             event.referrer, event.country, event.device_type,
                             event.session_id, event.event_id) if v
        )
        return text.casefold() in hay.casefold()
    return True


class LiveScreen(PaneScreen):
    PANE = "live"
    TITLE = "Live events"
    HELP = "Newest events first, as they land from any writer."

    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("space", "toggle_pause", "Pause", show=False),
        Binding("slash", "focus_filter", "Filter"),
        Binding("t", "focus_type", "Type"),
        Binding("escape", "clear_filter", "Clear filter"),
        Binding("enter", "show_event", "Details", show=False),
    ]

    paused: reactive[bool] = reactive(False)

    def __init__(self) -> None:
        super().__init__()
        self.kept: deque[Event] = deque(maxlen=MAX_KEPT)
        self.cursor: LiveCursor | None = None  # where the tail stands (opaque, the backend's)
        self.last_seq = 0  # the newest arrival shown (Event.seq)
        self.missed = 0
        self.buckets: deque[int] = deque([0] * RATE_SECONDS, maxlen=RATE_SECONDS)
        self.filter_type: str | None = None
        self.filter_text = ""
        self._loaded = False
        self._column_spec: list[tuple[str, int]] = []
        self._rate_seq = 0
        self.shown: list[Event] = []
        self.found: list[Event] = []       # what the filter found in the database
        self.searched: tuple[str | None, str] | None = None  # the filter `found` answers

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="live-top"):
            yield Static(id="live-state")
            yield Sparkline(list(self.buckets), id="live-spark")
            yield Static(id="live-rate")
        with Horizontal(id="live-filters"):
            yield Select([], prompt="all event types", id="live-type", allow_blank=True,
                         compact=True)
            yield Input(placeholder="/ filter: text in url, user, site, type…", id="live-text",
                        compact=True)
        yield NavTable(id="live-table", cursor_type="row", zebra_stripes=True, cell_padding=0)

    def on_mount(self) -> None:
        table = self.query_one("#live-table", DataTable)
        self._add_columns(table)
        self.set_interval(1.0, self._tick)
        self._update_state()
        self.reload()
        table.focus()

    # ------------------------------------------------------------------ layout
    def _columns(self) -> list[tuple[str, int]]:
        """Column widths for the current width; the URL takes what is left."""
        width = max(40, self.size.width or 80)
        wide = width >= 100
        cols = [("time", 12), ("site", 10 if wide else 9), ("type", 12 if wide else 11),
                ("user", 18 if wide else 14), ("url", 0), ("ctry", 5)]
        if wide:
            cols.append(("device", 8))
            cols.append(("referrer", 0))
        fixed = sum(w for _, w in cols)
        flexible = [k for k, w in cols if w == 0]
        spare = max(12 * len(flexible), width - fixed - 2)
        shares = {k: spare // len(flexible) for k in flexible}
        if wide:
            shares["url"] = spare * 3 // 5
            shares["referrer"] = spare - shares["url"]
        return [(k, w or shares[k]) for k, w in cols]

    def _add_columns(self, table: DataTable) -> None:
        self._column_spec = self._columns()
        table.clear(columns=True)
        for key, w in self._column_spec:
            table.add_column(key, key=key, width=w)

    def on_resize(self) -> None:
        table = self.query_one("#live-table", DataTable)
        self._add_columns(table)
        self._render_rows()

    # ------------------------------------------------------------------ data
    def reload(self) -> None:
        if not self.paused:
            self._fetch()

    @work(exclusive=True, group="live-fetch", exit_on_error=False)
    async def _fetch(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        site = self.app.site_id  # type: ignore[attr-defined]
        after = self.cursor
        page = await store.read(lambda d: d.events.tail(after=after, site_id=site, limit=MAX_KEPT))
        new = page.events
        self.cursor = page.cursor
        if new and not self._loaded:
            self._rate_seq = new[0].seq  # what was there before we looked is not a rate
        if not new:
            if not self._loaded:
                self._loaded = True
                self._render_rows()
            return
        self.last_seq = max(self.last_seq, new[0].seq)
        if self._loaded:
            self._count_rate(new)
        self._loaded = True
        for event in reversed(new):
            self.kept.appendleft(event)
        self._render_rows()
        self._update_state()

    def _count_rate(self, events: list[Event]) -> None:
        """Add newly seen arrivals to this second's bucket, once each (paused or not); events
        stamped more than a minute ago are backfill (an import), not live traffic."""
        recent = self.app.clock.now_ms() - 60_000  # type: ignore[attr-defined]
        fresh = [e for e in events if e.seq > self._rate_seq]
        if fresh:
            self._rate_seq = max(e.seq for e in fresh)
            self.buckets[-1] += sum(1 for e in fresh if e.timestamp_ms >= recent)

    def restart(self) -> None:
        """Start over (the site changed)."""
        self.kept.clear()
        self.cursor = None
        self.last_seq = 0
        self._loaded = False
        self.missed = 0
        self.searched = None
        self._fetch()
        self._search()

    def _tick(self) -> None:
        self.buckets.append(0)
        self.query_one("#live-spark", Sparkline).data = list(self.buckets)
        self._update_state()

    def rate(self) -> float:
        recent = list(self.buckets)[-11:-1]
        return sum(recent) / max(1, len(recent))

    def _update_state(self) -> None:
        state = Text()
        if self.paused:
            state.append(" ⏸ PAUSED ", style="bold reverse yellow")
            if self.missed:
                state.append(f" {self.missed} new", style="yellow")
        else:
            state.append(" ● LIVE ", style="bold reverse green")
        self.query_one("#live-state", Static).update(state)
        rate = Text()
        rate.append(f"{self.rate():6.1f}", style="bold")
        rate.append(" ev/s ")
        self.query_one("#live-rate", Static).update(rate)

    def _filtering(self) -> bool:
        return bool(self.filter_type or self.filter_text)

    def _render_rows(self) -> None:
        table = self.query_one("#live-table", NavTable)
        today = self.app.clock.now_ms() // 86_400_000  # type: ignore[attr-defined]
        rows = [e for e in self.kept if matches(e, self.filter_type, self.filter_text)]
        if self._filtering() and self.searched == (self.filter_type, self.filter_text):
            seen = {e.seq for e in rows}
            rows += [e for e in self.found if e.seq not in seen]
            rows.sort(key=lambda e: e.seq, reverse=True)
        table.clear()
        columns = self._column_spec  # the columns the table has now
        for e in rows[:MAX_SHOWN]:
            values = {  # value, style, how to cut it
                "time": (event_time(e.timestamp_ms, today), "", "end"),
                "site": (e.site_id, "", "middle"),
                "type": (e.event_type, _type_style(e.event_type), "end"),
                "user": (e.user_id, "", "middle"),
                "url": (e.url, "", "url"),
                "ctry": (e.country, "", "end"),
                "device": (e.device_type, "", "end"),
                "referrer": (e.referrer, "", "url"),
            }
            cells = []
            for key, w in columns:
                value, style, how = values[key]
                cells.append(cell(value, w, style=style, cut=how))
            table.add_row(*cells, key=str(e.seq))
        self.shown = rows[:MAX_SHOWN]
        table.show_empty(None if rows or not self._loaded else self._empty_text())
        self._refresh_types()

    def _empty_text(self) -> str:
        if self._filtering():
            if self.searched != (self.filter_type, self.filter_text):
                return "searching the database…"
            what = f"{self.filter_type} events" if self.filter_type else "events"
            if self.filter_text:
                return (f'no {visible(what)} match "{visible(self.filter_text)}" among the '
                        f"latest {SEARCH_SCAN:,}: escape clears the filter")
            return f"no {visible(what)} among the latest {SEARCH_SCAN:,}: escape clears it"
        site = self.app.site_id  # type: ignore[attr-defined]
        if site:
            return f"no events on site {visible(site)} yet: s shows all sites"
        settings = self.app.settings  # type: ignore[attr-defined]
        return (f"no events yet: drop CSV files into {settings.import_dir / 'events'} "
                "or run pulse-tui simulate --rate 20")

    @work(exclusive=True, group="live-search", exit_on_error=False)
    async def _search(self) -> None:
        """The filter searches the database's recent events, not only the rows kept here."""
        import asyncio

        wanted = (self.filter_type, self.filter_text)
        if not self._filtering():
            self.found, self.searched = [], None
            return
        await asyncio.sleep(0.25)  # typing: search once the text holds still
        store = self.app.store  # type: ignore[attr-defined]
        text, event_type = self.filter_text, self.filter_type
        site = self.app.site_id  # type: ignore[attr-defined]
        found = await store.read(lambda d: d.events.search(
            text=text, event_type=event_type, site_id=site, limit=MAX_SHOWN))
        if wanted == (self.filter_type, self.filter_text):
            self.found, self.searched = found, wanted
            self._render_rows()

    def _refresh_types(self) -> None:
        select = self.query_one("#live-type", Select)
        types = sorted({e.event_type for e in self.kept} | (
            {self.filter_type} if self.filter_type else set()))
        current = [str(v) for _, v in getattr(select, "_options", [])[1:]]
        if types != current:
            with select.prevent(Select.Changed):
                select.set_options([(Text(visible(t)), t) for t in types])
                if self.filter_type:
                    select.value = self.filter_type

    # ------------------------------------------------------------------ actions
    def watch_paused(self, paused: bool) -> None:
        if self.is_mounted:
            self._update_state()
            if not paused:
                self.missed = 0
                self._fetch()

    def on_data_changed(self, message: object) -> None:
        if self.paused:
            self.missed += 1 if not self.missed else 0
            self._count_missed()
            return
        super().on_data_changed(message)  # type: ignore[arg-type]

    @work(exclusive=True, group="live-missed", exit_on_error=False)
    async def _count_missed(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        site = self.app.site_id  # type: ignore[attr-defined]
        after = self.cursor
        page = await store.read(lambda d: d.events.tail(after=after, site_id=site, limit=MAX_KEPT))
        newer = page.events
        self.missed = len(newer)
        self._count_rate(newer)
        self._update_state()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def action_focus_filter(self) -> None:
        self.query_one("#live-text", Input).focus()

    def action_focus_type(self) -> None:
        """Focus the type list and open it, so the key shows what it did."""
        select = self.query_one("#live-type", Select)
        select.focus()
        select.action_show_overlay()

    def action_clear_filter(self) -> None:
        text = self.query_one("#live-text", Input)
        select = self.query_one("#live-type", Select)
        if text.value or self.filter_type:
            text.value = ""
            select.clear()
            self.filter_text = ""
            self.filter_type = None
            self._search()
            self._render_rows()
        self.query_one("#live-table", DataTable).focus()

    def action_show_event(self) -> None:
        table = self.query_one("#live-table", DataTable)
        if table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        event = next((e for e in (*self.kept, *self.found) if str(e.seq) == key), None)
        if event:
            self.app.push_screen(EventDetailScreen(event))

    @on(Input.Changed, "#live-text")
    def _text_changed(self, message: Input.Changed) -> None:
        self.filter_text = message.value.strip()
        self._search()
        self._render_rows()

    @on(Input.Submitted, "#live-text")
    def _text_submitted(self) -> None:
        self.query_one("#live-table", DataTable).focus()

    @on(Select.Changed, "#live-type")
    def _type_changed(self, message: Select.Changed) -> None:
        value = message.value
        self.filter_type = None if value is Select.NULL or value is None else str(value)
        self._search()
        self._render_rows()

    @on(DataTable.RowSelected, "#live-table")
    def _row_selected(self) -> None:
        self.action_show_event()


def _type_style(event_type: str) -> str:
    return {
        "pageview": "",
        "signup": "bold green",
        "purchase": "bold magenta",
        "login": "cyan",
    }.get(event_type, "yellow")
