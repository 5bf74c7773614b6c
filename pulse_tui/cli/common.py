"""What every ``pulse-tui`` command shares: the global options, the command decorator, the
settings, the top-level group (without a command it opens the TUI) and the error handling that
turns any failure into one line. The commands live one per module beside this one and
``pulse_tui.cli`` adds them to the group. Only the TUI launch (``cli/tui.py``, the group's
own action) is imported here; no command module imports ``pulse_tui.cli`` back."""

from __future__ import annotations

import errno
import functools
import logging
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from pulse_tui import __version__
from pulse_tui.cli.tui import run_tui
from pulse_tui.config import Settings, load_settings
from pulse_tui.errors import PulseError

log = logging.getLogger("pulse_tui")

GLOBAL_KEYS = ("db", "import_dir", "export_dir", "config", "events_store", "debug")


def global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The global options, accepted before or after the subcommand (after wins)."""
    options = [
        click.option("--db", "db", type=click.Path(dir_okay=False, path_type=Path),
                     help="Database file (env PULSE_DB)."),
        click.option("--import-dir", "import_dir", type=click.Path(path_type=Path),
                     help="Watched import folder (env PULSE_IMPORT_DIR)."),
        click.option("--export-dir", "export_dir", type=click.Path(path_type=Path),
                     help="Folder for exported files (env PULSE_EXPORT_DIR)."),
        click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                     help="TOML config file (default: config.toml in the user config dir)."),
        click.option("--events-store", "events_store", metavar="STORE",
                     help="Where events live: sqlite (default), clickhouse://user:password@"
                          "host:8123/db, clickhouses://... or chdb:///dir "
                          "(env PULSE_EVENTS_STORE)."),
        click.option("--debug", is_flag=True, default=None,
                     help="Show tracebacks and log debug detail."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _merge_globals(ctx: click.Context, kwargs: dict[str, Any]) -> None:
    obj = ctx.ensure_object(dict)
    for key in GLOBAL_KEYS:
        value = kwargs.pop(key, None)
        if value is not None:
            obj[key] = value


# the database of the running command, named by the top-level error handler
_db_in_use: dict[str, Path] = {}


def settings_from(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    settings = load_settings(
        db=obj.get("db"),
        import_dir=obj.get("import_dir"),
        export_dir=obj.get("export_dir"),
        config_file=obj.get("config"),
        events_store=obj.get("events_store"),
    )
    _db_in_use["db"] = settings.db
    return settings


def pulse_command(name: str, **attrs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """A subcommand that takes the global options too (``pulse_tui.cli`` adds it to the group)."""

    def decorator(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _merge_globals(click.get_current_context(), kwargs)
            return fn(*args, **kwargs)

        return click.command(name, **attrs)(global_options(wrapper))

    return decorator


class PulseGroup(click.Group):
    """Shows the effective paths under --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["pulse_tui.group_args"] = list(args)  # --help is eager: see _help_globals
        return super().parse_args(ctx, args)

    def _help_globals(self, ctx: click.Context) -> dict[str, Any]:
        """The global options typed before or after --help (the eager --help stops parsing
        before they reach ctx.obj, so `--db X --help` would otherwise show the default)."""
        obj = dict(ctx.obj or {})
        raw = ctx.meta.get("pulse_tui.group_args")
        if raw is None:
            return obj
        try:
            probe = self.make_context(ctx.info_name, list(raw), resilient_parsing=True)
        except click.ClickException:
            return obj
        for key in GLOBAL_KEYS:
            if probe.params.get(key) is not None:
                obj[key] = probe.params[key]
        if probe.params.get("demo"):
            obj["demo"] = True
        return obj

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        obj = self._help_globals(ctx)
        try:
            settings = load_settings(db=obj.get("db"), import_dir=obj.get("import_dir"),
                                     export_dir=obj.get("export_dir"),
                                     config_file=obj.get("config"),
                                     events_store=obj.get("events_store"))
        except PulseError as exc:
            formatter.write_paragraph()
            formatter.write(f"{'':{formatter.current_indent}}(settings: {exc})\n")
            return
        title = "Effective paths"
        if obj.get("demo"):  # `--demo --help`: the demo's own database and folders
            settings = settings.with_demo()
            title = "Effective paths (demo)"
        with formatter.section(title):
            rows = settings.describe()
            width = max(len(name) for name, _ in rows)
            for name, value in rows:  # never wrapped: a path must stay copyable
                formatter.write(f"{'':{formatter.current_indent}}{name:<{width}}  {value}\n")


@click.group(cls=PulseGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.option("--demo", is_flag=True, help="Open a demo database with 90 days of history "
              "and live simulated traffic.")
@click.option("--no-worker", is_flag=True, help="Do not run the embedded import/job worker.")
@click.option("--ascii", "ascii_only", is_flag=True,
              help="Draw charts, sparklines, glyphs and borders with ASCII only (automatic "
              "when TERM is linux or vt100-like; config key ascii = true).")
@click.option("--read-only", is_flag=True, help="Show everything, change nothing (actions that "
              "write are hidden and refused).")
@click.version_option(__version__, "-V", "--version", prog_name="pulse-tui")
@click.pass_context
def cli(ctx: click.Context, demo: bool, no_worker: bool, ascii_only: bool,
        read_only: bool, **kwargs: Any) -> None:
    """PULSE TUI: the operator's console for a PULSE analytics database.

    Without a command, opens the TUI on the configured database.
    """
    _merge_globals(ctx, kwargs)
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(ctx)
    if demo:
        settings = settings.with_demo()
    if ascii_only:
        settings = replace(settings, ascii=True)
    from pulse_tui.logging_setup import setup_logging

    setup_logging(settings.log_file, debug=bool(ctx.obj.get("debug")))
    run_tui(settings, demo=demo, worker=not no_worker, read_only=read_only)


def _error_line(exc: BaseException) -> str:
    """One line in our words for a sqlite3 or OS error that reached the top."""
    from pulse_tui.store.connection import describe_error

    if isinstance(exc, sqlite3.Error):
        return describe_error(exc, _db_in_use.get("db"))
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            what = "disk full"
        else:
            what = exc.strerror or str(exc)
        where = exc.filename if exc.filename is not None else None
        return f"{where}: {what}" if where is not None else what
    return str(exc)


def _log_to_file(message: str) -> None:
    """The traceback goes to the log file (if any), never to the terminal without --debug."""
    if any(isinstance(h, logging.FileHandler) for h in logging.getLogger().handlers):
        log.exception(message)


def run(argv: list[str] | None = None) -> None:
    """Run the group: one clear line on stderr for errors, a traceback only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="pulse-tui", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        # one line, like every other error; --help has the rest
        command = exc.ctx.command_path if exc.ctx is not None else "pulse-tui"
        click.echo(f"{command}: {exc.format_message()} (see {command} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PulseError as exc:
        if debug:
            raise
        click.echo(f"pulse-tui: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except (sqlite3.Error, OSError) as exc:
        if debug:
            raise
        _log_to_file("database or file error")
        click.echo(f"pulse-tui: {_error_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into a line
        if debug:
            raise
        _log_to_file("unexpected error")
        click.echo(f"pulse-tui: unexpected error: {_one_line(str(exc))} (run with --debug "
                   "for details)", err=True)
        sys.exit(1)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "no details"

