"""The worker: import folder, lease, periodic jobs (headless or embedded in the TUI)."""

from __future__ import annotations

from pulse_tui.worker.events import (
    RUNNING,
    STANDBY,
    STOPPED,
    FileWaiting,
    ImportCommitted,
    ImportFinished,
    ImportStarted,
    ScheduledJobRan,
    WorkerEvent,
    WorkerState,
)
from pulse_tui.worker.service import WorkerService, retry_failed_file, retry_failed_job

# the name this event had before (one class: the importer's own ImportProgress is another thing)
ImportProgress = ImportCommitted

__all__ = [
    "RUNNING",
    "STANDBY",
    "STOPPED",
    "FileWaiting",
    "ImportFinished",
    "ImportCommitted",
    "ImportProgress",
    "ImportStarted",
    "ScheduledJobRan",
    "WorkerEvent",
    "WorkerService",
    "WorkerState",
    "retry_failed_file",
    "retry_failed_job",
]
