"""The two-line header: pane tabs, then site, range, worker state and database."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from pulse_tui.textsafe import visible

PANES: tuple[tuple[str, str, str], ...] = (
    ("1", "live", "Live"),
    ("2", "charts", "Charts"),
    ("3", "cohorts", "Cohorts"),
    ("4", "retention", "Retention"),
    ("5", "alerts", "Alerts"),
    ("6", "jobs", "Jobs"),
)


class PulseHeader(Vertical):
    """Shows where the operator is; reads the app's reactive state, never the database."""

    DEFAULT_CSS = """
    PulseHeader { height: 2; dock: top; }
    PulseHeader > Static { height: 1; }
    """

    def __init__(self, active: str) -> None:
        super().__init__()
        self.active = active

    def compose(self) -> ComposeResult:
        yield Static(id="header-tabs")
        yield Static(id="header-status")

    def on_mount(self) -> None:
        for attr in ("site_id", "range_label", "worker_state", "firing_alerts"):
            self.watch(self.app, attr, self._refresh, init=False)
        self._refresh()

    def _refresh(self, *_: object) -> None:
        app = self.app
        tabs = Text()
        tabs.append(" PULSE ", style="bold reverse")
        for key, pane, label in PANES:
            style = "bold reverse" if pane == self.active else "dim"
            tabs.append(" ")
            tabs.append(f"{key} {label}", style=style)
        firing = getattr(app, "firing_alerts", 0)
        if firing:
            tabs.append("  ")
            tabs.append(f" ▲ {firing} firing ", style="bold reverse red")
        self.query_one("#header-tabs", Static).update(tabs)

        status = Text(no_wrap=True, overflow="ellipsis")
        site = getattr(app, "site_id", None)
        status.append(" site ", style="dim")
        status.append(visible(site) if site else "all", style="bold")
        status.append("  range ", style="dim")
        status.append(str(getattr(app, "range_label", "")), style="bold")
        status.append("  worker ", style="dim")
        state = str(getattr(app, "worker_state", "off"))
        colour = {"running": "green", "standby": "yellow", "error": "red"}.get(
            state.split(" ", 1)[0], "")
        status.append(visible(state), style=f"bold {colour}".strip())
        status.append("  db ", style="dim")
        status.append(visible(getattr(app, "db_label", "")))
        if getattr(app, "read_only", False):
            status.append("  read-only", style="bold reverse")
        status.truncate(max(10, self.app.size.width), overflow="ellipsis")
        self.query_one("#header-status", Static).update(status)
