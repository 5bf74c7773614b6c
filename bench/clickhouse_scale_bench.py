"""Events in embedded ClickHouse (chdb) at 100M rows: every report of bench/clickhouse_bench.py.

Usage: nice -n 10 python bench/clickhouse_scale_bench.py [--rows 100000000] [--chunks 10] --work DIR

Python writes about 300,000 CSV rows a second here and PULSE's importer is far slower than
that, so the events are made by ClickHouse itself: ``INSERT INTO events SELECT ... FROM
numbers(first, count)`` with bench/import_bench.py's distribution (sessions of 1-12 events 20 s
apart over 30 days from 2025-11-01, 3 sites, 80 % of sessions with one of 60,000 users, the
same pages, referrers on a session's first event, countries, devices and event-type weights),
into a store with PULSE's schema, so the materialized views fill the rollups as an import
would. The load is ``--chunks`` statements, each a slice of the sessions in time order (one
statement for 100M rows held 13 GB: the rollup views' output stays in memory until the
statement ends); DIR/load.json keeps the rows after each chunk, so a stopped load resumes
after the last whole chunk. Then the queries run through the events interface, as in
clickhouse_bench.py. Prints the load time, the background merges' time after it, the peak
RSS, each query's time and the disk the chdb directory takes. DIR/results.json keeps each
finished step (a run started again skips them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from clickhouse_bench import _step  # noqa: E402
from import_bench import COUNTRIES, DEVICES, EVENT_TYPES, PAGES, REFERRERS, SITES  # noqa: E402

START_MS = 1_761_955_200_000  # 2025-11-01
SPAN_MS = 30 * 86_400_000


def _arr(values: list[str]) -> str:
    return "[" + ", ".join("'" + v + "'" for v in values) + "]"


def sessions_for(rows: int) -> int:
    return rows * 2 // 13 + 1000  # 6.5 events per session on average


def generate_sql(database: str, rows: int, first: int = 0, count: int | None = None,
                 limit: int | None = None) -> str:
    """INSERT ... SELECT making the events of sessions ``first`` .. ``first + count - 1`` (all
    of them by default) with import_bench.generate's distribution (values from a hash of the
    session number and the event's place in it), at most ``limit`` rows."""
    pages, refs, countries, devices, types, sites = (
        PAGES, REFERRERS, COUNTRIES, DEVICES, EVENT_TYPES, SITES)
    sessions = sessions_for(rows)
    count = sessions - first if count is None else count

    def pick(values: list[str], *key: str) -> str:
        return f"{_arr(values)}[1 + cityHash64({', '.join(key)}) % {len(values)}]"

    return f"""
INSERT INTO `{database}`.events (event_id, site_id, event_type, timestamp_ms, session_id, user_id,
                           url, referrer, country, device_type, created_at)
SELECT concat('e', leftPad(toString(s), 9, '0'), '-', toString(k)),
       {pick(sites, 's', '1')},
       {pick(types, 's', 'k', '2')},
       {START_MS} + intDiv(s * {SPAN_MS}, {sessions}) + cityHash64(s, 3) % 600001 + k * 20000,
       concat('s', lower(hex(cityHash64(s, 4)))),
       if(cityHash64(s, 5) % 100 < 80, concat('u', toString(1 + cityHash64(s, 6) % 60000)), NULL),
       {pick(pages, 's', 'k', '7')},
       if(k = 0, nullIf({pick(refs, 's', '8')}, ''), NULL),
       {pick(countries, 's', '9')},
       {pick(devices, 's', '10')},
       1764000000000
FROM (SELECT number AS s, arrayJoin(range(1 + cityHash64(number, 11) % 12)) AS k
      FROM numbers({first}, {count}))
{f"LIMIT {limit}" if limit is not None else ""}"""


def load(work: Path, db: Path, store: str, rows: int, chunks: int) -> list[float]:
    """Make ``rows`` events in ``chunks`` INSERT ... SELECT statements (each a slice of the
    sessions, in time order, as successive imports would add them; one statement for 100M
    rows held 13 GB), then wait for the background merges. Resumable: DIR/load.json keeps the
    rows after each finished chunk. Returns [seconds of the inserts, seconds of the merges
    after them, peak RSS in KB]."""
    import resource

    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.store import events as sqlite_events
    from pulse_tui.store.tx import write_transaction

    b = open_backends(db, store)
    ev = b.events
    ch = ev.ch  # type: ignore[attr-defined]
    state_path = work / "load.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"done": 0, "rows": 0,
                                                                              "seconds": 0.0}

    def count() -> int:
        return int(ch.rows(f"SELECT count() FROM `{ch.database}`.events")[0][0])

    if state["done"] == 0 or count() != state["rows"]:  # a fresh start, or a chunk cut short
        for table in ("events", "event_ids", "sessions", "events_daily", "events_dims",
                      "user_days"):
            ch.command(f"TRUNCATE TABLE IF EXISTS `{ch.database}`.`{table}`")
        state = {"done": 0, "rows": 0, "seconds": 0.0}
    sessions = sessions_for(rows)
    for i in range(state["done"], chunks):
        first = sessions * i // chunks
        last = i == chunks - 1
        # the last chunk runs past the sessions' end (a few thousand rows) and stops at ``rows``
        n = (sessions - first + 100_000) if last else sessions * (i + 1) // chunks - first
        t = time.perf_counter()
        ch.command(generate_sql(ch.database, rows, first, n,
                                limit=rows - state["rows"] if last else None))
        state = {"done": i + 1, "rows": count(),
                 "seconds": state["seconds"] + time.perf_counter() - t}
        state_path.write_text(json.dumps(state))
        print(f"chunk {i + 1}/{chunks}: {state['rows']:,} rows, {state['seconds']:.0f} s, "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB",
              file=sys.stderr, flush=True)
    with write_transaction(ev.conn):  # type: ignore[attr-defined]
        sqlite_events.ensure_sites(ev.conn, ["acme-web", "acme-docs", "acme-shop"], 0)  # type: ignore[attr-defined]
    t = time.perf_counter()
    quiet = 0
    while quiet < 3:  # the background merges settle (the queries then see the store as a
        # long-running server would keep it)
        busy = int(ch.rows("SELECT count() FROM system.merges")[0][0])
        quiet = 0 if busy else quiet + 1
        time.sleep(5)
    merges = time.perf_counter() - t
    got = count()
    b.close()
    from pulse_tui.backend.clickhouse.connection import release_embedded

    release_embedded()  # the queries run in their own process, on this directory
    if got != rows:
        raise SystemExit(f"made {got} events, not {rows}")
    return [state["seconds"], merges, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--chunks", type=int, default=10, help="INSERT statements for the load")
    ap.add_argument("--work", type=Path, required=True)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    db, store = args.work / "pulse.db", f"chdb://{args.work / 'ch'}"
    seconds, merges, rss_kb = _step(args.work, "load", lambda: load(  # type: ignore[misc]
        args.work, db, store, args.rows, args.chunks))

    def run_queries() -> dict[str, float]:
        res = subprocess.run([sys.executable, str(ROOT / "bench/clickhouse_bench.py"),
                              "--queries", str(db), store], capture_output=True, text=True,
                             check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])

    timings = _step(args.work, "queries, chdb", run_queries)
    du = subprocess.run(["du", "-sm", str(args.work / "ch")], capture_output=True,
                        text=True).stdout.split()[0]
    print(f"{args.rows:,} events made by ClickHouse in {args.chunks} INSERT ... SELECT in "
          f"{seconds:.0f} s ({args.rows / seconds:,.0f} rows/s, the views filling the rollups), "
          f"then {merges:.0f} s of background merges; peak RSS {rss_kb // 1024} MB; "
          f"chdb directory {du} MB")
    print(f"\n| query (site acme-web, {args.rows:,} events; ms, median of 3 warm runs) "
          "| wall | CPU |")
    print("| --- | ---: | ---: |")
    for q, (wall, cpu) in timings.items():  # type: ignore[union-attr]
        print(f"| {q} | {wall:.1f} | {cpu:.0f} |")
    steps = json.loads((args.work / "results.json").read_text())
    print(f"steps: {json.dumps({k: (v['started'], v['ended'], v['load']) for k, v in steps.items()})}")


if __name__ == "__main__":
    main()
