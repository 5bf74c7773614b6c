"""The two data interfaces everything above the store talks to: events, and control data.

``EventsBackend`` is where the events live and every read of them runs: sites, the live tail,
change detection, the reports, cohort evaluation and membership, retention, alert metrics, the
rows behind exports, the import batch writer, cleanup and the rollup rebuild. SQLite (the
default, pulse_tui.backend.sqlite) is one implementation; a ClickHouse one fits the same shape:

* the live tail's position is an opaque :class:`LiveCursor` (a rowid here, an ingestion sequence
  there); callers only hand back the cursor they were given;
* change detection is an opaque :data:`ChangeToken` the caller compares for equality (SQLite's
  ``PRAGMA data_version`` here; a cheap max-sequence or parts counter there);
* nothing here names a ``sqlite3`` type: arguments and results are the neutral dataclasses of
  :mod:`pulse_tui.models` and :mod:`pulse_tui.report_models`, and failures are PULSE errors.

``ControlStore`` is the data that always stays in the SQLite file, whatever holds the events:
cohort definitions, alert rules, webhook endpoints and deliveries, import and export jobs, the
scheduler's rows and the worker lease. Its write methods that need events (saving a cohort
recomputes its membership) are given them by the implementation, never by the caller.

What combines the two (evaluating alert rules, running exports, delivering webhooks, retrying
an import) is a service (``alerts.engine``, ``exports.runner``, ``notify.delivery``,
``worker.inbox``): it takes the :class:`Backends` and reads events only through
``EventsBackend``; the implementations never import a service.

Both are synchronous: the CLI and the worker call them on their own thread; the TUI calls them
through :class:`pulse_tui.backend.access.Store`, which runs each call on one database thread.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pulse_tui.models import (
    BatchOutcome,
    Checkpoint,
    CleanupResult,
    Cohort,
    CohortPreview,
    CohortSummary,
    Event,
    ImportJob,
    LeaseInfo,
    Member,
    NewEvent,
    RefreshResult,
    RetentionGrid,
    RetentionRow,
    SchedulerJobRow,
    Site,
)
from pulse_tui.report_models import (
    BreakdownRow,
    DailyRow,
    DateRange,
    FunnelRow,
    RangeTotals,
    TopRow,
    Totals,
)

if TYPE_CHECKING:  # types only: the domain layer does not import the services
    from pulse_tui.alerts.models import AlertHistoryEntry, AlertRule
    from pulse_tui.clock import Clock
    from pulse_tui.cohorts.criteria import Group
    from pulse_tui.config import Settings
    from pulse_tui.notify.models import CreatedEndpoint, WebhookDelivery, WebhookEndpoint

RejectRow = tuple[int, str | None, str | None, str]  # line, column, value, reason


class ImportStream(Protocol):
    """Several parsed batches of one import written in ONE transaction (``import_stream``):
    ``add`` stores a batch and remembers its checkpoint; ``commit`` makes everything added
    durable with the job's counters and the last checkpoint and returns the outcome of all of
    it; ``rollback`` forgets it. ``records``: the records added so far."""

    records: int

    def add(self, rows: Sequence[tuple[Any, ...]], rejects: Sequence[RejectRow],
            checkpoint: Checkpoint) -> None:
        ...

    def commit(self) -> BatchOutcome:
        ...

    def rollback(self) -> None:
        ...
ChangeToken = Hashable  # opaque: equal tokens mean "nothing another writer committed since"


@dataclass(frozen=True, slots=True)
class LiveCursor:
    """Where the live tail stands. Opaque: only the backend that made it reads ``position``."""

    position: Any = field(default=None)


@dataclass(frozen=True, slots=True)
class TailPage:
    """Events that arrived after a cursor, newest first, and the cursor to ask from next."""

    events: list[Event]
    cursor: LiveCursor


@runtime_checkable
class EventsBackend(Protocol):
    """Every read and write of events and of what is derived from them."""

    # ---------------------------------------------------------------- sites and the live tail
    def sites(self) -> list[Site]:
        """Every site, by id: the registered ones and those seen only in event rows other
        programs wrote (named by their id)."""
        ...

    def tail(self, *, after: LiveCursor | None = None, site_id: str | None = None,
             limit: int = 500) -> TailPage:
        """Up to ``limit`` newest events by arrival that arrived after ``after`` (None: from the
        start), newest first, of one site or all."""
        ...

    def search(self, *, text: str = "", event_type: str | None = None,
               site_id: str | None = None, limit: int = 300) -> list[Event]:
        """The newest events among the latest ``models.SEARCH_SCAN`` arrivals whose fields
        contain ``text`` (ASCII letters case-insensitive), optionally of one type."""
        ...

    def bound_to(self, conn: Any) -> EventsBackend:
        """The same events seen with ``conn``, another connection to the PULSE SQLite file
        (a worker job's own thread): what this backend keeps in the file goes through it."""
        ...

    def change_token(self) -> ChangeToken:
        """A value that changes when another writer commits events (cheap when nothing did)."""
        ...

    def data_mark(self) -> str:
        """A mark of the events and users rows that any writer's insert, update or delete
        moves, and that means the same on every connection and after a restart (unlike the
        change token, which may be one connection's): the periodic cohort job stores it."""
        ...

    # ---------------------------------------------------------------- reports (SPEC 8)
    def range_totals(self, site_id: str, rng: DateRange, now_ms: int | None = None
                     ) -> RangeTotals:
        """Events, users and sessions of the range, against the previous range of the same
        length measured to the same time of day when the range ends today."""
        ...

    def totals(self, site_id: str, rng: DateRange) -> Totals:
        """Events, exact distinct users and sessions of the range (the metrics export)."""
        ...

    def daily(self, site_id: str, rng: DateRange) -> list[DailyRow]:
        ...

    def breakdown(self, site_id: str, rng: DateRange) -> list[BreakdownRow]:
        ...

    def top(self, site_id: str, rng: DateRange, dim: str, limit: int = 10) -> list[TopRow]:
        ...

    def funnel(self, site_id: str, rng: DateRange, steps: Sequence[str]) -> list[FunnelRow]:
        ...

    def report_names(self) -> list[str]:
        """The reports ``report`` runs, in the order they were registered."""
        ...

    def report(self, name: str, site_id: str, rng: DateRange, *, now_ms: int | None = None,
               limit: int = 10, steps: Sequence[str] = ()) -> list[tuple[object, ...]]:
        """Any registered report's rows in its columns' order (``pulse-tui report``, exports)."""
        ...

    # ---------------------------------------------------------------- cohorts
    def cohort_preview(self, clock: Clock, site_id: str, criteria: object, *,
                       sample: int = 10) -> CohortPreview:
        """What saving ``criteria`` would give (count and a sample), writing nothing."""
        ...

    def cohort_evaluate(self, site_id: str, criteria: Group, now_ms: int
                        ) -> list[tuple[str, int, int]]:
        """Matching users as (user_id, joined_at, last_seen_at)."""
        ...

    def cohort_members(self, cohort_id: str, *, active_only: bool = True,
                       limit: int | None = None, offset: int = 0) -> list[Member]:
        ...

    def refresh_cohort(self, clock: Clock, cohort_id: str) -> RefreshResult:
        """Recompute one cohort's membership."""
        ...

    def refresh_all_cohorts(self, clock: Clock) -> list[RefreshResult]:
        ...

    def refresh_changed_cohorts(self, clock: Clock) -> list[RefreshResult]:
        """Cohorts other programs changed, and all of them when the data moved."""
        ...

    # ---------------------------------------------------------------- retention
    def retention_grid(self, site_id: str, start: date, end: date) -> RetentionGrid:
        """The grid from the stored snapshots (rows never computed have captured_at None)."""
        ...

    def refresh_retention(self, site_id: str, clock: Clock, start: date, end: date
                          ) -> RetentionGrid:
        """Recompute the snapshots of the site and return the grid."""
        ...

    def compute_retention(self, site_id: str, start: date, end: date, now_ms: int
                          ) -> RetentionGrid:
        """The grid computed live, storing nothing (a read-only session)."""
        ...

    def retention_cell_users(self, row: RetentionRow, week_number: int, now_ms: int
                             ) -> list[str]:
        """The users counted as returning in one cell."""
        ...

    def save_users_as_static_cohort(self, site_id: str, name: str, user_ids: Sequence[str],
                                    now_ms: int) -> str:
        """A new static cohort holding ``user_ids``; returns its id."""
        ...

    def snapshot_retention(self, clock: Clock) -> str:
        """Recompute every cohort's retention snapshots and each site's recent acquisition
        weeks (the daily worker job); one line of outcome."""
        ...

    # ---------------------------------------------------------------- alert metrics
    def window_metric(self, site_id: str, metric: str, start_ms: int, end_ms: int,
                      flt: dict[str, Any] | None = None) -> int:
        """``metric`` (events, users, sessions) over the site's events with start_ms <=
        timestamp_ms < end_ms matching the alert filter ``flt`` (a validated group or None)."""
        ...

    def hourly_events(self, site_id: str, from_hour: int, to_hour: int) -> dict[int, int]:
        """{hour number: events} for from_hour <= hour < to_hour (the unfiltered backtest)."""
        ...

    def first_hour_with_data(self, site_id: str) -> int | None:
        """The first hour ``hourly_events`` has data for (None: none)."""
        ...

    def hourly_raw(self, site_id: str, metric: str, start_ms: int, end_ms: int,
                   flt: dict[str, Any] | None = None) -> Iterable[tuple[int, object]]:
        """(hour, events) per hour for ``events``, or distinct (hour, user_id | session_id)
        pairs for ``users`` / ``sessions`` (the raw-event backtest)."""
        ...

    def raw_events_from(self, site_id: str) -> int | None:
        """From when the site's raw events are all there (the raw-event backtest's data_from;
        None: no events): the oldest usable event, or the first whole hour after cleanup's
        latest cutoff when that is later."""
        ...

    # ---------------------------------------------------------------- exports, import, upkeep
    def users_rows(self, site_id: str, user_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """The users rows of an audience export, by user_id."""
        ...

    def write_import_batch(self, kind: str, job_id: str, rows: Sequence[tuple[Any, ...]],
                           rejects: Sequence[RejectRow], checkpoint: Checkpoint, now_ms: int,
                           lines: Sequence[int] = ()) -> BatchOutcome:
        """Store one validated batch of an import of ``kind`` with its checkpoint, atomically:
        through the writer the kind names (``pulse_tui.ingest.kinds``), looked up by each
        implementation in its own writers."""
        ...

    def import_stream(self, kind: str) -> Callable[[str, int], ImportStream] | None:
        """For a kind whose batches this store gathers into longer transactions (SQLite's
        events: fewer, larger commits): a factory of streams (job_id, now_ms), one per
        transaction; None when each batch goes through ``write_import_batch``."""
        ...

    def write_events(self, events: Sequence[NewEvent], now_ms: int) -> int:
        """Register the events' sites and store the events whose ids are new, folded into
        what is derived from them (the simulator, the demo's live traffic); how many."""
        ...

    def write_new_users(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """users rows (user_id, site_id, name, email, company, plan, created_at, updated_at);
        a user_id already stored is left as it is."""
        ...

    def unusable_counts(self) -> dict[str, int]:
        """Stored event rows PULSE cannot use: {"total": n, column: rows breaking it, ...}."""
        ...

    def catch_up(self, now_ms: int) -> int:
        """Fold events other programs wrote into sessions and rollups; rows folded."""
        ...

    def cleanup(self, settings: Settings, clock: Clock, *,
                should_stop: Callable[[], bool] | None = None) -> CleanupResult:
        """One cleanup pass (SPEC 9): old events, rollups, export runs and files, deliveries;
        ``should_stop`` is asked between steps."""
        ...

    def rebuild(self, now_ms: int) -> int:
        """Recompute every derived table from the events; events read."""
        ...


class OutsideEvents(Protocol):
    """The event reads the store's membership and retention code (``store/cohorts.py``,
    ``store/retention.py``) asks an events backend for when the events are not in the PULSE
    file (``events=`` of those functions; None: it reads the file's own tables). Membership rows
    and retention snapshots stay in the file; only these reads go out."""

    def data_mark(self) -> str:
        """See :meth:`EventsBackend.data_mark`."""
        ...

    def cohort_evaluate(self, site_id: str, criteria: Group, now_ms: int
                        ) -> list[tuple[str, int, int]]:
        ...

    def acquisition_counts(self, p: dict[str, Any], weeks: int) -> list[tuple[int, int, int]]:
        """(week, -1, cohort size) and (week, k, returning users) of the acquisition weeks
        whose first events fall in [p["fs_lo"], p["fs_hi"]), activity days p["day_lo"] ..
        p["day_hi"], site p["site"]."""
        ...

    def acquisition_cell_users(self, site_id: str, fs: tuple[int, int], week_number: int
                               ) -> list[str]:
        ...

    def saved_retention(self, site_id: str, members: list[tuple[str, str, int]], now_ms: int,
                        weeks: int) -> list[tuple[str, str, int, int]]:
        """The tagged rows of the saved-cohort statement (see store/retention.py)."""
        ...

    def saved_cell_users(self, site_id: str, members: list[tuple[str, str, int]], now_ms: int,
                         week_number: int, weeks: int) -> list[str]:
        ...

    def first_last_seen(self, site_id: str, user_ids: list[str]
                        ) -> dict[str, tuple[int, int]]:
        ...


@runtime_checkable
class ControlStore(Protocol):
    """Definitions, jobs and state that always live in the SQLite file."""

    # ---------------------------------------------------------------- cohort definitions
    def list_cohorts(self, site_id: str | None = None) -> list[CohortSummary]:
        ...

    def get_cohort(self, cohort_id: str) -> Cohort:
        """RowVanished (CohortNotFound) when it is gone."""
        ...

    def create_cohort(self, clock: Clock, *, site_id: str, name: str, criteria: object = None,
                      description: str | None = None, kind: str = "criteria",
                      cohort_id: str | None = None) -> Cohort:
        """ValidationError, CriteriaError or NameTaken; membership computed when saved."""
        ...

    def update_cohort(self, clock: Clock, cohort_id: str, *, expected_updated_at: int,
                      name: str | None = None, description: str | None = None,
                      criteria: object = None) -> Cohort:
        """ConflictError when someone else saved it since ``expected_updated_at``."""
        ...

    def duplicate_cohort(self, clock: Clock, cohort_id: str) -> Cohort:
        ...

    def set_cohort_archived(self, clock: Clock, cohort_id: str, archived: bool) -> Cohort:
        ...

    def delete_cohort(self, cohort_id: str, *, expected_updated_at: int | None = None) -> bool:
        ...

    def active_member_count(self, cohort_id: str) -> int:
        ...

    # ---------------------------------------------------------------- alert rules
    def list_rules(self, site_id: str | None = None) -> list[AlertRule]:
        ...

    def create_rule(self, *, site_id: str, name: str, condition: object,
                    notification_type: str, notification_config: object, now_ms: int
                    ) -> AlertRule:
        ...

    def update_rule(self, rule_id: str, *, name: str, condition: object,
                    notification_type: str, notification_config: object,
                    expected_updated_at: int, now_ms: int) -> AlertRule:
        ...

    def set_rule_muted(self, rule_id: str, muted: bool, *, now_ms: int) -> AlertRule:
        ...

    def delete_rule(self, rule_id: str) -> bool:
        ...

    def rule_history(self, rule_id: str, *, limit: int = 100) -> list[AlertHistoryEntry]:
        ...

    # ---------------------------------------------------------------- webhooks
    def list_endpoints(self, site_id: str | None = None) -> list[WebhookEndpoint]:
        ...

    def create_endpoint(self, *, site_id: str, url: str, events: object, headers: object,
                        active: bool, now_ms: int, allow_link_local: bool = False
                        ) -> CreatedEndpoint:
        ...

    def update_endpoint(self, endpoint_id: str, *, url: str, events: object, headers: object,
                        active: bool, now_ms: int, allow_link_local: bool = False
                        ) -> WebhookEndpoint:
        ...

    def rotate_secret(self, endpoint_id: str, *, now_ms: int) -> CreatedEndpoint:
        ...

    def delete_endpoint(self, endpoint_id: str) -> bool:
        ...

    def recent_deliveries(self, endpoint_id: str, limit: int = 20) -> list[WebhookDelivery]:
        ...

    # ---------------------------------------------------------------- imports
    def create_import_job(self, *, job_id: str, kind: str, site_id: str, file_name: str,
                          file_size: int, source_path: str | None, now_ms: int) -> None:
        ...

    def list_import_jobs(self, *, limit: int = 100) -> list[ImportJob]:
        ...

    def get_import_job(self, job_id: str) -> ImportJob | None:
        ...

    def import_rejects(self, job_id: str, limit: int) -> tuple[list[RejectRow], int]:
        """The first ``limit`` rejected rows of a job, and how many there are."""
        ...

    # ---------------------------------------------------------------- scheduler and lease
    def scheduler_jobs(self) -> list[SchedulerJobRow]:
        ...

    def lease(self, now_ms: int) -> LeaseInfo | None:
        ...


@dataclass(slots=True)
class Backends:
    """What the wiring opened: the events backend, the control store, and how to close them.

    ``conn`` is the PULSE SQLite file's connection the control store writes: the services
    write their control rows (rule states, deliveries, export runs) through the store
    functions on it, in their own transactions; never events.
    """

    events: EventsBackend
    control: ControlStore
    closers: list[Any] = field(default_factory=list)
    conn: Any = None

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()
