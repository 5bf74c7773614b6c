"""The TUI launch (``pulse-tui`` without a command): prepare the database and the import
folders before the screen is taken, then run the app."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from pulse_tui.clock import Clock
from pulse_tui.config import Settings, redact_url
from pulse_tui.worker import inbox


@contextlib.contextmanager
def _demo_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar saying what the demo build is doing (a line per step without a
    terminal); nothing is drawn when the demo already exists."""
    bar: Any = None
    last: list[str] = [""]

    def report(what: str, done: int, total: int) -> None:
        nonlocal bar
        if not sys.stderr.isatty():
            if what.split(" ", 1)[0] != last[0] or done == total:
                click.echo(f"  {what}", err=True)
            last[0] = what.split(" ", 1)[0]
            return
        if bar is None:
            bar = click.progressbar(length=total, file=sys.stderr, width=24,
                                    show_eta=False, show_percent=True,
                                    item_show_func=lambda item: item)
            bar.__enter__()
        bar.update(done - bar.pos, what)

    try:
        yield report
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def prepare_demo(settings: Settings, clock: Clock, *, days: int | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> bool:
    """Build the demo (``settings.with_demo()``) unless built: in the file, or with its
    events in the configured ClickHouse store and its control data in the file."""
    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.demo import DEMO_DAYS, ensure_demo_database

    days = DEMO_DAYS if days is None else days
    if settings.events_store == "sqlite":
        return ensure_demo_database(settings.db, clock, days=days, progress=progress)
    settings.db.parent.mkdir(parents=True, exist_ok=True)
    backends = open_backends(settings.db, settings.events_store,
                             cluster=settings.clickhouse_cluster)
    try:
        return ensure_demo_database(settings.db, clock, days=days, progress=progress,
                                    events=backends.events)
    finally:
        backends.close()


def run_tui(settings: Settings, *, demo: bool, worker: bool, read_only: bool = False) -> None:
    from pulse_tui.backend.sqlite.home import check_events_home
    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.store.connection import connect

    clock = Clock.from_env()
    if demo:
        where = ("" if settings.events_store == "sqlite"
                 else f", its events in {redact_url(settings.events_store)}")
        click.echo(f"Preparing the demo database at {settings.db}{where} (first start only)",
                   err=True)
        with _demo_progress() as progress:
            prepare_demo(settings, clock, progress=progress)
    elif settings.events_store == "sqlite":
        # create or check it before the screen is taken; the TUI only reads until the
        # operator writes, so a file that needs upgrading is refused untouched (SPEC 10)
        conn = connect(settings.db, migrate=False, keep_journal_mode=True)
        try:  # a file whose events live in ClickHouse is refused, not shown empty
            check_events_home(conn, settings.db, "sqlite")
        finally:
            conn.close()
    else:  # the same for the SQLite file, and create or check the events store
        open_backends(settings.db, settings.events_store,
                      cluster=settings.clickhouse_cluster, migrate=False).close()
    inbox.ensure_folders(settings.import_dir)  # as the worker does (PulseError if not)
    from pulse_tui.tui.app import make_app

    app = make_app(settings, clock=clock, demo=demo, worker=worker, read_only=read_only)
    app.run()
    if app.return_code:
        sys.exit(app.return_code)
