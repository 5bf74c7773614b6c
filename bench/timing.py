"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time in ms of ``repeat`` warm runs (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def timed_cpu(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this process: every thread, the embedded ClickHouse's
    too) of ``repeat`` warm runs after one warm-up. On a shared machine the CPU time says what
    the query costs whatever the load; the wall time is what a user waits."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), cpu()
        fn()
        walls.append((time.perf_counter() - t) * 1000)
        cpus.append((cpu() - c) * 1000)
    return statistics.median(walls), statistics.median(cpus)
