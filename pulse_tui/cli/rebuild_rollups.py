"""``pulse-tui rebuild-rollups``: rebuild the derived tables from the events."""

from __future__ import annotations

import time

import click

from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.clock import Clock


@pulse_command("rebuild-rollups")
@click.pass_context
def rebuild_rollups_cmd(ctx: click.Context) -> None:
    """Rebuild sessions, first-seen times and every rollup from the events.

    Days whose raw events cleanup deleted keep their rollups as they are (charts outlive raw
    events), and distinct counts stay exact across that border.
    """
    from pulse_tui.backend.sqlite.home import check_events_home
    from pulse_tui.backend.wiring import backends_on, open_backends
    from pulse_tui.clock import day_of
    from pulse_tui.store import derived
    from pulse_tui.store.connection import connect

    settings = settings_from(ctx)
    kept: dict[str, int] = {}
    if settings.events_store == "sqlite":
        conn = connect(settings.db, bulk=True)
        try:  # the file's own (empty) table is no source when its events live elsewhere
            check_events_home(conn, settings.db, "sqlite")
        except BaseException:
            conn.close()
            raise
        backends, close = backends_on(conn), conn.close
        kept = derived.history_days(conn)  # rollups cleanup left without their raw events
    else:  # nothing is rolled up beside ClickHouse's events: its sessions are recomputed
        backends = open_backends(settings.db, settings.events_store,
                                 cluster=settings.clickhouse_cluster)
        close = backends.close
    start = time.monotonic()
    try:
        n = backends.events.rebuild(Clock.from_env().now_ms())
        unusable = derived.describe_unusable(backends.events.unusable_counts())
    finally:
        close()
    click.echo(f"rebuilt derived tables from {n} event rows in {time.monotonic() - start:.1f}s")
    if unusable:
        click.echo(f"note: {unusable}", err=True)
    for site, last_day in sorted(kept.items()):
        if last_day == derived.KEEP_ALL_DAYS:
            click.echo(f"kept every rollup of site {site}: it has no events left")
        else:
            click.echo(f"kept the rollups of site {site} up to "
                       f"{day_of(last_day * derived.DAY_MS).isoformat()}: cleanup deleted "
                       "its raw events of those days")
