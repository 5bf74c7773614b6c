"""Webhook endpoints of a site: url, events, active, last delivery, masked secret; deliveries."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Checkbox, Input, Label, SelectionList, Static

from pulse_tui.clock import format_ms
from pulse_tui.errors import PulseError, ValidationError
from pulse_tui.notify.models import WEBHOOK_EVENTS, WebhookEndpoint, check_url
from pulse_tui.textsafe import visible
from pulse_tui.tui.forms import FieldChecks
from pulse_tui.tui.guards import ReportsWorkerErrors, WriteGuard, write_action, writes
from pulse_tui.tui.screens.confirm import ConfirmScreen
from pulse_tui.tui.widgets.columns import Column, FittedTable
from pulse_tui.tui.widgets.field_error import FieldError
from pulse_tui.tui.widgets.footer import PulseFooter
from pulse_tui.tui.widgets.header import PulseHeader

ENDPOINT_COLUMNS = (
    Column("url", "url"),
    Column("events", "events", 62, min_total=130),
    Column("active", "active", 7, keep=3),
    Column("last", "last delivery", 15, keep=2),
    Column("secret", "secret", 15, keep=1),
)
DELIVERY_COLUMNS = (
    Column("created", "queued", 20, keep=2, min_width=12),
    Column("type", "event", 15, keep=3, grow=True),
    Column("status", "status", 10, keep=4),
    Column("code", "HTTP", 5, justify="right", keep=5),
    Column("attempts", "tries", 6, justify="right", keep=5),
    Column("error", "error"),
)


class SecretScreen(ModalScreen[None]):
    """Shows a new secret in full, once."""

    BINDINGS = [Binding("escape,enter", "dismiss", "Done")]

    def __init__(self, url: str, secret: str) -> None:
        super().__init__()
        self.url = url
        self.secret = secret

    def compose(self) -> ComposeResult:
        with Vertical(id="secret", classes="modal"):
            yield Static(Text("Signing secret (shown once)", style="bold"))
            yield Static(Text(f"for {visible(self.url)}", style="dim"))
            yield Static(Text(self.secret, style="bold yellow"), id="secret-value")
            yield Static(Text("Copy it into the receiving service now: after this it is only "
                              "shown masked. enter closes.", style="dim"))


def headers_problem(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return 'not JSON: write an object like {"X-Team": "ops"}'
    if not isinstance(parsed, dict):
        return 'must be a JSON object like {"X-Team": "ops"}'
    return None


class EndpointFormScreen(WriteGuard, FieldChecks, ReportsWorkerErrors, ModalScreen[bool]):
    """Create or edit an endpoint; dismisses True when saved."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, site_id: str, endpoint: WebhookEndpoint | None = None) -> None:
        super().__init__()
        self.site_id = site_id
        self.endpoint = endpoint

    def compose(self) -> ComposeResult:
        ep = self.endpoint
        events = set(ep.events) if ep else {"alert.firing", "alert.resolved"}
        with Vertical(id="endpoint-form", classes="modal"):
            yield Static(Text("New webhook endpoint" if ep is None else "Edit endpoint",
                              style="bold"))
            with Horizontal(classes="form-row"):
                yield Label("URL", classes="form-label")
                yield Input(ep.url if ep else "", id="ep-url", compact=True,
                            placeholder="https://hooks.example.com/pulse")
            yield FieldError(id="ep-url-error")
            yield Label("Events to send (space toggles)")
            yield SelectionList[str](*[(e, e, e in events) for e in WEBHOOK_EVENTS],
                                     id="ep-events")
            yield FieldError(id="ep-events-error")
            with Horizontal(classes="form-row"):
                yield Label("Headers", classes="form-label")
                yield Input(json.dumps(ep.headers) if ep and ep.headers else "", id="ep-headers",
                            compact=True, placeholder='optional JSON, e.g. {"X-Team": "ops"}')
            yield FieldError(id="ep-headers-error")
            yield Checkbox("active (deliveries are sent)", ep.active if ep else True,
                           id="ep-active", compact=True)
            yield Static(Text("enter or ctrl+s saves · escape cancels", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#ep-url", Input).focus()

    def field_checks(self) -> dict[str, Any]:
        return {"ep-url": lambda text: check_url(text.strip()),
                "ep-headers": headers_problem}

    def action_cancel(self) -> None:
        self.dismiss(False)

    @writes("saving a webhook endpoint")
    @on(Input.Submitted)
    @write_action("endpoint-save")
    async def action_save(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        now = self.app.clock.now_ms()  # type: ignore[attr-defined]
        url = self.query_one("#ep-url", Input).value.strip()
        events = list(self.query_one("#ep-events", SelectionList).selected)
        raw_headers = self.query_one("#ep-headers", Input).value.strip()
        headers: Any = None
        for field in ("url", "events", "headers"):
            self.query_one(f"#ep-{field}-error", FieldError).show(None)
        if self.check_all():
            return
        if raw_headers:
            try:
                headers = json.loads(raw_headers)
            except (ValueError, RecursionError):
                self.query_one("#ep-headers-error", FieldError).show(
                    'not JSON: write an object like {"X-Team": "ops"}')
                return
        active = self.query_one("#ep-active", Checkbox).value
        site_id, endpoint = self.site_id, self.endpoint
        allow = self.app.settings.webhook_allow_link_local  # type: ignore[attr-defined]
        try:
            if endpoint is None:
                created = await store.write(lambda d: d.control.create_endpoint(
                    site_id=site_id, url=url, events=events, headers=headers, active=active,
                    now_ms=now, allow_link_local=allow))
                await self.app.push_screen_wait(SecretScreen(created.endpoint.url,
                                                             created.secret))
            else:
                await store.write(lambda d: d.control.update_endpoint(
                    endpoint.id, url=url, events=events, headers=headers or {}, active=active,
                    now_ms=now, allow_link_local=allow))
        except ValidationError as exc:
            for key, message in exc.errors.items():
                field = "url" if "url" in key else "events" if "event" in key else "headers"
                self.query_one(f"#ep-{field}-error", FieldError).show(message)
            return
        except PulseError as exc:
            self.notify(str(exc), severity="error")
            return
        self.dismiss(True)


class WebhooksScreen(WriteGuard, ReportsWorkerErrors, Screen[None]):
    """The webhook endpoints of one site and the recent deliveries of the selected one."""

    TITLE = "Webhooks"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back to alerts"),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("x,delete", "delete", "Delete"),
        Binding("t", "test", "Send test"),
        Binding("R", "rotate", "New secret"),
    ]

    def __init__(self, site_id: str) -> None:
        super().__init__()
        self.site_id = site_id
        self.endpoints: list[WebhookEndpoint] = []

    def compose(self) -> ComposeResult:
        yield PulseHeader("alerts")
        yield Static(id="webhooks-title", classes="section-title")
        yield FittedTable(ENDPOINT_COLUMNS, id="endpoints-table",
                          empty="no endpoints yet: n adds one", detail_title="Endpoint")
        yield Static(Text("Recent deliveries of the selected endpoint", style="bold"),
                     classes="section-title")
        yield FittedTable(DELIVERY_COLUMNS, id="deliveries-table",
                          empty="no deliveries yet: t sends a test",
                          detail_title="Delivery")
        yield PulseFooter()

    def on_mount(self) -> None:
        self.query_one("#endpoints-table", FittedTable).focus()
        self.reload()

    def on_data_changed(self) -> None:
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="webhooks-load", exit_on_error=False)
    async def _load(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        site_id = self.site_id
        self.endpoints = await store.read(lambda d: d.control.list_endpoints(site_id))
        last: dict[str, str] = {}
        for ep in self.endpoints:
            deliveries = await store.read(
                lambda d, ep_id=ep.id: d.control.recent_deliveries(ep_id, 1))
            if deliveries:
                d = deliveries[0]
                last[ep.id] = f"{d.status} {d.last_status_code or ''}".strip()
        title = Text(f"Webhooks of {visible(self.site_id)}: {len(self.endpoints)}",
                     style="bold")
        broken = [ep for ep in self.endpoints if ep.problem]
        if broken:  # rows another program wrote that cannot be used: nothing is sent to them
            title.append(f"  ✖ {len(broken)} broken (receives nothing; e fixes, x deletes)",
                         style="bold red")
        title.append("  n new · e edit · t test · R secret · x delete")
        self.query_one("#webhooks-title", Static).update(title)
        self.query_one("#endpoints-table", FittedTable).set_rows(
            [(ep.id, {"url": ep.url,
                      "events": f"✖ broken: {ep.problem}" if ep.problem else ", ".join(ep.events),
                      "active": "yes" if ep.active else "no",
                      "last": "✖ broken" if ep.problem else last.get(ep.id, "–"),
                      "secret": ep.secret_masked}) for ep in self.endpoints],
            [{"active": "green" if ep.active else "dim",
              "events": "bold red" if ep.problem else "",
              "last": "red" if ep.problem or "failed" in last.get(ep.id, "") else ""}
             for ep in self.endpoints])
        await self._load_deliveries()

    async def _load_deliveries(self) -> None:
        ep = self._selected()
        rows = []
        if ep is not None:
            rows = await self.app.store.read(  # type: ignore[attr-defined]
                lambda d: d.control.recent_deliveries(ep.id, 50))
        self.query_one("#deliveries-table", FittedTable).set_rows(
            [(d.id, {"created": format_ms(d.created_at), "type": d.event_type,
                     "status": d.status, "code": d.last_status_code or "–",
                     "attempts": d.attempts, "error": d.last_error or ""}) for d in rows],
            [{"status": {"delivered": "green", "failed": "red"}.get(d.status, "yellow")}
             for d in rows])

    @on(FittedTable.RowHighlighted, "#endpoints-table")
    @work(exclusive=True, group="webhooks-deliveries", exit_on_error=False)
    async def _endpoint_highlighted(self) -> None:
        await self._load_deliveries()

    def _selected(self) -> WebhookEndpoint | None:
        key = self.query_one("#endpoints-table", FittedTable).selected_key()
        return next((ep for ep in self.endpoints if ep.id == key), None)

    @writes("adding a webhook endpoint")
    @work(exclusive=True, group="webhooks-action", exit_on_error=False)
    async def action_new(self) -> None:
        if await self.app.push_screen_wait(EndpointFormScreen(self.site_id)):
            self.reload()

    @writes("editing a webhook endpoint")
    @work(exclusive=True, group="webhooks-action", exit_on_error=False)
    async def action_edit(self) -> None:
        ep = self._selected()
        if ep and await self.app.push_screen_wait(EndpointFormScreen(self.site_id, ep)):
            self.reload()

    @writes("deleting a webhook endpoint")
    @write_action("webhooks-write")
    async def action_delete(self) -> None:
        ep = self._selected()
        if ep is None or not await self.app.push_screen_wait(ConfirmScreen(
                f"Delete endpoint {visible(ep.url)}?", "Its queued deliveries go too.",
                yes="delete")):
            return
        try:
            await self.app.store.write(  # type: ignore[attr-defined]
                lambda d: d.control.delete_endpoint(ep.id))
        except PulseError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.notify(f"Deleted {visible(ep.url)}")
        self.reload()

    @writes("sending a test webhook")
    @write_action("webhooks-test")
    async def action_test(self) -> None:
        from pulse_tui.notify import delivery

        ep = self._selected()
        if ep is None:
            return
        self.notify(f"Sending a test to {visible(ep.url)} …", timeout=3)
        store, clock = self.app.store, self.app.clock  # type: ignore[attr-defined]
        # the request runs here, not on the store's write lane, so a slow endpoint never
        # holds other writes (or quitting); it is bounded and cancelled when the app exits
        test = await store.write(lambda d: delivery.prepare_test(d, ep.id, clock=clock))
        result = await delivery.send_prepared(
            test, allow_link_local=self.app.settings.webhook_allow_link_local)  # type: ignore[attr-defined]
        await store.write(lambda d: delivery.record_test(d, test, result, clock=clock))
        self.notify(f"Test: {visible(result.text())}",
                    severity="information" if result.ok else "error", timeout=8)
        self.reload()

    @writes("replacing a webhook secret")
    @write_action("webhooks-write")
    async def action_rotate(self) -> None:
        ep = self._selected()
        if ep is None or not await self.app.push_screen_wait(ConfirmScreen(
                f"Give {visible(ep.url)} a new secret?",
                "The receiver must be updated with the new secret.", yes="rotate")):
            return
        now = self.app.clock.now_ms()  # type: ignore[attr-defined]
        created = await self.app.store.write(  # type: ignore[attr-defined]
            lambda d: d.control.rotate_secret(ep.id, now_ms=now))
        await self.app.push_screen_wait(SecretScreen(created.endpoint.url, created.secret))
        self.reload()
