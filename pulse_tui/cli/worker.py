"""``pulse-tui worker``: the worker alone, headless (systemd); logs to stderr."""

from __future__ import annotations

import signal
from typing import Any

import click

from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.clock import Clock


@pulse_command("worker")
@click.pass_context
def worker_cmd(ctx: click.Context) -> None:
    """Import dropped files and run scheduled jobs, without the TUI (for systemd).

    Waits as a standby while another worker holds this database. SIGTERM or SIGINT finish
    the current batch and exit 0.
    """
    from pulse_tui.logging_setup import setup_logging
    from pulse_tui.worker.service import WorkerService

    settings = settings_from(ctx)
    setup_logging(None, debug=bool(ctx.obj.get("debug")), stderr=True)
    service = WorkerService(settings, Clock.from_env())

    def handler(signum: int, frame: Any) -> None:
        service.request_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    service.run()
