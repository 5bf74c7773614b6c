"""The small events the worker reports through its ``on_event`` callback (no Textual here)."""

from __future__ import annotations

from dataclasses import dataclass

RUNNING = "running"
STANDBY = "standby"
STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class WorkerState:
    """running | standby | stopped, with a line for the header (e.g. who holds the lease)."""

    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FileWaiting:
    """A file appeared in the inbox and is waiting to hold still (still being written)."""

    file: str
    kind: str


@dataclass(frozen=True, slots=True)
class ImportStarted:
    job_id: str | None
    file: str
    kind: str
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class ImportCommitted:
    """After each committed batch: rows done so far and bytes read of the file."""

    job_id: str
    file: str
    rows: int
    bytes_done: int
    total_bytes: int
    processed: int = 0
    duplicates: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class ImportFinished:
    """A job ended and its file was moved (``result_path``); errors file when rows were rejected."""

    job_id: str
    file: str
    kind: str
    site_id: str
    status: str  # completed | failed
    processed: int
    duplicates: int
    failed: int
    result_path: str | None
    errors_path: str | None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduledJobRan:
    """A periodic job finished (the Jobs pane reloads ``scheduler_jobs``)."""

    name: str
    ok: bool
    outcome: str
    duration_ms: int


WorkerEvent = (WorkerState | FileWaiting | ImportStarted | ImportCommitted | ImportFinished
               | ScheduledJobRan)
