"""``pulse-tui migrate``: create or upgrade the database's schema."""

from __future__ import annotations

import click

from pulse_tui.cli.common import pulse_command, settings_from


@pulse_command("migrate")
@click.pass_context
def migrate_cmd(ctx: click.Context) -> None:
    """Create or upgrade the database's schema, adopting a file that holds the seed's events
    table. The commands that only read (report, backup, the TUI) refuse a file that needs
    this, and change nothing."""
    from pulse_tui.store.connection import SCHEMA_VERSION, connect, inspect

    db = settings_from(ctx).db
    before = inspect(db) if db.exists() else None
    connect(db).close()
    if before is None or before.empty:
        click.echo(f"created the PULSE schema {SCHEMA_VERSION} in {db}")
    elif before.needs_migration:
        click.echo(f"upgraded {db} from schema {before.version} to {SCHEMA_VERSION}")
    else:
        click.echo(f"{db} is already at schema {SCHEMA_VERSION}; nothing changed")
