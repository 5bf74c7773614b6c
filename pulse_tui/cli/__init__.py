"""The ``pulse-tui`` command line (click): the TUI, and the commands for scripts and systemd.

``common`` holds what every command shares (global options, the ``pulse_command`` decorator,
the top-level group and the error handling); each command lives in its own module and is added
here. A new command is one module plus one line in ``COMMANDS``."""

from __future__ import annotations

import click

from pulse_tui.cli.backup import backup_cmd
from pulse_tui.cli.clickhouse_schema import clickhouse_schema_cmd
from pulse_tui.cli.common import cli, run
from pulse_tui.cli.copy_events import copy_events_cmd
from pulse_tui.cli.import_files import import_cmd
from pulse_tui.cli.migrate import migrate_cmd
from pulse_tui.cli.rebuild_rollups import rebuild_rollups_cmd
from pulse_tui.cli.report import report_cmd
from pulse_tui.cli.serve import serve_cmd
from pulse_tui.cli.simulate import simulate_cmd
from pulse_tui.cli.worker import worker_cmd

COMMANDS: tuple[click.Command, ...] = (
    backup_cmd, clickhouse_schema_cmd, copy_events_cmd, import_cmd, migrate_cmd,
    rebuild_rollups_cmd, report_cmd, serve_cmd, simulate_cmd, worker_cmd,
)

for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line on stderr for errors, a traceback only with --debug."""
    run(argv)


__all__ = ["COMMANDS", "cli", "main"]
