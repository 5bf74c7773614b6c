"""The worker's cohort jobs: refresh changed cohorts periodically, all criteria cohorts after imports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pulse_tui.store import cohorts as store

if TYPE_CHECKING:
    from pulse_tui.worker.events import ImportFinished
    from pulse_tui.worker.scheduler import JobContext


def refresh_changed(ctx: JobContext) -> str:
    """Cohorts other programs inserted or changed (and all of them when the data moved)."""
    return store.refresh_changed(ctx.conn, ctx.clock)


def after_import(ctx: JobContext, finished: ImportFinished) -> None:
    """Recompute every criteria cohort once an import finished (SPEC 8)."""
    outcome = store.refresh_all_text(ctx.conn, ctx.clock)
    ctx.log.info("cohorts after import %s: %s", getattr(finished, "job_id", "?"), outcome)
