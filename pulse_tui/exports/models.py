"""Frozen dataclasses and constants of exports: definitions, pane summaries, run results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pulse_tui.clock import DAY_MS, HOUR_MS, WEEK_MS
from pulse_tui.models import ExportRun

TYPES = ("report", "metrics", "audience")
FORMATS = ("csv", "json")
FREQUENCIES = ("once", "hourly", "daily", "weekly")
INTERVAL_MS: dict[str, int] = {"hourly": HOUR_MS, "daily": DAY_MS, "weekly": WEEK_MS}
STATUSES = ("pending", "running", "completed", "failed")

# a one-off export that failed is retried this long after the failure (recurring exports are
# retried at their next interval); "run now" retries at once
ONCE_RETRY_MS = HOUR_MS
# a run still 'running' after this long (business time) was interrupted
STALE_RUN_MS = 30 * 60_000


@dataclass(frozen=True, slots=True)
class ExportDefinition:
    """An export_jobs row parsed. ``problem`` is set (and fields may be defaults) when the
    stored row is invalid (written by another program); such an export fails when run."""

    id: str
    site_id: str
    type: str
    name: str
    format: str
    filters: dict[str, Any]
    frequency: str
    next_run: int | None
    status: str
    file_url: str | None
    error: str | None
    created_at: int
    completed_at: int | None
    scheduled_extra: dict[str, Any]
    problem: str | None = None

    @property
    def is_once(self) -> bool:
        return self.frequency == "once"


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """One line of the Jobs pane's exports list."""

    definition: ExportDefinition
    last_run: ExportRun | None
    last_file: str | None  # path of the latest completed run's file

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def status(self) -> str:
        return self.definition.status

    @property
    def next_run(self) -> int | None:
        return self.definition.next_run


@dataclass(frozen=True, slots=True)
class ExportRunResult:
    """What one run did. ``status``: completed | failed | skipped (already running, unknown
    export); ``error`` is one line for failed and skipped runs."""

    export_id: str
    status: str
    run_id: int | None = None
    file_path: str | None = None
    file_url: str | None = None
    rows: int | None = None
    error: str | None = None
    next_run: int | None = None
    started_at: int | None = None
    finished_at: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"


__all__ = ["ExportDefinition", "ExportRun", "ExportRunResult", "ExportSummary", "FORMATS",
           "FREQUENCIES", "INTERVAL_MS", "ONCE_RETRY_MS", "STALE_RUN_MS", "STATUSES", "TYPES"]
