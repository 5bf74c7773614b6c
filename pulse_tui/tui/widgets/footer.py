"""The footer: the keys that work here, and always `? Help` and `q Quit`, whatever the width."""

from __future__ import annotations

from collections import defaultdict

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey, FooterLabel

PINNED = ("help", "quit")   # app actions that never leave the footer
MORE = "… ? more"
PALETTE_ROOM = 15           # "▏ ^p palette " docked on the right


def key_width(key_display: str, description: str) -> int:
    """Cells a FooterKey takes: " key " + "description "."""
    return len(key_display) + 2 + (len(description) + 1 if description else 0)


def fit_keys(widths: list[int], pinned: int, total: int) -> int:
    """How many of the pane's keys (in order) fit beside the pinned ones in ``total`` cells;
    when not all fit, room is kept for the "… ? more" marker."""
    room = total - pinned
    if sum(widths) <= room:
        return len(widths)
    room -= len(MORE) + 1
    used = shown = 0
    for width in widths:
        if used + width > room:
            break
        used += width
        shown += 1
    return shown


class PulseFooter(Footer):
    """Pane keys first, in the order the pane declares them, as many as fit; then the app's
    keys; `? Help` and `q Quit` are never dropped; `… ? more` says when keys were left out."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._width = 0
        self.hidden_keys: list[str] = []

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        by_action: dict[str, list[tuple[object, Binding, bool, str]]] = defaultdict(list)
        for node, binding, enabled, tooltip in active.values():
            if binding.show:
                by_action[binding.action].append((node, binding, enabled, tooltip))
        local, global_, pinned = [], [], []
        for action, entries in by_action.items():
            node, binding, enabled, tooltip = entries[0]
            item = (binding, enabled, tooltip)
            if isinstance(node, App) and action in PINNED:
                pinned.append(item)
            elif isinstance(node, App):
                global_.append(item)
            else:
                local.append(item)
        pinned.sort(key=lambda item: PINNED.index(item[0].action))
        optional = local + global_
        total = self._width or self.app.size.width
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            total -= PALETTE_ROOM
        widths = [key_width(self.app.get_key_display(b), b.description) for b, _, _ in optional]
        pinned_width = sum(key_width(self.app.get_key_display(b), b.description)
                           for b, _, _ in pinned)
        shown = fit_keys(widths, pinned_width, total)
        self.hidden_keys = [b.key for b, _, _ in optional[shown:]]
        for binding, enabled, tooltip in optional[:shown]:
            yield self._key(binding, enabled, tooltip)
        if shown < len(optional):
            yield FooterLabel(MORE, classes="footer-more")
        for binding, enabled, tooltip in pinned:
            yield self._key(binding, enabled, tooltip)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            try:
                _node, binding, enabled, tooltip = active[self.app.COMMAND_PALETTE_BINDING]
            except KeyError:
                pass
            else:
                yield FooterKey(binding.key, self.app.get_key_display(binding),
                                binding.description, binding.action,
                                classes="-command-palette", disabled=not enabled,
                                tooltip=binding.tooltip or binding.description)

    def _key(self, binding: Binding, enabled: bool, tooltip: str) -> FooterKey:
        return FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                         binding.action, disabled=not enabled,
                         tooltip=tooltip).data_bind(compact=Footer.compact)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:
            self._width = event.size.width
            if self._bindings_ready:
                self.call_after_refresh(self.recompose)
