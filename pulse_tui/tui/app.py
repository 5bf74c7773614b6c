"""PulseApp: owns the Store, switches panes, watches for data changes, runs the worker."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from pathlib import Path

from textual import on, work
from textual.actions import ActionParseResult
from textual.actions import parse as parse_action
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.dom import DOMNode
from textual.filter import Monochrome, NoColor
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen

from pulse_tui.backend.access import Store
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.errors import PulseError
from pulse_tui.report_models import DateRange, make_range
from pulse_tui.textsafe import visible
from pulse_tui.tui.ascii import AsciiFilter, term_is_plain
from pulse_tui.tui.guards import ReportsWorkerErrors, declared_write, refusal
from pulse_tui.tui.messages import BackgroundWorkerEvent, BackgroundWorkerState, DataChanged
from pulse_tui.tui.screens.alerts import AlertsScreen
from pulse_tui.tui.screens.base import PaneScreen
from pulse_tui.tui.screens.charts import ChartsScreen
from pulse_tui.tui.screens.cohorts import CohortsScreen
from pulse_tui.tui.screens.help import HelpScreen
from pulse_tui.tui.screens.jobs import JobsScreen
from pulse_tui.tui.screens.live import LiveScreen
from pulse_tui.tui.screens.range_picker import RangePickerScreen
from pulse_tui.tui.screens.retention import RetentionScreen
from pulse_tui.tui.screens.site_picker import ALL, SitePickerScreen
from pulse_tui.tui.widgets.header import PANES

log = logging.getLogger(__name__)

CHANGE_POLL_SECONDS = 0.25

# range presets: (name, days); "custom" holds dates typed by the operator
RANGE_PRESETS: tuple[tuple[str, int], ...] = (("today", 1), ("7d", 7), ("30d", 30), ("90d", 90))


def stylesheet_path() -> Path:
    """pulse.tcss: inside the installed package, or at the repository root in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "pulse.tcss", here.parent / "pulse.tcss"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("pulse.tcss not found beside the package")


def pane_classes() -> dict[str, type[PaneScreen]]:
    """The six panes; ones not built yet say so in one line."""
    panes: dict[str, type[PaneScreen]] = {
        "live": LiveScreen,
        "charts": ChartsScreen,
        "cohorts": CohortsScreen,
        "retention": RetentionScreen,
        "alerts": AlertsScreen,
        "jobs": JobsScreen,
    }
    return panes


class PulseApp(ReportsWorkerErrors, App[None]):
    """The PULSE operator's console."""

    CSS_PATH = str(stylesheet_path())
    TITLE = "PULSE"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        *[Binding(key, f"show_pane('{pane}')", label, show=False) for key, pane, label in PANES],
        Binding("s", "pick_site", "Site"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    site_id: reactive[str | None] = reactive(None)
    range_preset: reactive[str] = reactive("30d")
    range_label: reactive[str] = reactive("30d")
    worker_state: reactive[str] = reactive("off")
    firing_alerts: reactive[int] = reactive(0)

    def __init__(self, settings: Settings, *, clock: Clock | None = None, demo: bool = False,
                 worker: bool = True, watch_changes: bool = True,
                 read_only: bool = False) -> None:
        self.settings = settings
        self.read_only = read_only
        self.clock = clock or Clock.from_env()
        self.store = Store(settings.db, self.clock, events_store=settings.events_store,
                           cluster=settings.clickhouse_cluster, read_only=read_only)
        self.demo = demo
        self.worker_enabled = worker
        self.watch_changes = watch_changes
        self.db_label = _short_path(settings.db)
        self._panes = pane_classes()
        self.MODES = {name: cls for name, cls in self._panes.items()}  # noqa: N815
        super().__init__()
        # NO_COLOR: the terminal's own colours with bold, reverse and glyphs carrying state
        # (Textual's grey-scale filter turns red text on black into grey 237 on 233)
        self._filters = [NoColor() if isinstance(f, Monochrome) else f for f in self._filters]
        self.ascii = settings.ascii or term_is_plain(os.environ.get("TERM"))
        if self.ascii:
            self._filters.append(AsciiFilter())
        self._demo_traffic = None
        self._worker_service = None
        self.range_custom: tuple[date, date] | None = None
        self._firing_seen: set[str] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def on_mount(self) -> None:
        try:
            await self.store.open()
        except PulseError as exc:
            self.exit(return_code=1, message=str(exc))
            return
        if not self.worker_enabled:
            self.worker_state = "off"
        else:
            self._start_worker()
        if self.demo:
            self._start_demo_traffic()
        await self.switch_mode("live")
        if self.watch_changes:
            self._watch_for_changes()
        self._check_alerts()

    async def on_unmount(self) -> None:
        if self._demo_traffic is not None:
            self._demo_traffic.stop()
        if self._worker_service is not None:
            await asyncio.to_thread(self._worker_service.stop)
        await self.store.close()

    def _start_demo_traffic(self) -> None:
        from pulse_tui.demo import DemoTraffic

        self._demo_traffic = DemoTraffic(self.settings.db,
                                         events_store=self.settings.events_store,
                                         cluster=self.settings.clickhouse_cluster)
        self._demo_traffic.start()

    def _start_worker(self) -> None:
        from pulse_tui.tui.worker_bridge import start_embedded_worker

        self.worker_state = "starting"
        self._worker_service = start_embedded_worker(self)

    @work(exclusive=True, group="change-watch", exit_on_error=False)
    async def _watch_for_changes(self) -> None:
        """Polls the events backend's change token (cheap); panes reload only on a change."""
        while True:
            try:
                if await self.store.changed():
                    self.notify_data_changed()
            except Exception:  # noqa: BLE001 - keep watching; the log has the cause
                log.exception("change detection failed")
            await asyncio.sleep(CHANGE_POLL_SECONDS)

    def notify_data_changed(self) -> None:
        self._check_alerts()
        self.broadcast(DataChanged)

    # ------------------------------------------------------------------ panes
    def open_panes(self) -> list[Screen]:
        """The panes opened so far (each is the bottom screen of its mode's stack)."""
        panes = []
        for mode in self._panes:
            try:
                stack = self.get_screen_stack(mode)
            except KeyError:  # never switched to yet
                continue
            if stack:
                panes.append(stack[0])
        return panes

    def broadcast(self, make: Callable[[], Message], *,
                  skip: type[Screen] | None = None) -> None:
        """Post a fresh ``make()`` message to every open pane (but those of type ``skip``)."""
        for screen in self.open_panes():
            if skip is None or not isinstance(screen, skip):
                screen.post_message(make())

    @work(exclusive=True, group="alert-watch", exit_on_error=False)
    async def _check_alerts(self) -> None:
        """Firing rules show in the header; a rule that starts firing also pops a notification."""
        rules = await self.store.read(lambda d: d.control.list_rules(None))
        firing = {r.rule_id: r for r in rules if r.state == "firing" and not r.muted}
        if self._firing_seen is not None:
            for rule_id, rule in firing.items():
                if rule_id not in self._firing_seen:
                    self.notify(f"Alert firing: {visible(rule.name)} ({rule.value_text()})",
                                severity="error", timeout=15)
        self._firing_seen = set(firing)
        self.firing_alerts = len(firing)


    def on_background_worker_state(self, message: BackgroundWorkerState) -> None:
        detail = message.detail if message.state != "running" else ""
        self.worker_state = message.state + (f": {detail}" if detail else "")
        if message.state == "stopped" and detail and detail != "stopped":
            self.notify(f"worker stopped: {detail}", severity="error", timeout=10)

    @on(BackgroundWorkerEvent)
    def _forward_worker_event(self, message: BackgroundWorkerEvent) -> None:
        self.broadcast(lambda: type(message)(message.event))

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Every notification is literal text: names, paths and errors come from the data."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # ------------------------------------------------------------------ read-only
    async def run_action(self, action: str | ActionParseResult,
                         default_namespace: DOMNode | None = None,
                         namespaces: Mapping[str, DOMNode] | None = None) -> bool:
        """Every key, palette command and click runs its action through here: in a read-only
        app an action that writes is refused with a message instead of doing nothing."""
        if self.read_only:
            what = self._write_action(action, default_namespace)
            if what:
                self.notify(refusal(what), severity="warning", timeout=6)
                return True
        return await super().run_action(action, default_namespace, namespaces)

    def _write_action(self, action: str | ActionParseResult,
                      default_namespace: DOMNode | None) -> str | None:
        if isinstance(action, str):
            destination, name, _params = parse_action(action)
        else:
            destination, name, _params = action
        targets: dict[str, object] = {"app": self, "screen": self.screen,
                                      "focused": self.focused}
        target = targets.get(destination) if destination else (default_namespace or self)
        return declared_write(target, name) if target is not None else None

    def offers(self, node: object, action: str) -> bool:
        """False for an action that writes while the app is read-only (palette, help)."""
        return not (self.read_only and declared_write(node, action))

    # ------------------------------------------------------------------ actions
    async def action_show_pane(self, pane: str) -> None:
        if pane in self._panes and self.current_mode != pane:
            await self.switch_mode(pane)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The global site is chosen on the panes only: editors and modals (the alert
        editor's own keys, a site picker already open) neither offer nor run it."""
        if action == "pick_site" and not isinstance(self.screen, PaneScreen):
            return False
        return True

    @work(exclusive=True, group="site-picker", exit_on_error=False)
    async def action_pick_site(self) -> None:
        sites = await self.store.sites()
        choice = await self.push_screen_wait(SitePickerScreen(sites, self.site_id))
        if choice is None:
            return
        new = None if choice == ALL else choice
        if new != self.site_id:
            self.site_id = new

    def watch_site_id(self, old: str | None, new: str | None) -> None:
        for screen in self.open_panes():
            if isinstance(screen, LiveScreen):
                screen.restart()
        self.broadcast(DataChanged, skip=LiveScreen)

    # ------------------------------------------------------------------ date range
    def current_range(self) -> DateRange:
        """The range every pane shows: a preset ending today, or the custom dates."""
        if self.range_preset == "custom" and self.range_custom:
            return DateRange(*self.range_custom)
        days = dict(RANGE_PRESETS).get(self.range_preset, 30)
        today = self.clock.today()
        return make_range(self.clock, today - timedelta(days=days - 1), today)

    def set_range(self, preset: str, custom: tuple[date, date] | None = None) -> None:
        self.range_custom = custom if preset == "custom" else None
        self.range_preset = preset
        if preset == "custom" and custom:
            self.range_label = f"{custom[0].isoformat()}..{custom[1].isoformat()}"
        else:
            self.range_label = preset
        self.broadcast(DataChanged, skip=LiveScreen)

    def step_range(self, step: int) -> None:
        names = [name for name, _ in RANGE_PRESETS]
        index = names.index(self.range_preset) if self.range_preset in names else 2
        self.set_range(names[max(0, min(len(names) - 1, index + step))])

    @work(exclusive=True, group="range-picker", exit_on_error=False)
    async def action_custom_range(self) -> None:
        current = self.current_range()
        choice = await self.push_screen_wait(
            RangePickerScreen(current.start, current.end, self.clock.today()))
        if choice is not None:
            self.set_range("custom", choice)

    async def action_quit(self) -> None:
        """q quits, but asks first when an editor on the stack has unsaved changes."""
        from pulse_tui.tui.screens.confirm import ConfirmScreen

        unsaved = [screen for screen in self.screen_stack
                   if getattr(screen, "has_unsaved_changes", lambda: False)()]
        if not unsaved:
            self.exit()
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.exit()

        self.push_screen(ConfirmScreen("Quit and discard unsaved changes?",
                                       "An editor has changes that are not saved.",
                                       yes="quit"), answered)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_sections(), self.settings.describe(),
                                    start=self.help_section_for(self.screen)))

    def help_section_for(self, screen: Screen) -> str:
        """The help section of the pane, editor or sub-view the operator is looking at."""
        from pulse_tui.tui.screens.alert_editor import AlertEditorScreen
        from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
        from pulse_tui.tui.screens.webhooks import WebhooksScreen

        for cls, title in ((CohortEditorScreen, "Cohort editor"),
                           (AlertEditorScreen, "Alert editor"), (WebhooksScreen, "Webhooks (w)")):
            if isinstance(screen, cls):
                return title
        if isinstance(screen, PaneScreen):
            return screen.TITLE
        return "Everywhere"

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        everywhere = [(f"{k}", f"{label} pane") for k, _, label in PANES]
        everywhere += [("s", "choose the site"), ("?", "this help"),
                       ("ctrl+p", "command palette (every action of every pane)"),
                       ("i", "the selected table row in full (c copies)"),
                       ("home, end", "first / last row of a table"),
                       ("pageup, pagedown", "a page of rows up / down"), ("q", "quit")]
        sections = [("Everywhere", everywhere)]
        from pulse_tui.tui.screens.alert_editor import AlertEditorScreen
        from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
        from pulse_tui.tui.screens.webhooks import WebhooksScreen
        from pulse_tui.tui.widgets.criteria_tree import CriteriaTree

        extra: dict[str, list[tuple[str, type]]] = {
            "cohorts": [("Cohort editor", CohortEditorScreen),
                        ("Criteria tree (cohort editor, alert filter)", CriteriaTree)],
            "alerts": [("Alert editor", AlertEditorScreen), ("Webhooks (w)", WebhooksScreen)],
        }
        if self.read_only:
            everywhere.append(("", "read-only session: actions that change data are off"))
        for pane, cls in self._panes.items():
            keys = [(b.key, b.description or b.action) for b in _bindings(cls)
                    if self.offers(cls, b.action)]
            if keys:
                sections.append((cls.TITLE, keys))
            for title, sub in extra.get(pane, []):
                sub_keys = [(b.key, b.description or b.action) for b in _bindings(sub)
                            if self.offers(sub, b.action)]
                if sub_keys:
                    sections.append((title, sub_keys))
        return sections

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for key, pane, _label in PANES:
            yield SystemCommand(f"Go to {self._panes[pane].TITLE}", f"Switch pane (key {key})",
                                lambda pane=pane: self.run_action(f"show_pane('{pane}')"))
        yield SystemCommand("Choose site", "Show one site or all sites (key s)",
                            self.action_pick_site)
        for name, days in RANGE_PRESETS:
            yield SystemCommand(f"Range: {name}", f"Show the last {days} day(s) ending today",
                                lambda name=name: self.set_range(name))
        yield SystemCommand("Range: custom…", "Type the first and last day",
                            self.action_custom_range)
        yield SystemCommand("Help", "Every key of every pane (key ?)", self.action_help)
        # every action of every pane, from anywhere: choosing one switches to its pane and
        # runs it there, asking which row when it acts on one
        for pane, cls in self._panes.items():
            seen: set[str] = set()
            for action, description, help_text in pane_commands(cls):
                if action in seen or not self.offers(cls, action):
                    continue
                seen.add(action)
                yield SystemCommand(f"{cls.TITLE}: {description}", help_text,
                                    lambda pane=pane, action=action:
                                    self.run_pane_command(pane, action))
        if not isinstance(screen, PaneScreen):  # an editor or sub-view: its own keys too
            title = getattr(screen, "TITLE", "") or type(screen).__name__
            for binding in _bindings(type(screen)):
                if binding.description and not binding.action.startswith("app.") \
                        and self.offers(screen, binding.action):
                    yield SystemCommand(f"{title}: {binding.description}",
                                        f"key {_key_name(binding.key)}",
                                        lambda action=binding.action, screen=screen:
                                        screen.run_action(action))
        yield SystemCommand("Quit", "Leave PULSE TUI (key q; asks first about unsaved "
                            "changes)", self.action_quit)
        for command in super().get_system_commands(screen):
            if command.title != "Quit":  # ours asks about unsaved changes
                yield command

    @work(exclusive=True, group="pane-command", exit_on_error=False)
    async def run_pane_command(self, pane: str, action: str) -> None:
        """Switch to ``pane`` and run ``action`` there; ask for the row it acts on."""
        from pulse_tui.tui.screens.target_picker import TargetPickerScreen
        from pulse_tui.tui.screens.webhooks import WebhooksScreen
        from pulse_tui.tui.widgets.columns import FittedTable

        what = declared_write(self._panes.get(pane), action) if self.read_only else None
        if what:  # not offered when read-only; refused before anything is asked
            self.notify(refusal(what), severity="warning", timeout=6)
            return
        if self.current_mode != pane:
            await self.switch_mode(pane)
        while isinstance(self.screen, WebhooksScreen):  # a sub-view: nothing unsaved
            await self.pop_screen()
        screen = self.screen
        if not isinstance(screen, PaneScreen) or screen.PANE != pane:
            self.notify(f"Close {getattr(screen, 'TITLE', 'this screen')} first (escape).",
                        severity="warning")
            return
        target = screen.TARGETS.get(action)
        if target is not None:
            table_id, noun = target
            table = screen.query_one(table_id, FittedTable)
            for _ in range(100):  # a pane opened just now loads its rows in a worker
                if table.loaded:
                    break
                await asyncio.sleep(0.02)
            choices = table.choices()
            if not choices:
                self.notify(f"No {noun} here yet.", severity="warning")
                return
            key = choices[0][0]
            if len(choices) > 1:
                description = next((d for a, d, _ in pane_commands(type(screen))
                                    if a == action), action)
                key = await self.push_screen_wait(TargetPickerScreen(
                    f"{screen.TITLE}: {description} — which {noun}?", choices,
                    table.selected_key()))
                if key is None:
                    return
            table.select_key(key)
            table.focus()
        await screen.run_action(action)


def pane_commands(cls: type[PaneScreen]) -> list[tuple[str, str, str]]:
    """(action, description, help) for every action of a pane: its keys, then its commands
    without a key."""
    out = []
    for binding in _bindings(cls):
        if binding.description and not binding.action.startswith("app."):
            hint = f"key {_key_name(binding.key)}"
            if binding.action in cls.TARGETS:
                hint += f"; asks which {cls.TARGETS[binding.action][1]}"
            out.append((binding.action, binding.description, hint))
    for action, description in cls.PALETTE_ONLY:
        hint = f"asks which {cls.TARGETS[action][1]}" if action in cls.TARGETS else ""
        out.append((action, description, hint))
    return out


def _key_name(key: str) -> str:
    from pulse_tui.tui.screens.help import _key_label

    return _key_label(key)


def _bindings(cls: type) -> list[Binding]:
    out = []
    for b in getattr(cls, "BINDINGS", []):
        if isinstance(b, Binding):
            out.append(b)
    return out


def _short_path(path: Path) -> str:
    """The database's file name and folder, enough to tell databases apart in the header."""
    path = path.resolve()
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def make_app(settings: Settings, *, clock: Clock | None = None, demo: bool = False,
             worker: bool = True, watch_changes: bool = True,
             read_only: bool = False) -> PulseApp:
    """The one way to build the app (CLI and tests)."""
    return PulseApp(settings, clock=clock, demo=demo, worker=worker,
                    watch_changes=watch_changes, read_only=read_only)
