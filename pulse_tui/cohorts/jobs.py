"""The worker's cohort jobs: refresh changed cohorts periodically, all criteria cohorts after imports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pulse_tui.store.cohorts import describe

if TYPE_CHECKING:
    from pulse_tui.worker.events import ImportFinished
    from pulse_tui.worker.scheduler import JobContext


def refresh_changed(ctx: JobContext) -> str:
    """Cohorts other programs inserted or changed (and all of them when the data moved)."""
    return describe(ctx.backends.events.refresh_changed_cohorts(ctx.clock))


def after_import(ctx: JobContext, finished: ImportFinished) -> None:
    """Recompute every criteria cohort once an import finished (SPEC 8)."""
    outcome = describe(ctx.backends.events.refresh_all_cohorts(ctx.clock))
    ctx.log.info("cohorts after import %s: %s", getattr(finished, "job_id", "?"), outcome)
