"""The worker's alert job: evaluate every rule once a minute (registered in worker/jobs.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pulse_tui.alerts.engine import evaluate_all

if TYPE_CHECKING:
    from pulse_tui.worker.scheduler import JobContext


def evaluate(ctx: JobContext) -> str:
    """Evaluate all rules at the current time (no replay of missed minutes: no storm)."""
    return evaluate_all(ctx.backends, ctx.clock)
