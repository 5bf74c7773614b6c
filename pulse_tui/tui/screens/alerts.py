"""Pane 5, Alerts: rules with state and value against threshold, history; webhooks sub-view."""

from __future__ import annotations

from urllib.parse import urlsplit

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from pulse_tui.alerts import engine
from pulse_tui.alerts.models import AlertRule
from pulse_tui.clock import format_ms
from pulse_tui.errors import PulseError
from pulse_tui.textsafe import visible
from pulse_tui.tui.guards import write_action, writes
from pulse_tui.tui.screens.alert_editor import AlertEditorScreen
from pulse_tui.tui.screens.base import PaneScreen
from pulse_tui.tui.screens.confirm import ConfirmScreen
from pulse_tui.tui.screens.webhooks import WebhooksScreen
from pulse_tui.tui.widgets.columns import Column, FittedTable

# state as a word AND a colour (never colour alone)
STATE_LOOK = {"firing": ("▲ FIRING", "bold reverse red"), "ok": ("● ok", "green"),
              "error": ("✖ error", "bold yellow"), "pending": ("○ pending", "italic")}

# long descriptions shrink first, then the time; names and numbers last
RULE_COLUMNS = (
    Column("state", "state", 11, keep=4, min_width=10),
    Column("name", "name", 14, keep=3, grow=True, max_width=36),
    Column("condition", "condition"),
    Column("value", "now / limit", 12, keep=5, grow=True, max_width=30),
    Column("evaluated", "evaluated", 12, keep=1),
    Column("notify", "notify", 24, min_total=110, keep=0),
)
HISTORY_COLUMNS = (
    Column("at", "at", 20, keep=2, min_width=12),
    Column("state", "state", 11, keep=3),
    Column("value", "value", 8, justify="right", keep=4, grow=True),
    Column("threshold", "threshold", 10, justify="right", keep=4, grow=True),
    Column("message", "message"),
)


def state_cell(rule: AlertRule) -> tuple[str, str]:
    state = "pending" if rule.last_evaluated_at is None and rule.state == "ok" else rule.state
    word, style = STATE_LOOK.get(state, (state, ""))
    if rule.muted:
        return f"{word} ⊘", f"{style} dim"
    return word, style


class AlertsScreen(PaneScreen):
    PANE = "alerts"
    TITLE = "Alerts"
    HELP = "Alert rules with their state; history; webhook endpoints (w)."

    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("enter,e", "edit", "Edit"),
        Binding("m", "mute", "Mute/unmute"),
        Binding("v", "evaluate", "Evaluate now"),
        Binding("x,delete", "delete", "Delete"),
        Binding("w", "webhooks", "Webhooks"),
    ]

    TARGETS = {action: ("#rules-table", "rule")
               for action in ("edit", "mute", "evaluate", "delete")}

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[AlertRule] = []

    def compose_body(self) -> ComposeResult:
        yield Static(id="alerts-title", classes="section-title")
        yield FittedTable(RULE_COLUMNS, id="rules-table", empty="no rules yet: n adds one",
                          detail_title="Alert rule")
        yield Static(id="history-title", classes="section-title")
        yield FittedTable(HISTORY_COLUMNS, id="history-table", detail_title="Change of state")

    def on_mount(self) -> None:
        self.query_one("#rules-table", FittedTable).focus()
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="alerts-load", exit_on_error=False)
    async def _load(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        site = self.app.site_id  # type: ignore[attr-defined]
        self.rules = await store.read(lambda d: d.control.list_rules(site))
        endpoints = {ep.id: ep
                     for ep in await store.read(lambda d: d.control.list_endpoints(site))}
        firing = sum(1 for r in self.rules if r.state == "firing" and not r.muted)
        muted = sum(1 for r in self.rules if r.muted)
        title = Text(f"{len(self.rules)} rule(s)", style="bold")
        if firing:
            title.append(f"  {firing} firing", style="bold red")
        if muted:
            title.append(f"  {muted} muted", style="dim")
        title.append("   n new · m mute · v evaluate · w webhooks", style="dim")
        self.query_one("#alerts-title", Static).update(title)
        rows, styles = [], []
        for rule in self.rules:
            word, style = state_cell(rule)
            notify = "log"
            if rule.notification_type == "webhook":
                ep = endpoints.get(str(rule.notification_config.get("endpoint_id")))
                notify = f"→ {urlsplit(ep.url).hostname or '?'}" if ep else "webhook (missing)"
            rows.append((rule.rule_id, {
                "state": word, "name": rule.name, "condition": rule.describe(),
                "value": rule.value_text(), "notify": notify,
                "evaluated": format_ms(rule.last_evaluated_at, seconds=False)[5:]
                if rule.last_evaluated_at else "never",
            }))
            styles.append({"state": style, "condition": "red" if rule.condition is None else ""})
        self.query_one("#rules-table", FittedTable).set_rows(rows, styles)
        await self._load_history()

    async def _load_history(self) -> None:
        rule = self._selected()
        title = self.query_one("#history-title", Static)
        history = self.query_one("#history-table", FittedTable)
        if rule is None:
            title.update(Text("History", style="bold"))
            history.empty_text = ""
            history.set_rows([])
            return
        history.empty_text = ("not evaluated yet: v evaluates it now"
                              if rule.last_evaluated_at is None else
                              "no change of state yet")
        entries = await self.app.store.read(  # type: ignore[attr-defined]
            lambda d: d.control.rule_history(rule.rule_id, limit=100))
        head = Text(f"History of {visible(rule.name)}", style="bold")
        if rule.condition is None:  # written by another program: fix (e) or delete (x) it
            head.append(f"   ✖ unusable rule: {visible(rule.condition_error or '')}",
                        style="bold red")
        elif rule.last_error:
            head.append(f"   last error: {visible(rule.last_error)}", style="yellow")
        title.update(head)
        self.query_one("#history-table", FittedTable).set_rows(
            [(str(h.id), {"at": format_ms(h.at), "state": h.state,
                          "value": "–" if h.value is None else f"{h.value:g}",
                          "threshold": "–" if h.threshold is None else f"{h.threshold:g}",
                          "message": h.message or ""}) for h in entries],
            [{"state": STATE_LOOK.get(h.state, ("", ""))[1]} for h in entries])

    @on(DataTable.RowHighlighted, "#rules-table")
    @work(exclusive=True, group="alerts-history", exit_on_error=False)
    async def _rule_highlighted(self) -> None:
        await self._load_history()

    @on(DataTable.RowSelected, "#rules-table")
    def _rule_chosen(self) -> None:
        self.action_edit()

    @on(DataTable.RowSelected, "#history-table")
    def _history_chosen(self) -> None:
        # the message is cut at 80 columns: enter shows the change of state in full (as `i`)
        self.query_one("#history-table", FittedTable).action_row_details()

    def _selected(self) -> AlertRule | None:
        key = self.query_one("#rules-table", FittedTable).selected_key()
        return next((r for r in self.rules if r.rule_id == key), None)

    # ------------------------------------------------------------------ actions
    @writes("creating an alert rule")
    @work(exclusive=True, group="alerts-action", exit_on_error=False)
    async def action_new(self) -> None:
        site = await self.site_for_new()
        if site is None:
            return
        endpoints = await self.app.store.read(  # type: ignore[attr-defined]
            lambda d: d.control.list_endpoints(site))
        if await self.app.push_screen_wait(AlertEditorScreen(site_id=site, endpoints=endpoints)):
            self.reload()

    @writes("editing an alert rule")
    @work(exclusive=True, group="alerts-action", exit_on_error=False)
    async def action_edit(self) -> None:
        rule = self._selected()
        if rule is None:
            return
        endpoints = await self.app.store.read(  # type: ignore[attr-defined]
            lambda d: d.control.list_endpoints(rule.site_id))
        if await self.app.push_screen_wait(
                AlertEditorScreen(site_id=rule.site_id, endpoints=endpoints, rule=rule)):
            self.reload()

    @writes("muting a rule")
    @write_action("alerts-write")
    async def action_mute(self) -> None:
        rule = self._selected()
        if rule is None:
            return
        now = self.app.clock.now_ms()  # type: ignore[attr-defined]
        mute = not rule.muted
        await self.app.store.write(  # type: ignore[attr-defined]
            lambda d: d.control.set_rule_muted(rule.rule_id, mute, now_ms=now))
        self.notify(f"{'Unmuted' if rule.muted else 'Muted'} {visible(rule.name)}")
        self.reload()

    @writes("evaluating a rule")
    @write_action("alerts-write")
    async def action_evaluate(self) -> None:
        rule = self._selected()
        if rule is None:
            return
        clock = self.app.clock  # type: ignore[attr-defined]
        try:
            result = await self.app.store.write(  # type: ignore[attr-defined]
                lambda d: engine.evaluate_rule(d, rule.rule_id, clock))
        except PulseError as exc:
            self.notify(str(exc), severity="error")
            return
        value = "undefined" if result.value is None else f"{result.value:g}"
        self.notify(f"{visible(rule.name)}: {value} → {result.state_after}", timeout=6)
        self.reload()

    @writes("deleting an alert rule")
    @write_action("alerts-write")
    async def action_delete(self) -> None:
        rule = self._selected()
        if rule is None or not await self.app.push_screen_wait(ConfirmScreen(
                f"Delete alert rule {visible(rule.name)}?", "Its history goes too.",
                yes="delete")):
            return
        await self.app.store.write(  # type: ignore[attr-defined]
            lambda d: d.control.delete_rule(rule.rule_id))
        self.notify(f"Deleted {visible(rule.name)}")
        self.reload()

    @work(exclusive=True, group="alerts-action", exit_on_error=False)
    async def action_webhooks(self) -> None:
        site = await self.site_for_new()
        if site is not None:
            await self.app.push_screen_wait(WebhooksScreen(site))
            self.reload()
