"""The frame every pane shares: header on top, body, footer with the keys that work here."""

from __future__ import annotations

import logging

from textual.app import ComposeResult
from textual.screen import Screen

from pulse_tui.tui.guards import ReportsWorkerErrors, WriteGuard
from pulse_tui.tui.messages import DataChanged
from pulse_tui.tui.widgets.footer import PulseFooter
from pulse_tui.tui.widgets.header import PulseHeader

log = logging.getLogger(__name__)


class PaneScreen(WriteGuard, ReportsWorkerErrors, Screen[None]):
    """A pane. Subclasses set PANE and TITLE and implement compose_body and reload."""

    PANE = ""
    TITLE = ""
    HELP = ""
    # actions that act on a row: action -> (table id, what a row is); the palette asks which
    TARGETS: dict[str, tuple[str, str]] = {}
    # actions with no key of their own, offered in the palette: (action, description)
    PALETTE_ONLY: tuple[tuple[str, str], ...] = ()

    def __init__(self) -> None:
        super().__init__(id=f"pane-{self.PANE}")
        self._stale = False

    def compose(self) -> ComposeResult:
        yield PulseHeader(self.PANE)
        yield from self.compose_body()
        yield PulseFooter()

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

    async def site_for_new(self) -> str | None:
        """The site a new cohort, rule or export belongs to: the chosen one, the only one, or
        asked for (None when there is no site yet or the operator cancels). Call from a worker."""
        from pulse_tui.tui.screens.site_picker import SitePickerScreen

        site = self.app.site_id  # type: ignore[attr-defined]
        if site:
            return site
        sites = await self.app.store.sites()  # type: ignore[attr-defined]
        if not sites:
            self.notify("No site yet: import or simulate some events first.",
                        severity="warning")
            return None
        if len(sites) == 1:
            return sites[0].id
        return await self.app.push_screen_wait(SitePickerScreen(sites, None, allow_all=False))
