"""The ``pulse-tui`` command line (click): the TUI, and the commands for scripts and systemd."""

from __future__ import annotations

import functools
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pulse_tui import __version__
from pulse_tui.clock import Clock
from pulse_tui.config import Settings, load_settings
from pulse_tui.errors import PulseError, UsageError

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


def settings_from(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    return load_settings(
        db=obj.get("db"),
        import_dir=obj.get("import_dir"),
        export_dir=obj.get("export_dir"),
        config_file=obj.get("config"),
        events_store=obj.get("events_store"),
    )


def pulse_command(group: click.Group, name: str, **attrs: Any
                  ) -> Callable[[Callable[..., Any]], click.Command]:
    """Register a subcommand that takes the global options too."""

    def decorator(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _merge_globals(click.get_current_context(), kwargs)
            return fn(*args, **kwargs)

        return group.command(name, **attrs)(global_options(wrapper))

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
        with formatter.section("Effective paths"):
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
@click.version_option(__version__, "-V", "--version", prog_name="pulse-tui")
@click.pass_context
def cli(ctx: click.Context, demo: bool, no_worker: bool, **kwargs: Any) -> None:
    """PULSE TUI: the operator's console for a PULSE analytics database.

    Without a command, opens the TUI on the configured database.
    """
    _merge_globals(ctx, kwargs)
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(ctx)
    if demo:
        settings = settings.with_demo()
    from pulse_tui.logging_setup import setup_logging

    setup_logging(settings.log_file, debug=bool(ctx.obj.get("debug")))
    run_tui(settings, demo=demo, worker=not no_worker)


def run_tui(settings: Settings, *, demo: bool, worker: bool) -> None:
    from pulse_tui.backend.wiring import open_backends

    clock = Clock.from_env()
    if demo:
        from pulse_tui.demo import ensure_demo_database

        click.echo(f"Preparing the demo database at {settings.db} ...", err=True)
        ensure_demo_database(settings.db, clock)
    else:  # create or check it (and the events store) before the screen is taken
        open_backends(settings.db, settings.events_store,
                             cluster=settings.clickhouse_cluster).close()
    for sub in ("events", "users", "cohort_members"):
        try:
            (settings.import_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PulseError(f"cannot create import folder {settings.import_dir / sub}: "
                             f"{exc.strerror}") from exc
    from pulse_tui.tui.app import make_app

    app = make_app(settings, clock=clock, demo=demo, worker=worker)
    app.run()
    if app.return_code:
        sys.exit(app.return_code)


@pulse_command(cli, "simulate")
@click.option("--rate", type=click.FloatRange(min=0.1), required=True,
              help="Events per second.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Seconds to run (default: until interrupted).")
@click.option("--sites", type=click.IntRange(1, 4), default=3, show_default=True,
              help="Number of sites to spread traffic over.")
@click.option("--seed", type=int, default=None, help="Random seed (default: time-based).")
@click.pass_context
def simulate_cmd(ctx: click.Context, rate: float, duration: float | None, sites: int,
                 seed: int | None) -> None:
    """Write realistic synthetic events into the database (demo, load tests)."""
    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.simulate import Simulator, write_batch, write_sites, write_users
    from pulse_tui.store.tx import write_transaction

    settings = settings_from(ctx)
    backends = open_backends(settings.db, settings.events_store,
                             cluster=settings.clickhouse_cluster)  # events: SQLite or ClickHouse
    conn = backends.events.conn  # type: ignore[attr-defined]
    sim = Simulator(seed=seed if seed is not None else time.time_ns() % 1_000_000, sites=sites)
    stop = _stop_on_signals()
    start = time.monotonic()
    written = 0
    tick = 0.2 if rate >= 5 else 1.0
    carry = 0.0
    with write_transaction(conn):
        write_sites(conn, sim, int(time.time() * 1000))
    click.echo(f"simulating {rate:g} events/s into {settings.db} (ctrl+c to stop)", err=True)
    next_at = start
    while not stop["now"]:
        now = time.monotonic()
        if duration is not None and now - start >= duration:
            break
        carry += rate * tick
        count = int(carry)
        carry -= count
        if count:
            now_ms = int(time.time() * 1000)
            written += write_batch(conn, sim.live(now_ms, count), now_ms)
        next_at += tick
        time.sleep(max(0.0, next_at - time.monotonic()))
    users = sim.users()
    if users:
        with write_transaction(conn):
            write_users(conn, users, int(time.time() * 1000))
    backends.close()
    click.echo(f"wrote {written} events in {time.monotonic() - start:.1f}s", err=True)


@pulse_command(cli, "rebuild-rollups")
@click.pass_context
def rebuild_rollups_cmd(ctx: click.Context) -> None:
    """Rebuild sessions, first-seen times and every rollup from the events.

    Days whose raw events cleanup deleted keep their rollups as they are (charts outlive raw
    events), and distinct counts stay exact across that border.
    """
    from pulse_tui.clock import day_of
    from pulse_tui.store import derived
    from pulse_tui.store.connection import connect

    settings = settings_from(ctx)
    conn = connect(settings.db, bulk=True)
    start = time.monotonic()
    try:
        kept = derived.history_days(conn)
        n = derived.rebuild(conn, Clock.from_env().now_ms())
        unusable = derived.describe_unusable(derived.unusable_counts(conn))
    finally:
        conn.close()
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


@pulse_command(cli, "backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def backup_cmd(ctx: click.Context, target: Path) -> None:
    """Write a consistent copy of the database to TARGET (SQLite backup API)."""
    import sqlite3

    from pulse_tui.store.connection import connect

    settings = settings_from(ctx)
    if target.exists():
        raise UsageError(f"{target} already exists; refusing to overwrite it")
    if not target.parent.is_dir():
        raise UsageError(f"folder {target.parent} does not exist")
    source = connect(settings.db, create=False)
    dest = sqlite3.connect(target)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
    click.echo(f"backed up {settings.db} to {target}")


def _stop_on_signals() -> dict[str, bool]:
    flag = {"now": False}

    def handler(signum: int, frame: object) -> None:
        flag["now"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return flag


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line on stderr for errors, a traceback only with --debug."""
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
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into a line
        if debug:
            raise
        logging.getLogger("pulse_tui").exception("unexpected error")
        click.echo(f"pulse-tui: unexpected error: {exc} (run with --debug for details)",
                   err=True)
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Subcommands defined in their own modules register themselves on import (one line each).
# They import `cli`, `pulse_command` and `settings_from` from this module.
# ---------------------------------------------------------------------------------------------
from pulse_tui import clickhouse_command as _clickhouse_command  # noqa: E402,F401
from pulse_tui import report_command as _report_command  # noqa: E402,F401
from pulse_tui.ingest import command as _import_command  # noqa: E402,F401
from pulse_tui.worker import command as _worker_command  # noqa: E402,F401
