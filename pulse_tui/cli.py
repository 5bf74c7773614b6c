"""The ``pulse-tui`` command line (click): the TUI, and the commands for scripts and systemd."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from pulse_tui import __version__
from pulse_tui.clock import Clock
from pulse_tui.config import Settings, load_settings, redact_url
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
    for sub in ("events", "users", "cohort_members"):
        try:
            (settings.import_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PulseError(f"cannot create import folder {settings.import_dir / sub}: "
                             f"{exc.strerror}") from exc
    from pulse_tui.tui.app import make_app

    app = make_app(settings, clock=clock, demo=demo, worker=worker, read_only=read_only)
    app.run()
    if app.return_code:
        sys.exit(app.return_code)


# simulate's bounds: a rate beyond this is a typo (1e12 once grew to 7 GB before writing),
# and each transaction writes at most SIMULATE_CHUNK events so SIGTERM is seen promptly
SIMULATE_MAX_RATE = 100_000.0
SIMULATE_CHUNK = 5_000


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan (click's range checks let it through)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


@pulse_command(cli, "simulate")
@click.option("--rate", type=FiniteFloat(min=0.1, max=SIMULATE_MAX_RATE), required=True,
              help=f"Events per second (0.1 to {SIMULATE_MAX_RATE:,.0f}).")
@click.option("--duration", type=FiniteFloat(min=0), default=None,
              help="Seconds to run (default: until interrupted).")
@click.option("--sites", type=click.IntRange(1, 4), default=3, show_default=True,
              help="Number of sites to spread traffic over.")
@click.option("--seed", type=int, default=None, help="Random seed (default: time-based).")
@click.pass_context
def simulate_cmd(ctx: click.Context, rate: float, duration: float | None, sites: int,
                 seed: int | None) -> None:
    """Write realistic synthetic events into the database (demo, load tests).

    SIGTERM or SIGINT stop it within a second, keeping what was written.
    """
    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.simulate import Simulator, write_batch, write_sites, write_users
    from pulse_tui.store.tx import write_transaction

    settings = settings_from(ctx)
    stop = _stop_on_signals()
    backends = open_backends(settings.db, settings.events_store,
                             cluster=settings.clickhouse_cluster)  # events: SQLite or ClickHouse
    conn = backends.events.conn  # type: ignore[attr-defined]
    sim = Simulator(seed=seed if seed is not None else time.time_ns() % 1_000_000, sites=sites)
    start = time.monotonic()
    written = 0
    tick = 0.2 if rate >= 5 else 1.0
    carry = 0.0
    try:
        with write_transaction(conn):
            write_sites(conn, sim, int(time.time() * 1000))
        where = (str(settings.db) if settings.events_store == "sqlite"
                 else f"{redact_url(settings.events_store)} (control data: {settings.db})")
        click.echo(f"simulating {rate:g} events/s into {where} (ctrl+c to stop)", err=True)
        next_at = start
        while not stop["now"]:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            # what falls behind is dropped, not piled up: at most one tick's worth per turn
            carry = min(carry + rate * tick, rate * tick + 1)
            count = int(carry)
            carry -= count
            while count and not stop["now"]:
                n = min(count, SIMULATE_CHUNK)
                count -= n
                now_ms = int(time.time() * 1000)
                written += write_batch(conn, sim.live(now_ms, n), now_ms)
            next_at = max(next_at + tick, time.monotonic() - tick)
            stop["event"].wait(max(0.0, next_at - time.monotonic()))
        users = sim.users()
        if users:
            with write_transaction(conn):
                write_users(conn, users, int(time.time() * 1000))
    finally:
        backends.close()
    click.echo(f"wrote {written} events in {time.monotonic() - start:.1f}s", err=True)


@pulse_command(cli, "rebuild-rollups")
@click.pass_context
def rebuild_rollups_cmd(ctx: click.Context) -> None:
    """Rebuild sessions, first-seen times and every rollup from the events.

    Days whose raw events cleanup deleted keep their rollups as they are (charts outlive raw
    events), and distinct counts stay exact across that border.
    """
    from pulse_tui.backend.sqlite.home import check_events_home
    from pulse_tui.clock import day_of
    from pulse_tui.store import derived
    from pulse_tui.store.connection import connect

    settings = settings_from(ctx)
    conn = connect(settings.db, bulk=True)
    start = time.monotonic()
    try:
        if settings.events_store == "sqlite":  # the file's own (empty) table is no source
            check_events_home(conn, settings.db, "sqlite")
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


@pulse_command(cli, "migrate")
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


def _stop_on_signals() -> dict[str, Any]:
    """SIGINT/SIGTERM set ``flag["now"]`` and the ``flag["event"]`` a loop may wait on."""
    event = threading.Event()
    flag: dict[str, Any] = {"now": False, "event": event}

    def handler(signum: int, frame: object) -> None:
        flag["now"] = True
        event.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return flag


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


# ---------------------------------------------------------------------------------------------
# Subcommands defined in their own modules register themselves on import (one line each).
# They import `cli`, `pulse_command` and `settings_from` from this module.
# ---------------------------------------------------------------------------------------------
from pulse_tui import clickhouse_command as _clickhouse_command  # noqa: E402,F401
from pulse_tui import report_command as _report_command  # noqa: E402,F401
from pulse_tui.ingest import command as _import_command  # noqa: E402,F401
from pulse_tui.serve import command as _serve_command  # noqa: E402,F401
from pulse_tui.worker import command as _worker_command  # noqa: E402,F401
