"""Plain frozen dataclasses the data interfaces return; no SQL and no Textual here.

The panes, the CLI, the exports and the worker all read these types, whichever store produced
them (pulse_tui.backend). The store modules build them from rows; nothing here knows a row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from pulse_tui.clock import DAY_MS

if TYPE_CHECKING:  # annotations only: importing the package would import the compiler
    from pulse_tui.cohorts.criteria import Group, Problem


SEARCH_SCAN = 200_000  # how many of the latest arrivals a Live filter searches


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str | None
    domain: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Event:
    """One row of ``events``; ``seq`` is its rowid (arrival order)."""

    seq: int
    event_id: str
    site_id: str
    event_type: str
    timestamp_ms: int
    session_id: str
    user_id: str | None
    url: str | None
    referrer: str | None
    country: str | None
    device_type: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write (importer, simulator)."""

    event_id: str
    site_id: str
    event_type: str
    timestamp_ms: int
    session_id: str
    user_id: str | None = None
    url: str | None = None
    referrer: str | None = None
    country: str | None = None
    device_type: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds the worker lease of a database."""

    holder: str
    pid: int | None
    host: str | None
    renewed_at: int
    expires_at: int


def member_id_for(cohort_id: str, user_id: str) -> str:
    """The stable default cohort_members.member_id: a hash of cohort_id and user_id (the
    importer's default, and the id a computed membership row gets)."""
    digest = hashlib.sha256(f"{cohort_id}\x1f{user_id}".encode("utf-8", "surrogatepass"))
    return "m_" + digest.hexdigest()[:32]


# ---------------------------------------------------------------------------- cohorts


@dataclass(frozen=True, slots=True)
class Cohort:
    """One cohort row; ``criteria`` is None (and ``problems`` says why) when the stored JSON
    is invalid (written by another program)."""

    cohort_id: str
    site_id: str
    name: str
    description: str | None
    criteria_text: str
    criteria: Group | None
    problems: tuple[Problem, ...]
    status: str
    kind: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class CohortSummary:
    """A cohort for lists: member count = active rows of cohort_members."""

    cohort_id: str
    site_id: str
    name: str
    status: str
    kind: str
    members: int
    updated_at: int
    problem: str | None = None  # why its stored criteria cannot be used (written elsewhere)


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str | None
    joined_at: int
    last_seen_at: int
    is_active: bool


@dataclass(frozen=True, slots=True)
class CohortPreview:
    """What saving criteria would give, computed without writing: count and a sample."""

    count: int
    sample: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """Outcome of one cohort's refresh (``error`` set when its stored criteria are invalid)."""

    cohort_id: str
    matched: int = 0
    added: int = 0
    updated: int = 0
    deactivated: int = 0
    skipped: str | None = None  # why nothing was computed (static, invalid criteria, gone)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deactivated)


# ---------------------------------------------------------------------------- retention
WEEKS = 13  # week_0 .. week_12
ACQUISITION = "acquisition"  # RetentionRow.kind of an acquisition week
SAVED = "cohort"  # RetentionRow.kind of a saved cohort
_EPOCH = date(1970, 1, 1)


def _day_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


@dataclass(frozen=True, slots=True)
class RetentionCell:
    """One cell: week ``week_number`` of a row.

    ``base`` is the denominator (acquisition: cohort size; saved cohort: eligible members);
    ``returning`` is None where the week has not ended (no eligible member). ``start_ms`` /
    ``end_ms`` (exclusive) are the window: the calendar week for acquisition cohorts, the span
    from the earliest member's window start to the latest member's window end for saved ones.
    """

    week_number: int
    start_ms: int
    end_ms: int
    returning: int | None
    base: int
    complete: bool = True  # saved cohorts: every member's window k has ended

    @property
    def rate(self) -> float | None:
        """Share 0..1, None where the week has not ended."""
        if self.returning is None:
            return None
        return self.returning / self.base if self.base else 0.0

    @property
    def start(self) -> date:
        return _day_date(self.start_ms // DAY_MS)

    @property
    def last_day(self) -> date:
        """The last UTC date the window touches."""
        return _day_date((self.end_ms - 1) // DAY_MS)


@dataclass(frozen=True, slots=True)
class RetentionRow:
    """One grid row: an acquisition week (``key`` = label = its Monday) or a saved cohort
    (``key`` = cohort_id, ``label`` = its name). ``size``: cohort users / active members."""

    kind: str  # ACQUISITION | SAVED
    key: str
    label: str
    site_id: str
    size: int
    cells: tuple[RetentionCell, ...]
    captured_at: int | None = None  # when read from a snapshot

    def rates(self) -> list[float | None]:
        return [c.rate for c in self.cells]


@dataclass(frozen=True, slots=True)
class RetentionGrid:
    """What the retention pane shows: acquisition weeks of the range, then saved cohorts."""

    site_id: str
    start: date
    end: date
    acquisition: tuple[RetentionRow, ...]
    cohorts: tuple[RetentionRow, ...]
    captured_at: int | None  # oldest snapshot time among the rows; None when computed live

    @property
    def rows(self) -> tuple[RetentionRow, ...]:
        return self.cohorts + self.acquisition


# ---------------------------------------------------------------------------- imports


@dataclass(frozen=True, slots=True)
class ImportJob:
    """One row of ``import_jobs`` (the fields the importer and the Jobs pane use)."""

    id: str
    site_id: str
    type: str
    status: str
    file_name: str
    file_size: int
    total_records: int | None
    processed_records: int
    failed_records: int
    duplicate_records: int
    errors: str | None
    created_at: int
    started_at: int | None
    completed_at: int | None
    source_path: str | None
    result_path: str | None
    checkpoint_rows: int
    checkpoint_offset: int
    checkpoint_line: int
    message: str | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    rows: int  # data records consumed in this batch
    offset: int  # byte offset after them
    line: int  # physical lines consumed


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    processed: int
    duplicates: int
    failed: int


# ---------------------------------------------------------------------------- exports


@dataclass(frozen=True, slots=True)
class ExportJobRow:
    """One export_jobs row as stored (JSON columns still text; other programs may write any)."""

    id: str
    site_id: str
    type: str
    name: str
    format: str | None
    filters: str | None
    status: str | None
    file_url: str | None
    scheduled: str | None
    created_at: int
    completed_at: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ExportRun:
    """One export_runs row: a single run of an export (status running | completed | failed)."""

    id: int
    export_id: str
    started_at: int
    finished_at: int | None
    status: str
    file_path: str | None
    rows: int | None
    error: str | None


# ---------------------------------------------------------------- scheduler and cleanup


@dataclass(frozen=True, slots=True)
class SchedulerJobRow:
    """One row of ``scheduler_jobs`` (times are real epoch ms)."""

    name: str
    last_run_at: int | None
    last_duration_ms: int | None
    last_outcome: str | None
    next_run_at: int | None


@dataclass(frozen=True, slots=True)
class CleanupResult:
    """Counts of one cleanup pass (``enabled`` False: nothing was done)."""

    enabled: bool = True
    events: int = 0
    sessions_deleted: int = 0
    sessions_updated: int = 0
    rollup_rows: int = 0
    export_runs: int = 0
    export_files: int = 0
    one_off_exports: int = 0
    deliveries: int = 0
    temp_files: int = 0
    cohorts_refreshed: int = 0
    events_cutoff_ms: int | None = None
    rollup_cutoff_day: int | None = None
    exports_cutoff_ms: int | None = None

    def describe(self) -> str:
        if not self.enabled:
            return "cleanup disabled (cleanup_enabled = false)"
        text = (f"deleted {self.events} events, {self.sessions_deleted} sessions "
                f"({self.sessions_updated} recomputed), {self.rollup_rows} rollup rows, "
                f"{self.export_runs} export runs ({self.export_files} files), "
                f"{self.one_off_exports} one-off exports, {self.deliveries} webhook deliveries")
        if self.temp_files:
            text += f", {self.temp_files} stale temp files"
        if self.cohorts_refreshed:
            text += f"; {self.cohorts_refreshed} cohorts refreshed"
        return text


# ---------------------------------------------------------------- rows PULSE cannot use
def describe_unusable(counts: dict[str, int]) -> str:
    """One line for an operator, '' when there is nothing to say."""
    total = counts.get("total", 0)
    if not total:
        return ""
    cols = ", ".join(f"{c} {n}" for c, n in counts.items() if c != "total")
    rows = "row" if total == 1 else "rows"
    return (f"{total} {rows} of events cannot be used (wrong type, empty or out-of-range value: "
            f"{cols}); they are left out of every report and derived table until fixed or "
            "deleted")
