"""App-wide messages: data changed, worker state, import progress."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from pulse_tui.worker.events import (
    FileWaiting,
    ImportCommitted,
    ImportFinished,
    ImportStarted,
    ScheduledJobRan,
    WorkerEvent,
)


class DataChanged(Message, bubble=False):
    """The database changed (another connection committed, or we wrote). Panes reload.

    Posted by the app to each pane; it must not bubble back up to the app.
    """

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DataChanged)


@dataclass
class BackgroundWorkerState(Message):
    """The embedded worker's state: running, standby (who holds the lease), off, stopped."""

    state: str
    detail: str = ""


@dataclass
class BackgroundWorkerEvent(Message, bubble=False):
    """Base of the messages the worker's events become (one subclass per event, mapped once in
    pulse_tui/tui/worker_bridge.py). Handle one with ``@on(WorkerImportFinished)``, or all with
    ``@on(BackgroundWorkerEvent)``.

    The app receives them from the worker thread and re-posts each to every open pane; they must
    not bubble (a pane's copy would climb back to the app and be forwarded again, forever).
    """

    event: WorkerEvent


@dataclass
class WorkerFileWaiting(BackgroundWorkerEvent, bubble=False):
    """A file appeared in the inbox and waits to hold still."""

    event: FileWaiting


@dataclass
class WorkerImportStarted(BackgroundWorkerEvent, bubble=False):
    event: ImportStarted


@dataclass
class WorkerImportCommitted(BackgroundWorkerEvent, bubble=False):
    """A batch of an import committed (progress). Bursts for the same job merge."""

    event: ImportCommitted

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, WorkerImportCommitted)
                and message.event.job_id == self.event.job_id)


@dataclass
class WorkerImportFinished(BackgroundWorkerEvent, bubble=False):
    event: ImportFinished


@dataclass
class WorkerJobRan(BackgroundWorkerEvent, bubble=False):
    """A periodic job finished."""

    event: ScheduledJobRan


@dataclass
class SiteChanged(Message):
    site_id: str | None
