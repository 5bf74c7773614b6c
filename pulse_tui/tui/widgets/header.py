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
            state.split(" ", 1)[0].rstrip(":"), "")
        read_only = "  read-only" if getattr(app, "read_only", False) else ""
        room = self.app.size.width - status.cell_len - len("  db ") - len(read_only)
        state_text, db_text = fit_status(visible(state), visible(getattr(app, "db_label", "")),
                                         room)
        status.append(state_text, style=f"bold {colour}".strip())
        status.append("  db ", style="dim")
        status.append(db_text)
        if read_only:
            status.append(read_only, style="bold reverse")
        status.truncate(max(10, self.app.size.width), overflow="ellipsis")
        self.query_one("#header-status", Static).update(status)


MIN_PATH = 20  # cells the database label keeps before the worker state gives way


def shorten_path(path: str, width: int) -> str:
    """``path`` in at most ``width`` cells: whole when it fits, else its start and its file
    name around a middle ellipsis (``prod…/pulse.db``), else the end of the name."""
    if len(path) <= width:
        return path
    if width <= 1:
        return "…"[:max(width, 0)]
    cut = path.rfind("/")
    name = path[cut:] if cut >= 0 else path
    head = width - len(name) - 1
    if head < 1:
        return "…" + name[len(name) - (width - 1):]
    return path[:head] + "…" + name


def fit_status(state: str, db: str, room: int) -> tuple[str, str]:
    """The worker state and the database label sharing ``room`` cells of header line 2: a
    standby's "lease held by pid N on host H" says "pid N on H", then the label is shortened
    in the middle (at least MIN_PATH cells), then the state is cut at its end."""
    if len(state) + len(db) <= room:
        return state, db
    state = state.replace("lease held by ", "").replace(" on host ", " on ")
    if len(state) + len(db) <= room:
        return state, db
    db = shorten_path(db, max(room - len(state), min(len(db), MIN_PATH)))
    if len(state) + len(db) > room and room - len(db) >= 2:
        state = state[:room - len(db) - 1] + "…"
    return state, db
