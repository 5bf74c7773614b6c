"""``pulse-tui copy-events --to URL``: move the events and users of the SQLite file into
ClickHouse, resumable."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.config import check_events_store, redact_url
from pulse_tui.errors import UsageError

COPY_CHUNK_ENV = "PULSE_COPY_CHUNK_ROWS"
COPY_CHUNK_ROWS = 100_000


@pulse_command("copy-events")
@click.option("--to", "to", required=True, metavar="URL",
              help="clickhouse://user:password@host:8123/db, clickhouses://... or chdb:///dir")
@click.pass_context
def copy_events_cmd(ctx: click.Context, to: str, **_: Any) -> None:
    """Copy the events and users of the SQLite file into ClickHouse. Resumable: run it again
    after an interruption and it continues where it stopped (nothing is stored twice)."""
    from pulse_tui.backend.clickhouse import open_clickhouse
    from pulse_tui.backend.sqlite.home import check_events_home
    from pulse_tui.store import events_home
    from pulse_tui.store.connection import connect

    to = check_events_store(to, "--to")
    if to == "sqlite":
        raise UsageError("--to must be a ClickHouse URL (clickhouse://, clickhouses://, chdb://)")
    settings = settings_from(ctx)
    shown = redact_url(to)
    source = connect(settings.db, create=False)
    try:
        # the file records where its events live from now on (a file already moved to
        # another store is refused); undone if the store cannot be opened
        was = events_home.recorded(source)
        check_events_home(source, settings.db, to, moving=True)
        try:
            target = open_clickhouse(settings.db, to, cluster=settings.clickhouse_cluster)
        except BaseException:
            if was is None:
                events_home.forget(source)
            raise
    except BaseException:
        source.close()
        raise
    try:
        copied = copy_events(source, target.events, str(settings.db.resolve()), echo=click.echo)
    finally:
        target.close()
        source.close()
    click.echo(f"copied {copied['events']} events ({copied['present']} were already there) and "
               f"{copied['users']} users from {settings.db} to {shown} "
               f"in {copied['seconds']:.1f}s")


def copy_events(source: Any, events: Any, source_name: str, *,
                echo: Any = None) -> dict[str, Any]:
    """Copy in rowid order (arrival order stays arrival order) in chunks; after each chunk
    the last rowid copied is recorded in ClickHouse (``pulse_meta``), so a rerun starts after
    it; a chunk stored just before an interruption is recognised id by id (never twice)."""
    chunk = int(os.environ.get(COPY_CHUNK_ENV, "") or COPY_CHUNK_ROWS)
    started = time.monotonic()
    key = f"copy_events:{source_name}"
    last = events.meta_get(key)
    after = int(last) if last else 0
    if after and echo:
        echo(f"resuming after row {after} (copied before)", err=True)
    stored = present = 0
    from pulse_tui.store.events import all_users, rows_after

    while True:
        rows = rows_after(source, after, chunk)
        if not rows:
            break
        new, _ours = events.store_rows([r[1:] for r in rows], job="copy", line=rows[-1][0])
        stored += new
        present += len(rows) - new
        after = rows[-1][0]
        events.meta_set(key, str(after))
        if echo:
            echo(f"copied up to row {after}: {stored} events so far", err=True)
    n_users = events.upsert_users(all_users(source))
    return {"events": stored, "present": present, "users": n_users,
            "seconds": time.monotonic() - started}
