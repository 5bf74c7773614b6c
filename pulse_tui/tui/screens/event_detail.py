"""Modal with every field of one event, shown literally."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from pulse_tui.clock import format_ms
from pulse_tui.models import Event
from pulse_tui.textsafe import visible


class EventDetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        e = self.event
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in (
            ("event_id", e.event_id), ("site_id", e.site_id), ("event_type", e.event_type),
            ("time (UTC)", format_ms(e.timestamp_ms)), ("timestamp_ms", e.timestamp_ms),
            ("session_id", e.session_id), ("user_id", e.user_id), ("url", e.url),
            ("referrer", e.referrer), ("country", e.country), ("device_type", e.device_type),
            ("stored at", format_ms(e.created_at)),
        ):
            grid.add_row(name, Text(visible(value, none="(none)")))
        with Vertical(id="event-detail", classes="modal"):
            yield Static(Text("Event", style="bold"))
            yield Static(grid)
            yield Static(Text("escape closes", style="dim"))
