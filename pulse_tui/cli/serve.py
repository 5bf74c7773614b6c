"""``pulse-tui serve``: the console in a browser, one app process per session."""

from __future__ import annotations

import os

import click

from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.errors import UsageError
from pulse_tui.worker import inbox


@pulse_command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any non-loopback address needs a token.")
@click.option("--port", type=click.IntRange(1, 65535), default=8377, show_default=True,
              help="Port to listen on.")
@click.option("--token", default=None, metavar="T",
              help="Token a browser must present (env PULSE_SERVE_TOKEN, config serve_token; "
                   "generated and printed when none is set and the address is loopback).")
@click.option("--read-only", is_flag=True,
              help="Sessions show everything but cannot change anything.")
@click.option("--worker", is_flag=True,
              help="Let sessions run the embedded worker (one per database, through the lease).")
@click.option("--max-sessions", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Browser sessions at once; the next one gets a 'busy' page.")
@click.pass_context
def serve_cmd(ctx: click.Context, host: str, port: int, token: str | None, read_only: bool,
              worker: bool, max_sessions: int) -> None:
    """Serve the console to browsers at http://HOST:PORT/ (TLS belongs to a reverse proxy).

    Each browser session runs its own app on the shared database. Browsers present the token
    once as ?token=T (then a cookie) or as an 'Authorization: Bearer T' header. SIGTERM or
    ctrl+c end every session and stop.
    """
    from pulse_tui.logging_setup import setup_logging
    from pulse_tui.serve.server import (
        TOKEN_ENV,
        ServeOptions,
        is_loopback,
        new_token,
        serve,
        session_command,
    )
    from pulse_tui.store.connection import connect

    settings = settings_from(ctx)
    debug = bool(ctx.obj.get("debug"))
    token = _first_token(token, os.environ.get(TOKEN_ENV), settings.serve_token)
    generated = False
    if token is None:
        if not is_loopback(host):
            raise UsageError(f"serving on {host} (not a loopback address) needs a token: "
                             f"--token, {TOKEN_ENV} or serve_token in the config file")
        token, generated = new_token(), True
    setup_logging(settings.log_file, debug=debug)
    # once, before any session: like the TUI, a file that needs upgrading is refused untouched
    connect(settings.db, migrate=False).close()
    inbox.ensure_folders(settings.import_dir)  # as the worker does (PulseError if not)

    args = ["--db", str(settings.db.resolve()),
            "--import-dir", str(settings.import_dir.resolve()),
            "--export-dir", str(settings.export_dir.resolve())]
    if settings.config_file is not None:
        args += ["--config", str(settings.config_file.resolve())]
    if debug:
        args.append("--debug")
    if not worker:
        args.append("--no-worker")
    if read_only:
        args.append("--read-only")

    def ready(url: str) -> None:
        mode = "read-only, " if read_only else ""
        worker_note = "worker on" if worker else "no worker"
        click.echo(f"PULSE serving {settings.db} ({mode}{worker_note}, "
                   f"at most {max_sessions} session(s))")
        if generated:
            click.echo(f"open {url}?token={token}")
            click.echo("(the token was generated for this run; set PULSE_SERVE_TOKEN or "
                       "--token to keep one)")
        else:
            click.echo(f"open {url} with ?token=<your token> once, or send "
                       "'Authorization: Bearer <token>'")
        click.echo("ctrl+c or SIGTERM stops it")

    serve(ServeOptions(app_command=session_command(args), host=host, port=port, token=token,
                       max_sessions=max_sessions, on_ready=ready))


def _first_token(*candidates: str | None) -> str | None:
    for value in candidates:
        if value is None:
            continue
        value = value.strip()
        if not value:
            continue
        if any(ch.isspace() for ch in value) or not value.isprintable():
            raise UsageError("the serve token must be one word of printable characters")
        return value
    return None
