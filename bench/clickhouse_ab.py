"""The changed ClickHouse queries before and after a change, call for call in one process.

Usage: python bench/clickhouse_ab.py DB chdb:///DIR --before REV [--runs 11]

On a shared machine two runs minutes apart see different loads; here the events interface of
commit REV (its ``pulse_tui/backend/clickhouse/backend.py``, from git, imported beside the
current one) and the current one answer the same calls in turn, on the same engine and caches
(each result checked equal first): totals with the previous period, the funnel (30 and 90
days), the cohort preview with a URL condition, sites(). Prints a Markdown table of the minimum
and median wall and CPU ms (every thread of the process, the embedded ClickHouse's included).
The store must have bench/clickhouse_bench.py's shape (site acme-web, data up to 2025-12-01).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pulse_tui.backend.wiring import open_backends  # noqa: E402
from pulse_tui.clock import Clock  # noqa: E402
from pulse_tui.report_models import DateRange  # noqa: E402


def _old_module(rev: str):  # type: ignore[no-untyped-def]
    src = subprocess.run(["git", "-C", str(ROOT), "show",
                          f"{rev}:pulse_tui/backend/clickhouse/backend.py"],
                         capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "backend_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("backend_before", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("store")
    ap.add_argument("--before", required=True, help="the commit to compare with")
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    b = open_backends(args.db, args.store)
    new = b.events
    old = _old_module(args.before).ClickHouseEvents(new.conn, new.ch)  # type: ignore[attr-defined]
    end = date(2025, 12, 1)
    now = (end - date(1970, 1, 1)).days * 86_400_000 + 12 * 3_600_000
    site = "acme-web"
    url = {"type": "and", "conditions": [
        {"property": "url", "operator": "contains", "value": "/docs/page-1"},
        {"property": "country", "operator": "equals", "value": "DE"}]}
    steps = ("page_view", "click", "signup", "purchase")
    cases = {}
    for days in (30, 90):
        rng = DateRange(end - timedelta(days=days - 1), end)
        cases[f"totals + previous {days} d"] = lambda e, r=rng: e.range_totals(site, r, now)
        cases[f"funnel {days} d"] = lambda e, r=rng: e.funnel(site, r, steps)
    cases["cohort preview, URL condition"] = lambda e: e.cohort_preview(Clock(now), site, url)
    cases["sites"] = lambda e: e.sites()
    for name, fn in cases.items():
        if fn(old) != fn(new):
            raise SystemExit(f"{name}: the two versions disagree")
    got: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.runs):
        for name, fn in cases.items():
            for label, ev in (("before", old), ("after", new)):
                t, c = time.perf_counter(), _cpu()
                fn(ev)
                got.setdefault((name, label), []).append(
                    ((time.perf_counter() - t) * 1000, (_cpu() - c) * 1000))
    print(f"| query ({args.runs} runs each, in turn; ms) | before: wall min / median | "
          "before: CPU min / median | after: wall min / median | after: CPU min / median |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in cases:
        cells = []
        for label in ("before", "after"):
            walls = [w for w, _ in got[(name, label)]]
            cpus = [c for _, c in got[(name, label)]]
            cells += [f"{min(walls):.0f} / {statistics.median(walls):.0f}",
                      f"{min(cpus):.0f} / {statistics.median(cpus):.0f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    b.close()


if __name__ == "__main__":
    main()
