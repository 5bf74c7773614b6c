"""The frame every pane shares: header on top, body, footer with the keys that work here."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from pulse_tui.tui.messages import DataChanged
from pulse_tui.tui.widgets.header import PulseHeader


class PaneScreen(Screen[None]):
    """A pane. Subclasses set PANE and TITLE and implement compose_body and reload."""

    PANE = ""
    TITLE = ""
    HELP = ""

    def __init__(self) -> None:
        super().__init__(id=f"pane-{self.PANE}")
        self._stale = False

    def compose(self) -> ComposeResult:
        yield PulseHeader(self.PANE)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_data_changed(self, message: DataChanged) -> None:
        if self.is_current:
            self.reload()
        else:
            self._stale = True

    def on_screen_resume(self) -> None:
        if self._stale:
            self._stale = False
            self.reload()

    def reload(self) -> None:
        """Fetch what this pane shows (in a worker)."""
