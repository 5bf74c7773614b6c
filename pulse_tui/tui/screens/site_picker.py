"""Modal to choose the site every pane shows (or all sites)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from pulse_tui.models import Site
from pulse_tui.textsafe import visible
from pulse_tui.tui.screens.target_picker import OptionPickerScreen
from pulse_tui.tui.widgets.footer import PulseFooter

ALL = "\x00all"


class SitePickerScreen(OptionPickerScreen):
    """Dismisses with a site id, ALL for every site, or None when cancelled."""

    def __init__(self, sites: list[Site], current: str | None, *, allow_all: bool = True
                 ) -> None:
        super().__init__()
        self.sites = sites
        self.current = current
        self.highlight = current or ALL
        self.allow_all = allow_all

    def compose(self) -> ComposeResult:
        options = []
        if self.allow_all:
            options.append(Option("All sites", id=ALL))
        for site in self.sites:
            label = visible(site.id)
            if site.name and site.name != site.id:
                label += f" — {visible(site.name)}"
            options.append(Option(Text(label), id=site.id))
        with Vertical(id="site-picker", classes="modal"):
            yield Static("Choose a site (enter), escape to cancel")
            yield OptionList(*options, id="site-options")
        yield PulseFooter()  # the keys of the picker, not those of the pane below it
