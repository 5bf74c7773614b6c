"""Runs the worker inside the TUI and turns its plain events into Textual messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pulse_tui.tui.messages import BackgroundWorkerEvent, BackgroundWorkerState
from pulse_tui.worker.events import WorkerEvent, WorkerState
from pulse_tui.worker.service import WorkerService

if TYPE_CHECKING:
    from pulse_tui.tui.app import PulseApp


def start_embedded_worker(app: PulseApp) -> WorkerService:
    """Start the worker in its own thread; its events reach the app as messages."""

    def on_event(event: WorkerEvent) -> None:
        # called on the worker's threads: post_message is thread-safe
        if isinstance(event, WorkerState):
            app.post_message(BackgroundWorkerState(event.state, event.detail))
        else:
            app.post_message(BackgroundWorkerEvent(event))

    service = WorkerService(app.settings, app.clock, on_event=on_event)
    service.start()
    return service
