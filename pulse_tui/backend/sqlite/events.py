"""The events interface over the PULSE SQLite file: each method wraps today's store function.

No query lives here: every method hands its connection to the function in pulse_tui/store that
has always answered that question. No service is imported here: the services (alert engine,
exports, simulator) call these methods.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any

from pulse_tui.backend.interface import (
    ChangeToken,
    LiveCursor,
    OutsideEvents,
    RejectRow,
    TailPage,
)
from pulse_tui.clock import Clock
from pulse_tui.cohorts.criteria import Group
from pulse_tui.config import Settings
from pulse_tui.ingest import kinds as import_kinds
from pulse_tui.models import (
    BatchOutcome,
    Checkpoint,
    CleanupResult,
    CohortPreview,
    Event,
    Member,
    NewEvent,
    RefreshResult,
    RetentionGrid,
    RetentionRow,
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
from pulse_tui.store import (
    alerts,
    cleanup,
    cohorts,
    derived,
    events,
    exports,
    imports,
    reports,
    retention,
)
from pulse_tui.store.tx import write_transaction


class MembershipInSqlite:
    """Cohort membership and retention snapshots: they live in the PULSE SQLite file ``conn``
    whatever holds the events, so every events backend shares these methods. The store
    functions read the events from the file, or through ``events_outside`` (the backend
    itself) when another store holds them."""

    conn: sqlite3.Connection
    events_outside: OutsideEvents | None = None  # None: the events are in ``conn``

    def cohort_members(self, cohort_id: str, *, active_only: bool = True,
                       limit: int | None = None, offset: int = 0) -> list[Member]:
        return cohorts.list_members(self.conn, cohort_id, active_only=active_only, limit=limit,
                                    offset=offset)

    def refresh_cohort(self, clock: Clock, cohort_id: str) -> RefreshResult:
        return cohorts.refresh_cohort(self.conn, clock, cohort_id, events=self.events_outside)

    def refresh_all_cohorts(self, clock: Clock) -> list[RefreshResult]:
        return cohorts.refresh_all(self.conn, clock, events=self.events_outside)

    def refresh_changed_cohorts(self, clock: Clock) -> list[RefreshResult]:
        return cohorts.refresh_changed_results(self.conn, clock, events=self.events_outside)

    # ---------------------------------------------------------------- retention
    def retention_grid(self, site_id: str, start: date, end: date) -> RetentionGrid:
        return retention.load_grid(self.conn, site_id, start, end)

    def refresh_retention(self, site_id: str, clock: Clock, start: date, end: date
                          ) -> RetentionGrid:
        return retention.refresh_site(self.conn, site_id, clock, start, end,
                                      events=self.events_outside)

    def compute_retention(self, site_id: str, start: date, end: date, now_ms: int
                          ) -> RetentionGrid:
        return retention.compute_grid(self.conn, site_id, start, end, now_ms,
                                      events=self.events_outside)

    def retention_cell_users(self, row: RetentionRow, week_number: int, now_ms: int
                             ) -> list[str]:
        return retention.cell_users(self.conn, row, week_number, now_ms, events=self.events_outside)

    def save_users_as_static_cohort(self, site_id: str, name: str, user_ids: Sequence[str],
                                    now_ms: int) -> str:
        return cohorts.create_static_cohort(self.conn, site_id, name, user_ids, now_ms,
                                            events=self.events_outside)

    def snapshot_retention(self, clock: Clock) -> str:
        """Every cohort's retention rows and each site's recent acquisition weeks (the daily
        worker job); one line."""
        return retention.snapshot_all(self.conn, clock, events=self.events_outside)


class SqliteEvents(MembershipInSqlite):
    """Events kept in the PULSE SQLite file (the default ``events_store``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # ---------------------------------------------------------------- sites and the live tail
    def sites(self) -> list[Site]:
        # also the sites of rows other programs inserted (as ClickHouse's sites())
        return reports.sites(self.conn)

    def tail(self, *, after: LiveCursor | None = None, site_id: str | None = None,
             limit: int = 500) -> TailPage:
        after_seq = int(after.position) if after is not None and after.position else 0
        rows = events.tail_events(self.conn, after_seq=after_seq, site_id=site_id, limit=limit)
        newest = max(after_seq, rows[0].seq) if rows else after_seq
        return TailPage(rows, LiveCursor(newest))

    def search(self, *, text: str = "", event_type: str | None = None,
               site_id: str | None = None, limit: int = 300) -> list[Event]:
        return events.search_events(self.conn, text=text, event_type=event_type,
                                    site_id=site_id, limit=limit)

    def bound_to(self, conn: sqlite3.Connection) -> SqliteEvents:
        return SqliteEvents(conn)

    def change_token(self) -> ChangeToken:
        # another connection's commit changes data_version; our own do not (Store counts them)
        return events.data_version(self.conn)

    def data_mark(self) -> str:
        return events.data_mark(self.conn)

    # ---------------------------------------------------------------- reports
    def range_totals(self, site_id: str, rng: DateRange, now_ms: int | None = None
                     ) -> RangeTotals:
        return reports.range_totals(self.conn, site_id, rng, now_ms)

    def totals(self, site_id: str, rng: DateRange) -> Totals:
        return reports.totals(self.conn, site_id, rng)

    def daily(self, site_id: str, rng: DateRange) -> list[DailyRow]:
        return reports.daily(self.conn, site_id, rng)

    def breakdown(self, site_id: str, rng: DateRange) -> list[BreakdownRow]:
        return reports.breakdown(self.conn, site_id, rng)

    def top(self, site_id: str, rng: DateRange, dim: str, limit: int = 10) -> list[TopRow]:
        return reports.top(self.conn, site_id, rng, dim, limit)

    def funnel(self, site_id: str, rng: DateRange, steps: Sequence[str]) -> list[FunnelRow]:
        return reports.funnel(self.conn, site_id, rng, steps)

    def report_names(self) -> list[str]:
        return list(reports.REPORTS)

    def report(self, name: str, site_id: str, rng: DateRange, *, now_ms: int | None = None,
               limit: int = 10, steps: Sequence[str] = ()) -> list[tuple[object, ...]]:
        return reports.run_report(self.conn, name, site_id, rng, now_ms=now_ms, limit=limit,
                                  steps=steps)

    # ---------------------------------------------------------------- cohorts
    def cohort_preview(self, clock: Clock, site_id: str, criteria: object, *,
                       sample: int = 10) -> CohortPreview:
        return cohorts.preview(self.conn, clock, site_id, criteria, sample=sample)

    def cohort_evaluate(self, site_id: str, criteria: Group, now_ms: int
                        ) -> list[tuple[str, int, int]]:
        return cohorts.evaluate(self.conn, site_id, criteria, now_ms)

    # ---------------------------------------------------------------- alert metrics
    def window_metric(self, site_id: str, metric: str, start_ms: int, end_ms: int,
                      flt: dict[str, Any] | None = None) -> int:
        return alerts.window_metric(self.conn, site_id, metric, start_ms, end_ms, flt)

    def hourly_events(self, site_id: str, from_hour: int, to_hour: int) -> dict[int, int]:
        return alerts.hourly_events(self.conn, site_id, from_hour, to_hour)

    def first_hour_with_data(self, site_id: str) -> int | None:
        return alerts.first_rollup_hour(self.conn, site_id)

    def hourly_raw(self, site_id: str, metric: str, start_ms: int, end_ms: int,
                   flt: dict[str, Any] | None = None) -> Iterable[tuple[int, object]]:
        return alerts.hourly_raw(self.conn, site_id, metric, start_ms, end_ms, flt)

    def raw_events_from(self, site_id: str) -> int | None:
        return alerts.raw_events_from(self.conn, site_id)

    # ---------------------------------------------------------------- exports, import, upkeep
    def users_rows(self, site_id: str, user_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        return exports.users_rows(self.conn, site_id, user_ids)

    def write_import_batch(self, kind: str, job_id: str, rows: Sequence[tuple[Any, ...]],
                           rejects: Sequence[RejectRow], checkpoint: Checkpoint, now_ms: int,
                           lines: Sequence[int] = ()) -> BatchOutcome:
        writer = imports.WRITERS[import_kinds.get(kind).writer]
        return writer(self.conn, job_id, rows, rejects, checkpoint, now_ms, lines)

    def import_stream(self, kind: str) -> Callable[[str, int], imports.EventsTx] | None:
        streamed = imports.STREAMED_WRITERS.get(import_kinds.get(kind).writer)
        if streamed is None:
            return None
        return lambda job_id, now_ms: streamed(self.conn, job_id, now_ms)

    def write_events(self, new: Sequence[NewEvent], now_ms: int) -> int:
        with write_transaction(self.conn):
            events.ensure_sites(self.conn, {e.site_id for e in new}, now_ms)
            n = events.insert_events(self.conn, new, now_ms)
            derived.catch_up(self.conn, now_ms)
        return n

    def write_new_users(self, rows: Sequence[tuple[Any, ...]]) -> None:
        events.insert_new_users(self.conn, rows)

    def unusable_counts(self) -> dict[str, int]:
        return derived.unusable_counts(self.conn)

    def catch_up(self, now_ms: int) -> int:
        return derived.catch_up_tx(self.conn, now_ms)

    def cleanup(self, settings: Settings, clock: Clock, *,
                should_stop: Callable[[], bool] | None = None) -> CleanupResult:
        return cleanup.run_cleanup(self.conn, settings, clock, should_stop=should_stop)

    def rebuild(self, now_ms: int) -> int:
        return derived.rebuild(self.conn, now_ms)
