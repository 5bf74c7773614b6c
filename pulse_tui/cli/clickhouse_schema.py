"""``pulse-tui clickhouse-schema``: print the DDL PULSE creates for its ClickHouse events store."""

from __future__ import annotations

from typing import Any

import click

from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.errors import UsageError


@pulse_command("clickhouse-schema")
@click.option("--cluster", default=None, metavar="NAME",
              help="Print the DDL for a cluster: ON CLUSTER NAME, Replicated tables and a "
                   "Distributed table in front (default: clickhouse_cluster of the config).")
@click.option("--database", default="pulse", show_default=True,
              help="Database name in the DDL.")
@click.pass_context
def clickhouse_schema_cmd(ctx: click.Context, cluster: str | None, database: str,
                          **_: Any) -> None:
    """Print the ClickHouse DDL PULSE creates for its events store (for a DBA to review)."""
    from pulse_tui.backend.clickhouse.schema import ddl_text

    cluster = cluster or settings_from(ctx).clickhouse_cluster
    try:
        click.echo(ddl_text(database, cluster), nl=False)
    except ValueError as exc:
        raise UsageError(f"--cluster/--database: {exc}") from exc
