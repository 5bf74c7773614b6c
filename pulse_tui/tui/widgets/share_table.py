"""A ranked table with a share bar: breakdowns and top-N values, literal text only."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from pulse_tui.textsafe import visible

BAR_WIDTH = 10
EIGHTHS = " ▏▎▍▌▋▊▉█"


def share_bar(share: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``width`` cells for a share in 0..1 (eighth-cell precision)."""
    share = min(1.0, max(0.0, share))
    eighths = round(share * width * 8)
    full, rest = divmod(eighths, 8)
    bar = "█" * full + (EIGHTHS[rest] if rest else "")
    return bar.ljust(width)


class ShareTable(DataTable):
    """Rows of (label, events, users) with each row's share of all events."""

    DEFAULT_CSS = "ShareTable { height: 1fr; }"

    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="none", zebra_stripes=True)
        self.can_focus = False  # the panel around it takes focus; tab moves between panels
        self.label = label

    def show(self, rows: Sequence[tuple[str, int, int]], total_events: int,
             label_width: int = 30) -> None:
        self.clear(columns=True)
        self.add_column(self.label, key="label", width=label_width)
        self.add_column(Text("events", justify="right"), key="events", width=9)
        self.add_column("share", key="share", width=BAR_WIDTH + 7)
        self.add_column(Text("users", justify="right"), key="users", width=8)
        for label, events, users in rows:
            share = events / total_events if total_events else 0.0
            name = Text(visible(label), no_wrap=True)
            name.truncate(label_width, overflow="ellipsis")
            self.add_row(
                name,
                Text(f"{events:,}", justify="right"),
                Text(f"{share_bar(share)} {share:5.1%}", style="cyan"),
                Text(f"{users:,}", justify="right"),
            )
