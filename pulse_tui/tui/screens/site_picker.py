"""Modal to choose the site every pane shows (or all sites)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from pulse_tui.models import Site
from pulse_tui.textsafe import visible
from pulse_tui.tui.widgets.footer import PulseFooter

ALL = "\x00all"


class SitePickerScreen(ModalScreen[str | None]):
    """Dismisses with a site id, ALL for every site, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, sites: list[Site], current: str | None, *, allow_all: bool = True
                 ) -> None:
        super().__init__()
        self.sites = sites
        self.current = current
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

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        target = self.current or ALL
        for index in range(options.option_count):
            if options.get_option_at_index(index).id == target:
                options.highlighted = index
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, message: OptionList.OptionSelected) -> None:
        self.dismiss(message.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
