"""The periodic-job scheduler: due runs, no overlap, restarts, failures, the registry."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pulse_tui.clock import Clock
from pulse_tui.store import scheduler as scheduler_sql
from pulse_tui.store.connection import connect
from pulse_tui.worker import ScheduledJobRan
from pulse_tui.worker import jobs as registry
from pulse_tui.worker.scheduler import JobContext, PeriodicJob, Scheduler
from tests.conftest import wait_until
from tests.worker.conftest import scalar


class FakeTime:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def make_scheduler(db_path: Path, fixed_clock: Clock
                   ) -> Iterator[Callable[..., Scheduler]]:
    made: list[Scheduler] = []

    def factory(jobs: list[PeriodicJob], clock_time: FakeTime, **kw) -> Scheduler:
        s = Scheduler(jobs, connect=lambda: connect(db_path), clock=fixed_clock,
                      time_fn=clock_time, **kw)
        made.append(s)
        return s

    yield factory
    for s in made:
        assert s.shutdown(timeout=5)


def counter() -> tuple[list[float], Callable[[JobContext], str]]:
    runs: list[float] = []

    def fn(ctx: JobContext) -> str:
        runs.append(ctx.now_ms())
        return f"run {len(runs)}"

    return runs, fn


def test_due_jobs_run_once_per_interval(make_scheduler, db_path: Path) -> None:
    t = FakeTime()
    runs, fn = counter()
    later, fn2 = counter()
    s = make_scheduler([PeriodicJob("a", 10, fn), PeriodicJob("b", 10, fn2, run_at_start=False)],
                       t)
    assert s.run_due() == ["a"]
    assert s.wait_idle(5)
    assert s.run_due() == []  # not due again yet
    t.t += 9.9
    assert s.run_due() == []
    t.t += 0.1
    assert sorted(s.run_due()) == ["a", "b"]
    assert s.wait_idle(5)
    assert len(runs) == 2 and len(later) == 1
    row = scheduler_sql.load_states(connect(db_path))["a"]
    assert row.last_run_at == int(t.t * 1000) and row.next_run_at == int((t.t + 10) * 1000)
    assert row.last_outcome == "run 2" and row.last_duration_ms is not None


def test_a_running_job_never_overlaps_itself(make_scheduler) -> None:
    t = FakeTime()
    release = threading.Event()
    entered: list[int] = []
    active = {"n": 0, "max": 0}
    lock = threading.Lock()

    def slow(ctx: JobContext) -> str:
        with lock:
            active["n"] += 1
            active["max"] = max(active["max"], active["n"])
            entered.append(1)
        release.wait(10)
        with lock:
            active["n"] -= 1
        return "done"

    quick_runs, quick = counter()
    s = make_scheduler([PeriodicJob("slow", 1, slow), PeriodicJob("quick", 1, quick)], t)
    assert sorted(s.run_due()) == ["quick", "slow"]
    wait_until(lambda: entered)
    for _ in range(5):  # far past due while the first run is still going
        t.t += 5
        assert "slow" not in s.run_due()
        wait_until(lambda: not s.is_running("quick"))
    assert s.is_running("slow") and len(quick_runs) >= 5  # other jobs are not held up
    release.set()
    assert s.wait_idle(5)
    assert "slow" in s.run_due()
    assert s.wait_idle(5)
    assert active["max"] == 1 and len(entered) == 2


def test_missed_runs_run_once_after_a_restart(make_scheduler, db_path: Path) -> None:
    t = FakeTime()
    runs, fn = counter()
    job = PeriodicJob("hourly", 3600, fn)
    first = make_scheduler([job], t)
    assert first.run_due() == ["hourly"]
    assert first.wait_idle(5)
    assert first.shutdown(5)
    t.t += 10 * 3600 + 5  # ten intervals pass while nothing runs
    second = make_scheduler([job], t)
    assert second.run_due() == ["hourly"]
    assert second.wait_idle(5)
    assert second.run_due() == []
    assert len(runs) == 2
    assert scalar(db_path, "SELECT next_run_at FROM scheduler_jobs") == int((t.t + 3600) * 1000)
    # and a restart before it is due does not run it early
    third = make_scheduler([job], t)
    t.t += 60
    assert third.run_due() == []


def test_a_failing_job_is_recorded_and_others_still_run(make_scheduler, db_path: Path) -> None:
    t = FakeTime()
    seen: list[tuple[str, bool, str]] = []

    def broken(ctx: JobContext) -> str:
        raise ValueError("no such table: nope")

    runs, fn = counter()
    s = make_scheduler([PeriodicJob("broken", 5, broken), PeriodicJob("fine", 5, fn),
                        PeriodicJob("lazy", 5, "tests.worker.test_scheduler:lazy_target")], t,
                       on_ran=lambda n, ok, out, ms: seen.append((n, ok, out)))
    s.run_due()
    assert s.wait_idle(5)
    outcomes = dict(scalar_rows(db_path))
    assert outcomes["broken"] == "error: ValueError: no such table: nope"
    assert outcomes["fine"] == "run 1" and outcomes["lazy"] == "lazy ok"
    assert ("broken", False, outcomes["broken"]) in seen and ("fine", True, "run 1") in seen
    t.t += 5
    assert sorted(s.run_due()) == ["broken", "fine", "lazy"]  # a failure does not stop it


def lazy_target(ctx: JobContext) -> str:
    return "lazy ok"


def scalar_rows(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT name, last_outcome FROM scheduler_jobs").fetchall()
    finally:
        conn.close()


def test_derived_catch_up_folds_rows_other_programs_wrote(conn: sqlite3.Connection,
                                                          fixed_clock: Clock) -> None:
    conn.execute("INSERT INTO sites (id, name, created_at) VALUES ('s1', 's1', 0)")
    for i in range(3):
        conn.execute(
            "INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
            "created_at) VALUES (?, 's1', 'pageview', ?, 'sess', 0)",
            (f"x{i}", 1_764_000_000_000 + i))
    ctx = JobContext(conn=conn, settings=None, clock=fixed_clock)
    assert registry.derived_catch_up(ctx) == "folded 3 event rows"
    assert conn.execute("SELECT event_count FROM sessions").fetchone() == (3,)
    assert registry.derived_catch_up(ctx) == "nothing pending"
    assert any(j.name == "derived-catch-up" and j.interval <= 5 for j in registry.JOBS)
    # a row the worker cannot use is left out, and the outcome says so (issue 15)
    conn.execute("INSERT INTO events (event_id, site_id, event_type, timestamp_ms, session_id, "
                 "created_at) VALUES ('bad', 's1', 'pageview', 'yesterday', 'sess', 0)")
    assert registry.derived_catch_up(ctx) == "folded 1 event rows; 1 unusable rows left out"
    assert conn.execute("SELECT event_count FROM sessions").fetchone() == (3,)


def test_worker_runs_registered_jobs_while_it_holds_the_lease(make_worker, pulse_settings
                                                              ) -> None:
    runs, fn = counter()
    worker, rec = make_worker(jobs=[PeriodicJob("tick", 3600, fn)])
    wait_until(lambda: rec.of(ScheduledJobRan))
    assert rec.of(ScheduledJobRan)[0].name == "tick" and len(runs) == 1
    assert scalar(pulse_settings.db, "SELECT last_outcome FROM scheduler_jobs") == "run 1"
    standby, rec2 = make_worker(jobs=[PeriodicJob("tick2", 0.01, fn)])
    wait_until(lambda: standby.state.state == "standby")
    assert rec2.of(ScheduledJobRan) == [] and standby.scheduler is None
