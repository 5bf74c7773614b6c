"""The help screen: every key of every pane, and the effective paths."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def _key_label(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc",
             "enter": "enter", "ctrl+p": "ctrl+p", "left_square_bracket": "[",
             "right_square_bracket": "]"}
    return ", ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]],
                 paths: list[tuple[str, str]], start: str | None = None) -> None:
        super().__init__()
        self.sections = sections
        self.paths = paths
        self.start = start  # the section shown first: the pane the operator is on

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="modal"):
            yield Static(Text("PULSE TUI — keys", style="bold"))
            for index, (title, keys) in enumerate(self.sections):
                table = Table(title=title, title_justify="left", show_header=False,
                              box=None, padding=(0, 2), title_style="bold")
                table.add_column(style="bold cyan", no_wrap=True, min_width=10)
                table.add_column()
                for key, description in keys:
                    table.add_row(_key_label(key), description)
                yield Static(table, id=f"help-section-{index}",
                             classes="help-section -current" if title == self.start
                             else "help-section")
            paths = Table(title="Paths", title_justify="left", show_header=False, box=None,
                          padding=(0, 2), title_style="bold")
            paths.add_column(style="dim", no_wrap=True)
            paths.add_column(overflow="fold")
            for name, value in self.paths:
                paths.add_row(name, Text(value))
            yield Static(paths)
            yield Static(Text("escape closes · arrows and PageUp/PageDown scroll", style="dim"))

    def on_mount(self) -> None:
        scroll = self.query_one("#help", VerticalScroll)
        scroll.focus()
        self.call_after_refresh(self._scroll_to_current, 20)

    def _scroll_to_current(self, tries: int) -> None:
        """Bring the current pane's section to the top once the content is laid out (the first
        refresh can come before the scrollable height is known)."""
        scroll = self.query_one("#help", VerticalScroll)
        current = self.query(".help-section.-current")
        if not current:
            return
        target = current.first()
        if (scroll.max_scroll_y == 0 or target.region.height == 0) and tries > 0:
            self.set_timer(0.02, lambda: self._scroll_to_current(tries - 1))
            return
        scroll.scroll_to_widget(target, animate=False, top=True)

    @property
    def current_section(self) -> str | None:
        """The title of the section the help opened at."""
        return self.start
