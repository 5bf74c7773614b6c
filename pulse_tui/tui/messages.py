"""App-wide messages: data changed, worker state, import progress."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


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
    """Anything else the worker reports (import progress and results), forwarded as is.

    The app receives it from the worker thread and re-posts it to each pane; it must not bubble
    (a pane's copy would climb back to the app and be forwarded again, forever).
    """

    event: object

    def can_replace(self, message: Message) -> bool:
        # bursts of progress for the same job merge; results never do
        other = getattr(message, "event", None)
        mine = self.event
        return (
            isinstance(message, BackgroundWorkerEvent)
            and type(other).__name__ == type(mine).__name__
            and type(mine).__name__.endswith("Progress")
            and getattr(other, "job_id", None) == getattr(mine, "job_id", None)
        )


@dataclass
class SiteChanged(Message):
    site_id: str | None
