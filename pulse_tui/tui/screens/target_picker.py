"""Modal asking which row a command from the palette acts on (which rule, cohort, export…)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class OptionPickerScreen(ModalScreen[str | None]):
    """A modal list of options: opens on the option whose id is ``highlight``, dismisses with
    the chosen option's id, or None when cancelled (escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    highlight: str | None = None

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        for index in range(options.option_count):
            if options.get_option_at_index(index).id == self.highlight:
                options.highlighted = index
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, message: OptionList.OptionSelected) -> None:
        self.dismiss(message.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TargetPickerScreen(OptionPickerScreen):
    """Dismisses with the chosen row's key, or None when cancelled."""

    def __init__(self, question: str, choices: list[tuple[str, str]],
                 current: str | None = None) -> None:
        super().__init__()
        self.question = question
        self.choices = choices
        self.current = self.highlight = current

    def compose(self) -> ComposeResult:
        with Vertical(id="target-picker", classes="modal"):
            yield Static(Text(self.question, style="bold"))
            yield OptionList(*[Option(Text(label), id=key) for key, label in self.choices],
                             id="target-options")
            yield Static(Text("enter chooses · escape cancels", style="dim"))
