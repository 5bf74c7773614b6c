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
