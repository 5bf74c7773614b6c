"""First paint of the Daily charts pane in a headless app, on a large cached database.

Usage (repository root, venv active):

    nice -n 5 python bench/charts_paint_bench.py [--db bench/.cache/pulse-10000000-365d.db]
                                                  [--runs 5] [--days 30|90]
                                                  [--events-store chdb:///DIR --today DAY]

Times from pressing 2 (Daily charts) until the totals line, the events chart and both tables
show the loaded data, with the app already started (its own start-up is reported apart).
The database is only read. With ``--events-store`` the events are read from there (``--today``:
the day "now" falls on, at noon; by default the newest day of the SQLite file's rollups).
``--trace`` prints, for the last run, each events-interface call the app made after the key
press: when it started, its wall time and the process's CPU time meanwhile (what the pane waits
on).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pulse_tui.clock import Clock  # noqa: E402
from pulse_tui.config import Settings  # noqa: E402
from pulse_tui.store.connection import connect  # noqa: E402
from pulse_tui.tui.app import make_app  # noqa: E402
from pulse_tui.tui.screens.charts import ChartsScreen  # noqa: E402

CALLS: list[tuple[float, float, float, str]] = []  # (started, wall s, CPU s, method)


def trace_calls() -> None:
    """Record every public method call of both events backends (``CALLS``)."""
    import functools
    import resource

    from pulse_tui.backend.sqlite.events import SqliteEvents

    classes = [SqliteEvents]
    try:
        from pulse_tui.backend.clickhouse.backend import ClickHouseEvents
        classes.append(ClickHouseEvents)
    except ImportError:  # no ClickHouse support installed
        pass

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    for cls in classes:
        for name, fn in list(vars(cls).items()):
            if name.startswith("_") or not callable(fn) or name in ("t", "close", "bound_to"):
                continue

            def wrapped(*a, _fn=fn, _name=f"{cls.__name__}.{name}", **k):  # type: ignore[no-untyped-def]
                t, c = time.perf_counter(), cpu()
                try:
                    return _fn(*a, **k)
                finally:
                    CALLS.append((t, time.perf_counter() - t, cpu() - c, _name))
            setattr(cls, name, functools.wraps(fn)(wrapped))


async def one_run(db: Path, days: int, store: str = "sqlite", today: str | None = None
                  ) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(db=db, import_dir=tmp / "import", export_dir=tmp / "exports",
                        log_file=tmp / "log", events_store=store)
    if today:
        newest = (date.fromisoformat(today) - date(1970, 1, 1)).days
    else:
        conn = connect(db)
        newest = conn.execute("SELECT max(day) FROM rollup_daily").fetchone()[0]
        conn.close()
    clock = Clock(newest * 86_400_000 + 12 * 3_600_000)  # "now" = the data's last day, noon
    started = time.perf_counter()
    app = make_app(settings, clock=clock, worker=False, watch_changes=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        startup = time.perf_counter() - started
        if days == 90:
            app.set_range("90d")
        t0 = time.perf_counter()
        CALLS.clear()
        CALLS.append((t0, 0.0, 0.0, "(key 2 pressed)"))
        await pilot.press("2")
        while True:
            screen = app.screen
            if isinstance(screen, ChartsScreen) and screen.data is not None \
                    and screen.data.range.days == days:
                break
            await asyncio.sleep(0.005)
        await pilot.pause()  # the frame with the data drawn
        paint = time.perf_counter() - t0
    return startup, paint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, default=ROOT / "bench/.cache/pulse-10000000-365d.db")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", type=int, choices=(30, 90), default=30)
    parser.add_argument("--events-store", default="sqlite")
    parser.add_argument("--today", help="YYYY-MM-DD: the day 'now' falls on")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parser.add_argument("--trace", action="store_true",
                        help="print the last run's events-interface calls after the key press")
    args = parser.parse_args()
    if not args.db.exists():
        sys.exit(f"no database at {args.db}: run bench/query_bench.py first")
    if args.events_store == "sqlite":
        conn = connect(args.db)
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        conn.close()
    else:
        from pulse_tui.backend.wiring import open_backends

        b = open_backends(args.db, args.events_store)
        ev = b.events
        events = int(ev.ch.rows(f"SELECT count() FROM {ev.t('events')}")[0][0])  # type: ignore[attr-defined]
        b.close()
    if args.trace:
        trace_calls()
    results = [asyncio.run(one_run(args.db, args.days, args.events_store, args.today))
               for _ in range(args.runs)]
    if args.trace:
        t0 = CALLS[0][0]
        print("last run, after the key press: started ms, wall ms, process CPU ms, call")
        for t, wall, cpu, name in CALLS[1:]:
            print(f"{(t - t0) * 1000:8.0f} {wall * 1000:8.0f} {cpu * 1000:8.0f}  {name}")
        print(f"{results[-1][1] * 1000:8.0f}                    (the pane drawn)")
    paints = [p * 1000 for _, p in results]
    starts = [s * 1000 for s, _ in results]
    if args.json:
        import json

        print(json.dumps({"paint_ms": statistics.median(paints),
                          "startup_ms": statistics.median(starts), "events": events}))
        return
    print(f"database: {args.db.name}, {events:,} events; range {args.days} days; "
          f"{args.runs} runs")
    print(f"charts first paint: median {statistics.median(paints):.0f} ms, "
          f"max {max(paints):.0f} ms (target < 1000 ms)")
    print(f"app start-up (before the pane): median {statistics.median(starts):.0f} ms")


if __name__ == "__main__":
    main()
