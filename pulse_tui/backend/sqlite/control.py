"""The control-data interface over the PULSE SQLite file: each method wraps today's function.

Control data (cohort definitions, alert rules, webhooks, import and export jobs, the scheduler's
rows, the lease) always lives in the SQLite file. Methods that need the events (saving a cohort
recomputes its membership, "evaluate now" reads the metric) use the same connection here.
"""

from __future__ import annotations

import sqlite3
from itertools import islice
from pathlib import Path
from typing import Any

from pulse_tui.alerts import engine
from pulse_tui.alerts.models import AlertHistoryEntry, AlertRule, Evaluation
from pulse_tui.backend.interface import RejectRow
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.exports import definitions as export_defs
from pulse_tui.exports import runner as export_runner
from pulse_tui.exports.models import ExportDefinition, ExportRunResult, ExportSummary
from pulse_tui.models import Cohort, CohortSummary, ImportJob, LeaseInfo, SchedulerJobRow
from pulse_tui.notify import delivery
from pulse_tui.notify.models import CreatedEndpoint, SendResult, WebhookDelivery, WebhookEndpoint
from pulse_tui.store import alerts, cohorts, imports, lease, scheduler, webhooks
from pulse_tui.worker import inbox


class SqliteControl:
    """Definitions, jobs and state in the PULSE SQLite file."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # ---------------------------------------------------------------- cohort definitions
    def list_cohorts(self, site_id: str | None = None) -> list[CohortSummary]:
        return cohorts.list_cohorts(self.conn, site_id)

    def get_cohort(self, cohort_id: str) -> Cohort:
        return cohorts.get_cohort(self.conn, cohort_id)

    def create_cohort(self, clock: Clock, *, site_id: str, name: str, criteria: object = None,
                      description: str | None = None, kind: str = "criteria",
                      cohort_id: str | None = None) -> Cohort:
        return cohorts.create_cohort(self.conn, clock, site_id=site_id, name=name,
                                     criteria=criteria, description=description, kind=kind,
                                     cohort_id=cohort_id)

    def update_cohort(self, clock: Clock, cohort_id: str, *, expected_updated_at: int,
                      name: str | None = None, description: str | None = None,
                      criteria: object = None) -> Cohort:
        return cohorts.update_cohort(self.conn, clock, cohort_id,
                                     expected_updated_at=expected_updated_at, name=name,
                                     description=description, criteria=criteria)

    def duplicate_cohort(self, clock: Clock, cohort_id: str) -> Cohort:
        return cohorts.duplicate_cohort(self.conn, clock, cohort_id)

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

    def evaluate_rule(self, rule_id: str, clock: Clock) -> Evaluation:
        return engine.evaluate_rule(self.conn, rule_id, clock)

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

    def send_test(self, endpoint_id: str, *, clock: Clock) -> SendResult:
        return delivery.send_test(self.conn, endpoint_id, clock=clock)

    def prepare_test(self, endpoint_id: str, *, clock: Clock) -> delivery.PreparedTest:
        return delivery.prepare_test(self.conn, endpoint_id, clock=clock)

    def record_test(self, test: delivery.PreparedTest, result: SendResult, *,
                    clock: Clock) -> None:
        delivery.record_test(self.conn, test, result, clock=clock)

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

    def retry_failed_import(self, import_dir: Path, job_id: str) -> Path:
        return inbox.retry_failed_job(self.conn, import_dir, job_id)

    # ---------------------------------------------------------------- exports
    def list_exports(self, site_id: str | None = None) -> list[ExportSummary]:
        return export_defs.list_exports(self.conn, site_id)

    def create_export(self, clock: Clock, *, site_id: str, **values: Any) -> ExportDefinition:
        return export_defs.create_export(self.conn, clock, site_id=site_id, **values)

    def update_export(self, clock: Clock, export_id: str, **values: Any) -> ExportDefinition:
        return export_defs.update_export(self.conn, clock, export_id, **values)

    def delete_export(self, export_id: str) -> bool:
        return export_defs.delete_export(self.conn, export_id)

    def run_export(self, export_id: str, settings: Settings, clock: Clock) -> ExportRunResult:
        return export_runner.run_export(self.conn, export_id, settings, clock)

    # ---------------------------------------------------------------- scheduler and lease
    def scheduler_jobs(self) -> list[SchedulerJobRow]:
        return scheduler.list_jobs(self.conn)

    def lease(self, now_ms: int) -> LeaseInfo | None:
        return lease.current(self.conn, now_ms)
