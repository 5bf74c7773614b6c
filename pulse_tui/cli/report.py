"""``pulse-tui report NAME``: any registered report as a table, CSV or JSON on stdout."""

from __future__ import annotations

import csv
import io
import json
import sys
import textwrap
import unicodedata
from datetime import date
from typing import Any

import click

from pulse_tui.backend.interface import EventsBackend
from pulse_tui.backend.sqlite.home import check_events_home
from pulse_tui.backend.wiring import backends_on, open_backends
from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.clock import Clock
from pulse_tui.csvsafe import neutralise_row
from pulse_tui.errors import UsageError
from pulse_tui.store import derived, reports
from pulse_tui.store.connection import connect

FORMATS = ("table", "csv", "json")
MAX_STEPS = 50  # steps of a funnel
MAX_LIMIT = 1_000_000  # rows of a top-* report (a bigger number once reached SQLite as an overflow)


def _cell_json(value: object) -> object:
    if isinstance(value, date):
        return value.isoformat()
    return value


def _cell_text(value: object) -> str:
    """A cell for the table: None empty, floats short, control characters escaped."""
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        text = "".join(ch if unicodedata.category(ch) != "Cc" else repr(ch)[1:-1] for ch in text)
    return text


def render_json(columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    data = [{c: _cell_json(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def render_csv(columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(neutralise_row(["" if v is None else _cell_json(v) for v in row]))
    return out.getvalue()


def render_table(columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    cells = [[_cell_text(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) and rows
               for i in range(len(columns))]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    if not rows:
        out.append("(no rows)")
    return "\n".join(out) + "\n"


def _parse_steps(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    steps = tuple(s.strip() for s in text.split(","))
    if not steps or any(not s for s in steps):
        raise UsageError(f"--steps: empty step in {text!r} (use --steps a,b,c)")
    if len(steps) > MAX_STEPS:  # past ~2,000 SQLite refused the query ("too many columns")
        raise UsageError(f"--steps: at most {MAX_STEPS} steps (got {len(steps):,})")
    return steps


@pulse_command("report")
@click.argument("name")
@click.option("--site", "site", default=None, help="Site id (default: the only site).")
@click.option("--from", "start", default=None, metavar="YYYY-MM-DD",
              help="First UTC day, included (default: today-29).")
@click.option("--to", "end", default=None, metavar="YYYY-MM-DD",
              help="Last UTC day, included (default: today).")
@click.option("--limit", type=int, default=reports.DEFAULT_LIMIT, show_default=True,
              help="Rows of top-* reports.")
@click.option("--steps", default=None, help="Funnel steps: event types, comma separated.")
@click.option("--format", "fmt", default="table", show_default=True,
              help="table, csv or json.")
@click.pass_context
def report_cmd(ctx: click.Context, name: str, site: str | None, start: str | None,
               end: str | None, limit: int, steps: str | None, fmt: str, **_: Any) -> None:
    spec = reports.REPORTS.get(name)
    if spec is None:
        raise UsageError(f"unknown report {name!r} (reports: {', '.join(reports.REPORTS)})")
    if fmt not in FORMATS:
        raise UsageError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {limit})")
    if limit > MAX_LIMIT:
        raise UsageError(f"--limit must be at most {MAX_LIMIT:,} (got {limit})")
    step_list = _parse_steps(steps)
    if "steps" in spec.options and not step_list:
        raise UsageError(f"report {name} needs --steps a,b,c")
    clock = Clock.from_env()
    rng = reports.make_range(clock, start, end)
    settings = settings_from(ctx)
    if settings.events_store == "sqlite":
        conn = connect(settings.db, migrate=False, keep_journal_mode=True)  # reads only (SPEC 10)
        try:
            check_events_home(conn, settings.db, "sqlite")  # not zeros of a moved file
        except BaseException:
            conn.close()
            raise
        backends, close = backends_on(conn), conn.close
    else:
        backends = open_backends(settings.db, settings.events_store,
                                 cluster=settings.clickhouse_cluster, migrate=False)
        close = backends.close
    try:
        # sites() also lists the sites of rows other programs wrote, on either store
        site_id = reports.pick_site([s.id for s in backends.events.sites()], site)
        rows = backends.events.report(name, site_id, rng, now_ms=clock.now_ms(), limit=limit,
                                      steps=step_list)
        notes = report_notes(backends.events)
    finally:
        close()
    render = {"json": render_json, "csv": render_csv, "table": render_table}[fmt]
    sys.stdout.write(render(spec.columns, rows))
    for note in notes:
        click.echo(f"note: {note}", err=True)


def report_notes(events: EventsBackend) -> list[str]:
    """What stderr says after a report: rows of events PULSE cannot use (left out of it; none
    on ClickHouse, whose columns are typed). (Rows other programs inserted that could not be
    folded are read around by every report, see pulse_tui/store/reports.py, so nothing needs
    saying about them.)"""
    line = derived.describe_unusable(events.unusable_counts())
    return [line] if line else []


# the help lists the registry itself, so a report added there is never missing from it
report_cmd.help = (
    "Print report NAME.\n\n\b\n"  # \b: click keeps these lines as they are
    + "\n".join(textwrap.wrap("Reports: " + ", ".join(reports.REPORTS) + ".", 74,
                              break_on_hyphens=False, subsequent_indent="  "))
    + "\n\nfunnel needs --steps a,b,c; retention shows the weekly acquisition cohorts of "
    "the range.")
