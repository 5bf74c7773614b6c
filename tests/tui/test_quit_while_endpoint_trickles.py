"""Quitting the TUI (q) with its embedded worker finishes within seconds while a webhook
endpoint trickles its answer (it used to leave a stuck delivery thread until ctrl+c)."""

from __future__ import annotations

import sqlite3
import threading
import time

from conftest import FIXED_NOW_MS, async_wait_until, wait_until

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.notify import delivery
from pulse_tui.store import webhooks as hooks
from pulse_tui.store.events import ensure_sites
from pulse_tui.tui.app import make_app
from tests.hostile_http import HostileServer


def _job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pulse-job") and t.is_alive()]


async def test_quit_finishes_within_seconds_while_an_endpoint_trickles(
        pulse_settings: Settings, conn: sqlite3.Connection) -> None:
    with HostileServer(trickle_s=0.5, trickle_for_s=60.0) as srv:
        ensure_sites(conn, ["acme"], FIXED_NOW_MS)
        ep = hooks.create_endpoint(conn, site_id="acme", url=srv.url("/trickle"),
                                   events=["alert.firing"], now_ms=FIXED_NOW_MS).endpoint
        delivery.enqueue_event(conn, "acme", "alert.firing", {}, FIXED_NOW_MS,
                               endpoint_ids=[ep.id])
        app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await async_wait_until(lambda: srv.hits_for("/trickle"), timeout=30)
            started = time.monotonic()
            await pilot.press("q")
        # the app is gone, and so is the thread that was sending: the process can exit
        wait_until(lambda: not _job_threads(), timeout=20)
        elapsed = time.monotonic() - started
        assert elapsed < 15, f"quitting took {elapsed:.1f} s"
        [hit] = srv.hits_for("/trickle")
        wait_until(lambda: hit.finished is not None, timeout=10)
        assert hit.client_gone  # the request was abandoned, not waited for


async def test_test_ping_to_a_trickling_endpoint_blocks_nothing(
        pulse_settings: Settings, conn: sqlite3.Connection) -> None:
    """t (send a test) used to run the request on the store's only connection thread: every
    pane's reads and writes waited for the endpoint, and so did quitting."""
    import asyncio

    from pulse_tui.tui.screens.alerts import AlertsScreen
    from pulse_tui.tui.screens.webhooks import WebhooksScreen
    from tests.tui.tui_helpers import press_until

    with HostileServer(trickle_s=0.5, trickle_for_s=60.0) as srv:
        ensure_sites(conn, ["acme"], FIXED_NOW_MS)
        ep = hooks.create_endpoint(conn, site_id="acme", url=srv.url("/trickle"),
                                   events=["alert.firing"], now_ms=FIXED_NOW_MS).endpoint
        app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
        async with app.run_test(size=(120, 30)) as pilot:
            await press_until(pilot, AlertsScreen, "5", timeout=5)
            await press_until(pilot, WebhooksScreen, "w", timeout=5)
            await async_wait_until(lambda: app.screen.query_one("#endpoints-table").row_count,
                                   timeout=5)
            await pilot.press("t")
            await async_wait_until(lambda: srv.hits_for("/trickle"), timeout=10)
            # the store still answers while the endpoint trickles
            assert len(await asyncio.wait_for(app.store.read(
                lambda d: d.control.list_endpoints()), timeout=5)) == 1
            started = time.monotonic()
            await pilot.press("q")
        elapsed = time.monotonic() - started
        assert elapsed < 15, f"quitting took {elapsed:.1f} s"
        [hit] = srv.hits_for("/trickle")
        wait_until(lambda: hit.finished is not None, timeout=10)
        assert hit.client_gone
        # the test delivery is held, not left due for the worker to send at once
        [d] = hooks.recent_deliveries(conn, ep.id)
        assert d.event_type == "webhook.test" and d.next_attempt_at > FIXED_NOW_MS
