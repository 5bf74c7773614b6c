"""The control-data interface over the PULSE SQLite file: each method wraps today's function.

Control data (cohort definitions, alert rules, webhooks, import and export jobs, the scheduler's
rows, the lease) always lives in the SQLite file. Saving a cohort recomputes its membership
through the events backend it was given (``events.refresh_cohort``). What combines control
data with events or the network (evaluating rules, running exports, sending test pings,
retrying an import) is a service called with the backends, never imported here.
"""

from __future__ import annotations

import sqlite3
from itertools import islice

from pulse_tui.alerts.models import AlertHistoryEntry, AlertRule
from pulse_tui.backend.interface import EventsBackend, RejectRow
from pulse_tui.clock import Clock
from pulse_tui.models import Cohort, CohortSummary, ImportJob, LeaseInfo, SchedulerJobRow
from pulse_tui.notify.models import CreatedEndpoint, WebhookDelivery, WebhookEndpoint
from pulse_tui.store import alerts, cohorts, imports, lease, scheduler, webhooks


class SqliteControl:
    """Definitions, jobs and state in the PULSE SQLite file."""

    def __init__(self, conn: sqlite3.Connection, events: EventsBackend) -> None:
        self.conn = conn
        self.events = events  # computes the membership of the cohorts saved here

    # ---------------------------------------------------------------- cohort definitions
    def list_cohorts(self, site_id: str | None = None) -> list[CohortSummary]:
        return cohorts.list_cohorts(self.conn, site_id)

    def get_cohort(self, cohort_id: str) -> Cohort:
        return cohorts.get_cohort(self.conn, cohort_id)

    def create_cohort(self, clock: Clock, *, site_id: str, name: str, criteria: object = None,
                      description: str | None = None, kind: str = "criteria",
                      cohort_id: str | None = None) -> Cohort:
        cohort = cohorts.create_cohort(self.conn, clock, site_id=site_id, name=name,
                                       criteria=criteria, description=description, kind=kind,
                                       cohort_id=cohort_id, refresh=False)
        return self._with_members(clock, cohort)

    def _with_members(self, clock: Clock, cohort: Cohort) -> Cohort:
        """A criteria cohort just saved: its membership computed, then read back."""
        if cohort.kind != "criteria":
            return cohort
        self.events.refresh_cohort(clock, cohort.cohort_id)
        return cohorts.get_cohort(self.conn, cohort.cohort_id)

    def update_cohort(self, clock: Clock, cohort_id: str, *, expected_updated_at: int,
                      name: str | None = None, description: str | None = None,
                      criteria: object = None) -> Cohort:
        cohort = cohorts.update_cohort(self.conn, clock, cohort_id,
                                       expected_updated_at=expected_updated_at, name=name,
                                       description=description, criteria=criteria,
                                       refresh=False)
        return self._with_members(clock, cohort)

    def duplicate_cohort(self, clock: Clock, cohort_id: str) -> Cohort:
        return self._with_members(clock, cohorts.duplicate_cohort(self.conn, clock, cohort_id,
                                                                  refresh=False))

    def set_cohort_archived(self, clock: Clock, cohort_id: str, archived: bool) -> Cohort:
        change = cohorts.archive_cohort if archived else cohorts.restore_cohort
        return change(self.conn, clock, cohort_id)

    def delete_cohort(self, cohort_id: str, *, expected_updated_at: int | None = None) -> bool:
        return cohorts.delete_cohort(self.conn, cohort_id, expected_updated_at=expected_updated_at)

    def active_member_count(self, cohort_id: str) -> int:
        site = cohorts.get_cohort(self.conn, cohort_id).site_id
        return next((c.members for c in cohorts.list_cohorts(self.conn, site)
                     if c.cohort_id == cohort_id), 0)

    # ---------------------------------------------------------------- alert rules
    def list_rules(self, site_id: str | None = None) -> list[AlertRule]:
        return alerts.list_rules(self.conn, site_id)

    def create_rule(self, *, site_id: str, name: str, condition: object,
                    notification_type: str, notification_config: object, now_ms: int
                    ) -> AlertRule:
        return alerts.create_rule(self.conn, site_id=site_id, name=name, condition=condition,
                                  notification_type=notification_type,
                                  notification_config=notification_config, now_ms=now_ms)

    def update_rule(self, rule_id: str, *, name: str, condition: object,
                    notification_type: str, notification_config: object,
                    expected_updated_at: int, now_ms: int) -> AlertRule:
        return alerts.update_rule(self.conn, rule_id, name=name, condition=condition,
                                  notification_type=notification_type,
                                  notification_config=notification_config,
                                  expected_updated_at=expected_updated_at, now_ms=now_ms)

    def set_rule_muted(self, rule_id: str, muted: bool, *, now_ms: int) -> AlertRule:
        change = alerts.mute_rule if muted else alerts.unmute_rule
        return change(self.conn, rule_id, now_ms=now_ms)

    def delete_rule(self, rule_id: str) -> bool:
        return alerts.delete_rule(self.conn, rule_id)

    def rule_history(self, rule_id: str, *, limit: int = 100) -> list[AlertHistoryEntry]:
        return alerts.history(self.conn, rule_id, limit=limit)

    # ---------------------------------------------------------------- webhooks
    def list_endpoints(self, site_id: str | None = None) -> list[WebhookEndpoint]:
        return webhooks.list_endpoints(self.conn, site_id)

    def create_endpoint(self, *, site_id: str, url: str, events: object, headers: object,
                        active: bool, now_ms: int, allow_link_local: bool = False
                        ) -> CreatedEndpoint:
        return webhooks.create_endpoint(self.conn, site_id=site_id, url=url, events=events,
                                        headers=headers, active=active, now_ms=now_ms,
                                        allow_link_local=allow_link_local)

    def update_endpoint(self, endpoint_id: str, *, url: str, events: object, headers: object,
                        active: bool, now_ms: int, allow_link_local: bool = False
                        ) -> WebhookEndpoint:
        return webhooks.update_endpoint(self.conn, endpoint_id, url=url, events=events,
                                        headers=headers, active=active, now_ms=now_ms,
                                        allow_link_local=allow_link_local)

    def rotate_secret(self, endpoint_id: str, *, now_ms: int) -> CreatedEndpoint:
        return webhooks.rotate_secret(self.conn, endpoint_id, now_ms=now_ms)

    def delete_endpoint(self, endpoint_id: str) -> bool:
        return webhooks.delete_endpoint(self.conn, endpoint_id)

    def recent_deliveries(self, endpoint_id: str, limit: int = 20) -> list[WebhookDelivery]:
        return webhooks.recent_deliveries(self.conn, endpoint_id, limit)

    # ---------------------------------------------------------------- imports
    def create_import_job(self, *, job_id: str, kind: str, site_id: str, file_name: str,
                          file_size: int, source_path: str | None, now_ms: int) -> None:
        imports.create_job(self.conn, job_id=job_id, kind=kind, site_id=site_id,
                           file_name=file_name, file_size=file_size, source_path=source_path,
                           now_ms=now_ms)

    def list_import_jobs(self, *, limit: int = 100) -> list[ImportJob]:
        return imports.list_jobs(self.conn, limit=limit)

    def get_import_job(self, job_id: str) -> ImportJob | None:
        return imports.get_job(self.conn, job_id)

    def import_rejects(self, job_id: str, limit: int) -> tuple[list[RejectRow], int]:
        rows = list(islice(imports.iter_rejects(self.conn, job_id), limit))
        return rows, imports.reject_count(self.conn, job_id)

    # ---------------------------------------------------------------- scheduler and lease
    def scheduler_jobs(self) -> list[SchedulerJobRow]:
        return scheduler.list_jobs(self.conn)

    def lease(self, now_ms: int) -> LeaseInfo | None:
        return lease.current(self.conn, now_ms)
