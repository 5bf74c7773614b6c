"""Exports (SPEC 8 "Exports"): definitions, runs writing CSV/JSON files, the worker's exports job.

The Jobs pane calls: :func:`list_exports`, :func:`recent_runs`, :func:`create_export`,
:func:`update_export`, :func:`delete_export`, :func:`request_run` (queue for the worker) or
:func:`run_export` (run synchronously), and reads :class:`ExportSummary` / :class:`ExportRun`.
"""

from __future__ import annotations

from pulse_tui.exports.definitions import (
    ExportNotFound,
    create_export,
    delete_export,
    get_export,
    list_exports,
    next_run_after,
    recent_runs,
    request_run,
    update_export,
)
from pulse_tui.exports.models import (
    FORMATS,
    FREQUENCIES,
    TYPES,
    ExportDefinition,
    ExportRun,
    ExportRunResult,
    ExportSummary,
)
from pulse_tui.exports.runner import exports_job, run_due, run_due_results, run_export

__all__ = ["FORMATS", "FREQUENCIES", "TYPES", "ExportDefinition", "ExportNotFound", "ExportRun",
           "ExportRunResult", "ExportSummary", "create_export", "delete_export", "exports_job",
           "get_export", "list_exports", "next_run_after", "recent_runs", "request_run",
           "run_due", "run_due_results", "run_export", "update_export"]
