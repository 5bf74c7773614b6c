"""``pulse-tui backup TARGET``: a consistent copy of the database (SQLite backup API)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.errors import PulseError, UsageError


@pulse_command("backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def backup_cmd(ctx: click.Context, target: Path) -> None:
    """Write a consistent copy of the database to TARGET (SQLite backup API).

    Only reads the database: a file at an older schema is copied as it is."""
    from pulse_tui.store.connection import (
        SQLITE_CORRUPT,
        SQLITE_NOTADB,
        describe_error,
        error_code,
        open_readonly,
    )

    settings = settings_from(ctx)
    if target.exists():
        raise UsageError(f"{target} already exists; refusing to overwrite it")
    if not target.parent.is_dir():
        raise UsageError(f"folder {target.parent} does not exist")
    source = open_readonly(settings.db)  # copied as it is, never upgraded
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)  # no half-written copy left behind
        damaged = error_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)
        where = settings.db if damaged else target
        raise PulseError(f"backup failed: {describe_error(exc, where)}") from exc
    finally:
        source.close()
    click.echo(f"backed up {settings.db} to {target}")
