"""The registry of the worker's periodic jobs and after-import hooks (add one entry each).

Periodic job: ``PeriodicJob(name, interval_seconds, fn)`` where ``fn(ctx: JobContext) -> str``
returns the outcome text shown in the Jobs pane (``None`` means "ok"); raise to record an error.
``fn`` is imported directly (the scheduler still accepts ``"package.module:function"`` for jobs
added from outside the package). Jobs run on their own connection (``ctx.conn``, autocommit: use
BEGIN IMMEDIATE/COMMIT), never overlap themselves, read business now from ``ctx.now_ms()``, and
reach the events only through ``ctx.backends`` (wherever the events live).

After-import hook: ``fn(ctx: JobContext, finished: ImportFinished) -> None``, called once per
finished import (completed or failed) after the file was moved, also after a crash/restart.
Each hook is isolated: an exception is logged and the others still run. Both lists hold the
functions themselves, so a misspelt name fails when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable

from pulse_tui.alerts import jobs as alert_jobs
from pulse_tui.cohorts import jobs as cohort_jobs
from pulse_tui.exports import runner as exports_runner
from pulse_tui.notify import jobs as webhook_jobs
from pulse_tui.worker.events import ImportFinished
from pulse_tui.worker.scheduler import JobContext, PeriodicJob


def derived_catch_up(ctx: JobContext) -> str:
    """Fold events other programs inserted into sessions and rollups (cheap when none)."""
    events = ctx.backends.events
    n = events.catch_up(ctx.now_ms())
    text = f"folded {n} event rows" if n else "nothing pending"
    unusable = events.unusable_counts()["total"]
    if unusable:  # the Jobs pane's line above says which columns
        text += f"; {unusable} unusable rows left out"
    return text


def retention_snapshots(ctx: JobContext) -> str:
    """Every cohort's retention rows and each site's recent acquisition weeks (daily)."""
    return ctx.backends.events.snapshot_retention(ctx.clock)


def cleanup_job(ctx: JobContext) -> str:
    """The hourly cleanup pass (SPEC 9); its counts as outcome text."""
    if ctx.settings is None:
        return "no settings: cleanup skipped"
    return ctx.backends.events.cleanup(ctx.settings, ctx.clock,
                                       should_stop=ctx.should_stop).describe()


JOBS: list[PeriodicJob] = [
    PeriodicJob("derived-catch-up", 2.0, derived_catch_up,
                description="sessions and rollups for events other programs wrote"),
    PeriodicJob("cohorts-refresh", 10.0, cohort_jobs.refresh_changed,
                description="cohort membership: cohorts other programs changed, new data"),
    PeriodicJob("alerts", 60.0, alert_jobs.evaluate,
                description="evaluate alert rules; notify on changes of state"),
    PeriodicJob("webhook-deliveries", 5.0, webhook_jobs.deliver,
                description="send due webhook deliveries, retrying with backoff"),
    PeriodicJob("retention-snapshots", 86_400.0, retention_snapshots,
                description="retention snapshots: saved cohorts and acquisition weeks"),
    PeriodicJob("exports", 30.0, exports_runner.exports_job,
                description="run due exports (report, metrics, audience files)"),
    PeriodicJob("cleanup", 3600.0, cleanup_job, run_at_start=False,
                description="data retention: old events, rollups, export runs, deliveries"),
]

AfterImportHook = Callable[[JobContext, ImportFinished], None] | str

AFTER_IMPORT: list[AfterImportHook] = [
    cohort_jobs.after_import,
    webhook_jobs.after_import,
]

__all__ = ["AFTER_IMPORT", "AfterImportHook", "JOBS", "ImportFinished", "JobContext", "PeriodicJob",
           "cleanup_job", "derived_catch_up", "retention_snapshots"]
