"""The worker's webhook jobs: send due deliveries, queue import notifications (worker/jobs.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pulse_tui.notify.delivery import deliver_due, notify_import_job

if TYPE_CHECKING:
    from pulse_tui.worker.events import ImportFinished
    from pulse_tui.worker.scheduler import JobContext

BATCH = 20  # per run; endpoints are sent to side by side, each request bounded


def deliver(ctx: JobContext) -> str:
    """Send due webhook deliveries (retries with backoff come from the queue table)."""
    allow = bool(ctx.settings is not None and ctx.settings.webhook_allow_link_local)
    return deliver_due(ctx.backends, ctx.clock, limit=BATCH, should_stop=ctx.should_stop,
                       allow_link_local=allow)


def after_import(ctx: JobContext, finished: ImportFinished) -> None:
    """Queue import.completed / import.failed for the sites' subscribed endpoints."""
    ids = notify_import_job(ctx.backends, finished.job_id, ctx.now_ms())
    if ids:
        ctx.log.info("queued %s webhook(s) for import %s", len(ids), finished.job_id)
