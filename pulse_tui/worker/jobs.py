"""The registry of the worker's periodic jobs and after-import hooks (add one entry each).

Periodic job: ``PeriodicJob(name, interval_seconds, fn)`` where ``fn(ctx: JobContext) -> str``
returns the outcome text shown in the Jobs pane (``None`` means "ok"); raise to record an error.
``fn`` is imported directly (the scheduler still accepts ``"package.module:function"`` for jobs
added from outside the package). Jobs run on their own connection (``ctx.conn``, autocommit: use
BEGIN IMMEDIATE/COMMIT), never overlap themselves, and read business now from ``ctx.now_ms()``.

After-import hook: ``fn(ctx: JobContext, finished: ImportFinished) -> None``, called once per
finished import (completed or failed) after the file was moved, also after a crash/restart.
Each hook is isolated: an exception is logged and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable

from pulse_tui.alerts import jobs as alert_jobs
from pulse_tui.cohorts import jobs as cohort_jobs
from pulse_tui.exports import runner as exports_runner
from pulse_tui.notify import jobs as webhook_jobs
from pulse_tui.store import cleanup, derived, retention
from pulse_tui.worker.events import ImportFinished
from pulse_tui.worker.scheduler import JobContext, PeriodicJob


def derived_catch_up(ctx: JobContext) -> str:
    """Fold events other programs inserted into sessions and rollups (cheap when none)."""
    n = derived.catch_up_tx(ctx.conn, ctx.now_ms())
    text = f"folded {n} event rows" if n else "nothing pending"
    unusable = derived.unusable_counts(ctx.conn)["total"]
    if unusable:  # the Jobs pane's line above says which columns
        text += f"; {unusable} unusable rows left out"
    return text


JOBS: list[PeriodicJob] = [
    PeriodicJob("derived-catch-up", 2.0, derived_catch_up,
                description="sessions and rollups for events other programs wrote"),
    PeriodicJob("cohorts-refresh", 10.0, cohort_jobs.refresh_changed,
                description="cohort membership: cohorts other programs changed, new data"),
    PeriodicJob("alerts", 60.0, alert_jobs.evaluate,
                description="evaluate alert rules; notify on changes of state"),
    PeriodicJob("webhook-deliveries", 5.0, webhook_jobs.deliver,
                description="send due webhook deliveries, retrying with backoff"),
    PeriodicJob("retention-snapshots", 86_400.0, retention.snapshot_job,
                description="retention snapshots: saved cohorts and acquisition weeks"),
    PeriodicJob("exports", 30.0, exports_runner.exports_job,
                description="run due exports (report, metrics, audience files)"),
    PeriodicJob("cleanup", 3600.0, cleanup.cleanup_job, run_at_start=False,
                description="data retention: old events, rollups, export runs, deliveries"),
]

AfterImportHook = Callable[[JobContext, ImportFinished], None] | str

# named by string: these names are part of the worker's documented registry (and its tests)
AFTER_IMPORT: list[AfterImportHook] = [
    "pulse_tui.cohorts.jobs:after_import",
    "pulse_tui.notify.jobs:after_import",
]

__all__ = ["AFTER_IMPORT", "AfterImportHook", "JOBS", "ImportFinished", "JobContext", "PeriodicJob",
           "derived_catch_up"]
