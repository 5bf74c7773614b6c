"""Runs the worker inside the TUI and maps each of its plain events to one Textual message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pulse_tui.tui.messages import (
    BackgroundWorkerEvent,
    BackgroundWorkerState,
    WorkerFileWaiting,
    WorkerImportCommitted,
    WorkerImportFinished,
    WorkerImportStarted,
    WorkerJobRan,
)
from pulse_tui.worker.events import (
    FileWaiting,
    ImportCommitted,
    ImportFinished,
    ImportStarted,
    ScheduledJobRan,
    WorkerEvent,
    WorkerState,
)
from pulse_tui.worker.service import WorkerService

if TYPE_CHECKING:
    from textual.message import Message

    from pulse_tui.tui.app import PulseApp

# the one mapping from the worker's events to the app's messages (a new event: one line)
MESSAGES: dict[type, type[BackgroundWorkerEvent]] = {
    FileWaiting: WorkerFileWaiting,
    ImportStarted: WorkerImportStarted,
    ImportCommitted: WorkerImportCommitted,
    ImportFinished: WorkerImportFinished,
    ScheduledJobRan: WorkerJobRan,
}


def message_for(event: WorkerEvent) -> Message:
    """The Textual message for one worker event."""
    if isinstance(event, WorkerState):
        return BackgroundWorkerState(event.state, event.detail)
    return MESSAGES[type(event)](event)


def start_embedded_worker(app: PulseApp) -> WorkerService:
    """Start the worker in its own thread; its events reach the app as messages."""

    def on_event(event: WorkerEvent) -> None:
        # called on the worker's threads: post_message is thread-safe
        app.post_message(message_for(event))

    service = WorkerService(app.settings, app.clock, on_event=on_event)
    service.start()
    return service
