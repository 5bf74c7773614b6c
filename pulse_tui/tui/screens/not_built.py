"""Panes whose feature is not built yet: one honest line, no fake data."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from pulse_tui.tui.screens.base import PaneScreen


def not_built_pane(pane: str, title: str, issue: int) -> type[PaneScreen]:
    class NotBuilt(PaneScreen):
        PANE = pane
        TITLE = title

        def compose_body(self) -> ComposeResult:
            yield Static(f"{title}: not built yet (issue {issue}).", classes="not-built")

    NotBuilt.__name__ = f"{pane.title()}NotBuilt"
    return NotBuilt
