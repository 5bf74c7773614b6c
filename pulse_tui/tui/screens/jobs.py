"""Pane 6, Jobs: import jobs (live progress, counts, rejected rows, retry) and the scheduler."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from pulse_tui.clock import format_ms
from pulse_tui.exports import definitions as export_defs
from pulse_tui.exports import runner as export_runner
from pulse_tui.ingest import kinds as import_kinds
from pulse_tui.models import ImportJob, SchedulerJobRow, describe_unusable
from pulse_tui.textsafe import visible
from pulse_tui.tui.guards import write_action, writes
from pulse_tui.tui.messages import (
    WorkerImportCommitted,
    WorkerImportFinished,
    WorkerImportStarted,
    WorkerJobRan,
)
from pulse_tui.tui.screens.base import PaneScreen
from pulse_tui.tui.screens.confirm import ConfirmScreen
from pulse_tui.tui.screens.detail import DetailScreen
from pulse_tui.tui.screens.export_form import ExportFormScreen
from pulse_tui.tui.screens.rejects import RejectsScreen
from pulse_tui.tui.widgets.columns import Column, FittedTable
from pulse_tui.tui.widgets.share_table import share_bar
from pulse_tui.worker import inbox

EXPORT_COLUMNS = (
    Column("name", "name"),
    Column("what", "what", 18, keep=2),
    Column("format", "fmt", 5, keep=3),
    Column("schedule", "every", 7, keep=3),
    Column("next", "next run", 17, min_total=90),
    Column("status", "status", 10, keep=4),
    Column("last", "last file", 24, min_total=110, keep=0),
)

IMPORT_COLUMNS = (
    Column("status", "status", 11, keep=4),
    Column("file", "file", 20, keep=3, grow=True, max_width=40),
    Column("note", "note", min_total=120),
    Column("type", "type", 8, min_total=100, grow=True, max_width=15),
    Column("progress", "progress", 15, keep=0, min_width=9),
    Column("ok", "imported", 9, justify="right", keep=5, grow=True),
    Column("dup", "dups", 5, justify="right", keep=5, grow=True),
    Column("bad", "rejected", 9, justify="right", keep=5, grow=True),
    Column("started", "started", 20, min_total=110),
    Column("took", "took", 7, min_total=90),
)
SCHEDULER_COLUMNS = (
    Column("name", "job", 20, keep=3, grow=True),
    Column("last", "last run", 20, keep=2, min_width=12),
    Column("took", "took", 9, keep=1),
    Column("outcome", "outcome"),
    Column("next", "next run", 20, min_total=110),
)

STATUS_STYLE = {
    "completed": "green",
    "failed": "bold red",
    "processing": "bold yellow",
    "uploading": "yellow",
}
MAX_REJECTS_SHOWN = 2000


def _duration(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return "–"
    seconds = max(0, end - start) / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


class JobsScreen(PaneScreen):
    PANE = "jobs"
    TITLE = "Jobs"
    HELP = "Import jobs, export definitions and the worker's periodic jobs."

    BINDINGS = [
        Binding("enter", "open_rejects", "Rejected rows", show=False),
        Binding("r", "retry", "Retry failed file"),
        Binding("n", "new_export", "New export"),
        Binding("e", "edit_export", "Edit export"),
        Binding("x,delete", "delete_export", "Delete export"),
        Binding("o", "show_file", "Export file"),
        Binding("tab", "app.focus_next", "Next table", show=False),
    ]

    TARGETS = {
        "open_rejects": ("#imports-table", "import"),
        "retry": ("#imports-table", "import"),
        "edit_export": ("#exports-table", "export"),
        "delete_export": ("#exports-table", "export"),
        "show_file": ("#exports-table", "export"),
        "run_export": ("#exports-table", "export"),
    }
    PALETTE_ONLY = (("run_export", "Run export now"),)

    def compose_body(self) -> ComposeResult:
        # rows of events another program wrote that PULSE cannot use (shown only when any)
        unusable = Static(id="jobs-unusable", classes="section-title")
        unusable.display = False
        yield unusable
        with Vertical(id="jobs-imports", classes="jobs-section"):
            yield Static(id="jobs-imports-title", classes="section-title")
            yield FittedTable(IMPORT_COLUMNS, id="imports-table", empty="no imports yet",
                              detail_title="Import job")
        with Vertical(id="jobs-scheduler", classes="jobs-section"):
            yield Static(Text("Periodic jobs (worker scheduler)", style="bold"),
                         classes="section-title")
            yield FittedTable(SCHEDULER_COLUMNS, id="scheduler-table",
                              empty="no periodic job has run yet",
                              detail_title="Periodic job")
        with Vertical(id="jobs-exports", classes="jobs-section"):
            yield Static(id="jobs-exports-title", classes="section-title")
            yield FittedTable(EXPORT_COLUMNS, id="exports-table",
                              empty="no exports yet: n adds one",
                              detail_title="Export")

    def on_mount(self) -> None:
        settings = self.app.settings  # type: ignore[attr-defined]
        self.query_one("#imports-table", FittedTable).empty_text = (
            f"no imports yet: drop CSV files into {settings.import_dir}"
            f"{'/' if not str(settings.import_dir).endswith('/') else ''}"
            f"{import_kinds.folder_list('/')} (or run pulse-tui import FILE)")
        if not self.app.worker_enabled:  # type: ignore[attr-defined]
            self.query_one("#scheduler-table", FittedTable).empty_text = (
                "the worker is off here (--no-worker): pulse-tui worker runs these jobs")
        self.query_one("#imports-table", FittedTable).focus()
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="jobs-load", exit_on_error=False)
    async def _load(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        site = self.app.site_id  # type: ignore[attr-defined]
        jobs = await store.read(lambda d: d.control.list_import_jobs(limit=200))
        scheduled = await store.read(lambda d: d.control.scheduler_jobs())
        self.exports = await store.read(lambda d: export_defs.list_exports(d, site))
        unusable = await store.read(lambda d: d.events.unusable_counts())
        self._show_unusable(unusable)
        self._show_imports(jobs)
        self._show_exports(self.exports)
        self._show_scheduler(scheduled)

    def _show_unusable(self, counts: dict[str, int]) -> None:
        line = describe_unusable(counts)
        widget = self.query_one("#jobs-unusable", Static)
        widget.display = bool(line)
        if line:
            text = Text("Unusable events  ", style="bold red")
            text.append(line)
            widget.update(text)

    def _show_imports(self, jobs: list[ImportJob]) -> None:
        running = sum(1 for j in jobs if j.status in ("processing", "uploading"))
        failed = sum(1 for j in jobs if j.status == "failed")
        title = Text("Imports", style="bold")
        title.append(f"  {len(jobs)} job(s)", style="dim")
        if running:
            title.append(f"  {running} running", style="yellow")
        if failed:
            title.append(f"  {failed} failed", style="red")
        title.append("   enter rejected rows · r retry", style="dim")
        self.query_one("#jobs-imports-title", Static).update(title)
        self.query_one("#imports-table", FittedTable).set_rows(
            [(job.id, self._import_values(job)) for job in jobs],
            [{"status": STATUS_STYLE.get(job.status, ""), "note": "red" if
              job.status == "failed" else "dim", "bad": "red" if job.failed_records else ""}
             for job in jobs])

    def _import_values(self, job: ImportJob) -> dict[str, object]:
        if job.status in ("processing", "uploading") and job.file_size:
            share = min(1.0, job.checkpoint_offset / job.file_size)
            progress: object = Text(f"{share_bar(share, 8)} {share:4.0%}", style="yellow")
        elif job.status == "failed":
            progress = Text("see note" if (job.message and self.size.width >= 120)
                            else visible(job.message or "failed"), style="red")
        else:
            total = job.processed_records + job.duplicate_records + job.failed_records
            progress = Text(f"{total:,} rows", style="dim")
        return {
            "status": job.status, "file": job.file_name, "type": job.type,
            "progress": progress, "ok": f"{job.processed_records:,}",
            "dup": f"{job.duplicate_records:,}", "bad": f"{job.failed_records:,}",
            "note": job.message or "",
            "started": format_ms(job.started_at or job.created_at),
            "took": _duration(job.started_at, job.completed_at),
        }

    def _show_exports(self, exports: list) -> None:
        title = Text("Exports", style="bold")
        title.append(f"  {len(exports)} definition(s)", style="dim")
        failed = sum(1 for e in exports if e.status == "failed")
        if failed:
            title.append(f"  {failed} failed", style="red")
        unusable = [e.definition for e in exports if e.definition.problem]
        if unusable:  # written by another program: say why where the operator looks
            title.append(f"  ✖ {visible(unusable[0].name)}: invalid definition: "
                         f"{visible(unusable[0].problem or '')[:120]}", style="bold red")
        title.append("   n new · enter run · e edit · o file", style="dim")
        self.query_one("#jobs-exports-title", Static).update(title)
        rows, styles = [], []
        for ex in exports:
            d = ex.definition
            what = d.filters.get("report") or ("members" if d.type == "audience" else "daily")
            last = Path(ex.last_file).name if ex.last_file else "–"
            if d.status == "failed" and d.error:
                last = d.error
            elif d.problem:  # written by another program; the worker marks it failed
                last = f"invalid definition: {d.problem}"
            rows.append((d.id, {"name": d.name, "what": f"{d.type}: {what}",
                                "format": d.format, "schedule": d.frequency,
                                "next": format_ms(d.next_run, seconds=False)
                                if d.next_run and not (d.is_once and d.status == "completed")
                                else "–",
                                "status": d.status, "last": last}))
            styles.append({"status": STATUS_STYLE.get(d.status, ""),
                           "last": "red" if d.status == "failed" or d.problem else ""})
        self.query_one("#exports-table", FittedTable).set_rows(rows, styles)

    def _show_scheduler(self, rows: list[SchedulerJobRow]) -> None:
        self.query_one("#scheduler-table", FittedTable).set_rows([
            (row.name, {
                "name": row.name, "last": format_ms(row.last_run_at),
                "took": f"{row.last_duration_ms or 0} ms" if row.last_run_at else "–",
                "outcome": row.last_outcome or "–", "next": format_ms(row.next_run_at),
            }) for row in rows
        ])

    @on(WorkerImportStarted)
    @on(WorkerImportCommitted)
    @on(WorkerImportFinished)
    @on(WorkerJobRan)
    def _worker_progress(self) -> None:
        """Import progress arrives between commits too: refresh now, not on a timer."""
        if self.is_current:
            self.reload()
        else:
            self._stale = True

    # ------------------------------------------------------------------ actions
    def _selected_job(self) -> str | None:
        return self.query_one("#imports-table", FittedTable).selected_key()

    @on(DataTable.RowSelected, "#imports-table")
    def _row_chosen(self) -> None:
        self.action_open_rejects()

    @on(DataTable.RowSelected, "#exports-table")
    async def _export_chosen(self) -> None:
        await self.run_action("run_export")  # through the app: refused when read-only

    # ------------------------------------------------------------------ exports
    def _selected_export(self):  # type: ignore[no-untyped-def]
        key = self.query_one("#exports-table", FittedTable).selected_key()
        return next((e for e in getattr(self, "exports", []) if e.id == key), None)

    @writes("creating an export")
    @work(exclusive=True, group="jobs-export", exit_on_error=False)
    async def action_new_export(self) -> None:
        site = await self.site_for_new()
        if site is None:
            return
        cohorts, reports = await self.app.store.read(  # type: ignore[attr-defined]
            lambda d: (d.control.list_cohorts(site), d.events.report_names()))
        if await self.app.push_screen_wait(ExportFormScreen(site, cohorts, reports=reports)):
            self.notify("Export saved; it runs when due (enter runs it now).")
            self.query_one("#exports-table", FittedTable).focus()
            self.reload()

    @writes("editing an export")
    @work(exclusive=True, group="jobs-export", exit_on_error=False)
    async def action_edit_export(self) -> None:
        ex = self._selected_export()
        if ex is None:
            return
        d = ex.definition
        cohorts, reports = await self.app.store.read(  # type: ignore[attr-defined]
            lambda b: (b.control.list_cohorts(d.site_id), b.events.report_names()))
        if await self.app.push_screen_wait(
                ExportFormScreen(d.site_id, cohorts, d, reports=reports)):
            self.reload()

    @writes("running an export")
    @write_action("jobs-export-write")
    async def action_run_export(self) -> None:
        ex = self._selected_export()
        if ex is None:
            return
        self.notify(f"Running export {visible(ex.name)} …", timeout=3)
        settings, clock = self.app.settings, self.app.clock  # type: ignore[attr-defined]
        result = await self.app.store.write(  # type: ignore[attr-defined]
            lambda d: export_runner.run_export(d, ex.id, settings, clock))
        if result.ok:
            self.notify(f"Export {visible(ex.name)}: {result.rows or 0:,} rows written "
                        "(o shows the file)", timeout=6)
        else:
            self.notify(f"Export {visible(ex.name)} failed (o shows why)", severity="error",
                        timeout=8)
        self.reload()

    @writes("deleting an export")
    @write_action("jobs-export-write")
    async def action_delete_export(self) -> None:
        ex = self._selected_export()
        if ex is None or not await self.app.push_screen_wait(ConfirmScreen(
                f"Delete export {visible(ex.name)}?",
                "The definition and its run history go; files already written stay.",
                yes="delete")):
            return
        await self.app.store.write(  # type: ignore[attr-defined]
            lambda d: export_defs.delete_export(d, ex.id))
        self.notify(f"Deleted export {visible(ex.name)}")
        self.reload()

    def action_show_file(self) -> None:
        ex = self._selected_export()
        if ex is None:
            return
        d = ex.definition
        fields: list[tuple[str, object]] = [("export", d.name), ("status", d.status)]
        if d.error:
            fields.append(("error", d.error))
        fields.append(("latest file", ex.last_file or "(none yet: enter runs it now)"))
        if d.file_url and d.file_url != ex.last_file:
            fields.append(("file url", d.file_url))
        # a dialog, not a toast: the path is read and copied, and it stays until closed
        self.app.push_screen(DetailScreen("Latest export file", fields))

    @work(exclusive=True, group="jobs-rejects", exit_on_error=False)
    async def action_open_rejects(self) -> None:
        job_id = self._selected_job()
        if job_id is None:
            return
        store = self.app.store  # type: ignore[attr-defined]
        job = await store.read(lambda d: d.control.get_import_job(job_id))
        rows, total = await store.read(
            lambda d: d.control.import_rejects(job_id, MAX_REJECTS_SHOWN))
        if job is None:
            return
        if not total:
            # the job in full, with the whole failure reason, in a dialog that stays
            fields: list[tuple[str, object]] = [
                ("file", job.file_name), ("status", job.status), ("type", job.type),
                ("rows", f"{job.processed_records:,} imported, {job.duplicate_records:,} "
                         "duplicate, 0 rejected"),
                ("started", format_ms(job.started_at or job.created_at)),
                ("took", _duration(job.started_at, job.completed_at))]
            if job.message:
                fields.append(("reason" if job.status == "failed" else "note", job.message))
            hint = "r moves the file back into the inbox to try again" \
                if job.status == "failed" else ""
            await self.app.push_screen(DetailScreen("Import job", fields, note=hint))
            return
        await self.app.push_screen(RejectsScreen(visible(job.file_name), rows, total))

    @writes("retrying a failed file")
    @write_action("jobs-retry")
    async def action_retry(self) -> None:
        job_id = self._selected_job()
        if job_id is None:
            return
        store = self.app.store  # type: ignore[attr-defined]
        settings = self.app.settings  # type: ignore[attr-defined]
        try:
            path = await store.write(
                lambda d: inbox.retry_failed_job(d, settings.import_dir, job_id))
        except Exception as exc:  # noqa: BLE001 - shown to the operator in one line
            self.notify(str(exc), severity="warning", timeout=6)
            return
        self.notify(f"moved back into the inbox: {visible(path)}", timeout=6)
        self.reload()
