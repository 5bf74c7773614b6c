"""The ``pulse-tui import FILE...`` command: one-shot imports with progress and a summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.clock import Clock
from pulse_tui.errors import PulseError
from pulse_tui.ingest import kinds as import_kinds
from pulse_tui.ingest.importer import ImportProgress, ImportResult, import_file, write_errors_csv
from pulse_tui.safefs import shown

PLAIN_PROGRESS_EVERY = 2.0  # seconds between progress lines when stderr is not a terminal


class _Progress:
    """A progress bar with rows/s on a terminal, a line every few seconds otherwise."""

    def __init__(self, path: Path, size: int) -> None:
        self.name = shown(path.name)
        self.size = max(size, 1)
        self.start = time.monotonic()
        self.last_line = self.start
        self.done = 0
        self.bar: Any = None
        if sys.stderr.isatty():
            self.bar = click.progressbar(length=self.size, label=self.name, file=sys.stderr,
                                         item_show_func=lambda s: s, show_pos=False,
                                         show_percent=True, width=30)
            self.bar.__enter__()

    def __call__(self, p: ImportProgress) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = p.records / elapsed
        text = f"{p.records:,} rows, {rate:,.0f} rows/s"
        if self.bar is not None:
            step = max(0, min(p.bytes_done, self.size) - self.done)
            self.done += step
            self.bar.update(step, current_item=text)
        elif time.monotonic() - self.last_line >= PLAIN_PROGRESS_EVERY:
            self.last_line = time.monotonic()
            pct = 100.0 * min(p.bytes_done, self.size) / self.size
            click.echo(f"{self.name}: {pct:.0f}% {text}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _summary(result: ImportResult) -> str:
    if result.status == "failed":
        return f"{shown(result.path.name)}: failed: {shown(result.message)}"
    rate = result.total / result.elapsed if result.elapsed > 0 else 0.0
    return (f"{shown(result.path.name)}: {result.processed:,} imported, {result.duplicates:,} "
            f"duplicates, {result.failed:,} rejected in {result.elapsed:.1f}s "
            f"({rate:,.0f} rows/s) [{result.kind}, job {result.job_id}]")


@pulse_command("import")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--type", "kind", type=click.Choice(import_kinds.names()),
              help="What the files hold (default: from the folder or file name, else the header).")
@click.option("--site", "site_id", help="Site id for rows without one (events then need no "
              "site_id column).")
@click.pass_context
def import_cmd(ctx: click.Context, files: tuple[Path, ...], kind: str | None,
               site_id: str | None) -> None:
    """Import CSV files (.csv or .csv.gz) of events, users or cohort_members.

    Rejected rows are listed in NAME.errors.csv beside each file. Exit 1 when any row was
    rejected or a file failed; duplicates alone exit 0. cohort_members go into existing
    static cohorts only.
    """
    from pulse_tui.backend.sqlite.home import check_events_home
    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.store import imports as imports_sql
    from pulse_tui.store.connection import connect

    settings = settings_from(ctx)
    if site_id is not None and not site_id.strip():
        raise click.UsageError("--site must not be empty")
    events = None
    if settings.events_store == "sqlite":
        conn = connect(settings.db, bulk=True)
        close = conn.close
        try:  # never into the file's own table when its events live in ClickHouse
            check_events_home(conn, settings.db, "sqlite")
        except BaseException:
            close()
            raise
    else:  # rows into ClickHouse; the job, its rejects and checkpoint in the SQLite file
        backends = open_backends(settings.db, settings.events_store,
                             cluster=settings.clickhouse_cluster)
        events, conn, close = backends.events, backends.events.conn, backends.close
    clock = Clock.from_env()
    bad = 0
    try:
        for path in files:
            progress = _Progress(path, path.stat().st_size)
            try:
                result = import_file(conn, path, kind=kind,
                                     site_id=site_id.strip() if site_id else None,
                                     clock=clock, progress=progress, events=events)
            finally:
                progress.close()
            imports_sql.clear_source_identity(conn, result.job_id)  # only the worker moves
            click.echo(_summary(result))
            if result.unknown_columns:
                click.echo("  unknown columns ignored: "
                           + shown(", ".join(result.unknown_columns)))
            if result.status == "failed":
                bad += 1
                continue
            if result.failed:
                bad += 1
                try:
                    written = write_errors_csv(conn, result.job_id, path.parent, path.name)
                except OSError as exc:
                    click.echo(f"  cannot write the errors file beside {shown(path.name)}: "
                               f"{exc.strerror or exc}", err=True)
                else:
                    if written is not None:
                        click.echo(f"  rejected rows: {shown(written)}")
    finally:
        close()
    if bad:
        what = "file" if bad == 1 else "files"
        raise PulseError(f"{bad} {what} with rejected rows or failed")
