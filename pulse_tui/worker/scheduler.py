"""The periodic-job scheduler: runs each registered job when due, never overlapping itself.

Times here are real (``time_fn``, injectable for tests): intervals are about wall-clock
spacing, while the jobs themselves read business "now" from ``ctx.clock`` (PULSE_NOW).
State lives in ``scheduler_jobs`` so it survives restarts; a job whose ``next_run_at`` passed
while nothing ran is due once at start (then every interval from that run, not once per missed
interval).
"""

from __future__ import annotations

import importlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import backends_for_thread
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.store import scheduler as scheduler_sql
from pulse_tui.store.connection import describe_error

log = logging.getLogger("pulse_tui.worker.scheduler")

JobFn = Callable[["JobContext"], "str | None"]


# Importing (compiling) modules in several threads at once can fail on CPython 3.11 with
# "SystemError: AST constructor recursion depth mismatch"; lazy imports are serialised, and the
# scheduler resolves its targets in the thread that builds it, before any job thread runs.
_IMPORT_LOCK = threading.Lock()


def resolve(target: Callable[..., Any] | str) -> Callable[..., Any]:
    """A callable, or ``"package.module:function"`` imported on first use."""
    if callable(target):
        return target
    module_name, _, attr = str(target).partition(":")
    if not attr:
        raise ValueError(f"job target {target!r} is not 'module:function'")
    with _IMPORT_LOCK:
        obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_or_raiser(target: Callable[..., Any] | str) -> Callable[..., Any]:
    """resolve() now; if the target cannot be imported, a callable that raises that error
    when run (so a broken module breaks only its own job, and says why each time)."""
    try:
        return resolve(target)
    except Exception as exc:  # noqa: BLE001 - kept and re-raised when the job runs
        error = exc

        def broken(*_: Any, **__: Any) -> Any:
            raise error

        return broken


@dataclass(frozen=True)
class PeriodicJob:
    """One entry of the registry: ``fn(ctx)`` every ``interval`` seconds; returns outcome text.

    ``fn`` is a callable or a ``"module:function"`` string (imported lazily, so a registry
    entry never creates an import cycle and a broken module only breaks its own job).
    ``run_at_start``: a job never run before is due at once (else one interval later).
    """

    name: str
    interval: float
    fn: JobFn | str
    run_at_start: bool = True
    description: str = ""


@dataclass
class JobContext:
    """What a periodic job (or an after-import hook) gets: its own connection to the PULSE
    file, the settings, and :attr:`backends` (both interfaces over that connection, the events
    wherever they live: ``shared`` is the worker's own Backends when they are not in the file).
    """

    conn: sqlite3.Connection
    settings: Settings | None
    clock: Clock
    should_stop: Callable[[], bool] = lambda: False
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("pulse_tui.worker"))
    shared: Backends | None = None
    _backends: Backends | None = field(default=None, init=False, repr=False)

    @property
    def backends(self) -> Backends:
        """The events backend and the control store for this job's connection."""
        if self._backends is None:
            self._backends = backends_for_thread(self.shared, self.conn)
        return self._backends

    def now_ms(self) -> int:
        """Business now (honours PULSE_NOW)."""
        return self.clock.now_ms()


class Scheduler:
    """Runs due jobs on a small thread pool; one run per job at a time.

    Call :meth:`run_due` when a job may be due (the worker sleeps :meth:`seconds_until_due`
    between calls); tests call it directly with an injected ``time_fn``.
    """

    def __init__(
        self,
        jobs: Sequence[PeriodicJob],
        *,
        connect: Callable[[], sqlite3.Connection],
        clock: Clock,
        shared: Backends | None = None,
        settings: Settings | None = None,
        time_fn: Callable[[], float] = time.time,
        max_workers: int = 4,
        on_ran: Callable[[str, bool, str, int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate scheduled job names in {names}")
        self.jobs = {job.name: job for job in jobs}
        self._targets = {job.name: resolve_or_raiser(job.fn) for job in jobs}
        self._connect = connect
        self._shared = shared
        self._clock = clock
        self._settings = settings
        self._time = time_fn
        self._on_ran = on_ran
        self._should_stop = should_stop
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._next: dict[str, int] = {}
        self._conns: dict[str, sqlite3.Connection] = {}
        self._executor = ThreadPoolExecutor(max_workers=max_workers,
                                            thread_name_prefix="pulse-job")
        self._idle = threading.Condition(self._lock)
        self._loaded = False
        self._closed = False

    # -- state ---------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._time() * 1000)

    def _load(self) -> None:
        """Read next_run_at of every job from the database (once, at the first tick)."""
        now = self._now_ms()
        conn = self._conn_for("")
        states = scheduler_sql.load_states(conn)
        for name, job in self.jobs.items():
            row = states.get(name)
            interval_ms = int(job.interval * 1000)
            if row is None or row.next_run_at is None:
                due = now if job.run_at_start else now + interval_ms
                try:
                    scheduler_sql.ensure_job(conn, name, due)
                except sqlite3.Error:
                    log.warning("cannot record scheduled job %s", name, exc_info=True)
            else:
                # a missed run is due now (once); a clock moved back never delays a job
                # by more than one interval
                due = min(row.next_run_at, now + interval_ms)
            self._next[name] = due
        self._loaded = True

    def next_run_at(self, name: str) -> int | None:
        return self._next.get(name)

    def seconds_until_due(self) -> float | None:
        """Seconds until the next job not running now is due (0 or less: due); None when
        nothing is scheduled (or before the first :meth:`run_due`)."""
        with self._lock:
            pending = [due for name, due in self._next.items() if name not in self._running]
        if not pending:
            return None
        return (min(pending) - self._now_ms()) / 1000

    def is_running(self, name: str) -> bool:
        with self._lock:
            return name in self._running

    def _conn_for(self, name: str) -> sqlite3.Connection:
        conn = self._conns.get(name)
        if conn is None:
            conn = self._conns[name] = self._connect()
        return conn

    # -- running -------------------------------------------------------------------------
    def run_due(self) -> list[str]:
        """Start every due job that is not already running; returns the names started."""
        if self._closed:
            return []
        if not self._loaded:
            self._load()
        now = self._now_ms()
        started: list[str] = []
        with self._lock:
            for name in self.jobs:
                if name in self._running or self._next.get(name, now) > now:
                    continue
                self._running.add(name)
                started.append(name)
        for name in started:
            try:
                future = self._executor.submit(self._run_one, self.jobs[name])
            except RuntimeError:  # shut down meanwhile
                self._discard(name)
                continue
            future.add_done_callback(
                lambda f, n=name: self._discard(n) if f.cancelled() else None)
        return started

    def _discard(self, name: str) -> None:
        with self._lock:
            self._running.discard(name)
            self._idle.notify_all()

    def run_now(self, name: str) -> bool:
        """Make ``name`` due at once (the Jobs pane's "run now"); False when unknown."""
        if name not in self.jobs:
            return False
        if not self._loaded:
            self._load()
        self._next[name] = self._now_ms()
        return True

    def _run_one(self, job: PeriodicJob) -> None:
        started = self._time()
        ok = True
        try:
            conn = self._conn_for(job.name)
            ctx = JobContext(conn=conn, settings=self._settings, clock=self._clock,
                             shared=self._shared, should_stop=self._should_stop,
                             log=logging.getLogger(f"pulse_tui.worker.job.{job.name}"))
            result = self._targets[job.name](ctx)
            outcome = "ok" if result is None else str(result)
        except sqlite3.Error as exc:  # disk full, read-only, locked ...: in our words
            ok = False
            db = self._settings.db if self._settings is not None else None
            outcome = " ".join(f"error: {describe_error(exc, db)}".split())[:300]
            log.error("scheduled job %s failed: %s", job.name, outcome)
        except Exception as exc:  # noqa: BLE001 - one job's failure never stops the others
            ok = False
            outcome = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.exception("scheduled job %s failed", job.name)
        finished = self._time()
        duration_ms = int((finished - started) * 1000)
        interval_ms = int(job.interval * 1000)
        next_ms = max(int(started * 1000) + interval_ms, int(finished * 1000))
        try:
            scheduler_sql.record_run(self._conn_for(job.name), job.name,
                                     last_run_at=int(started * 1000), duration_ms=duration_ms,
                                     outcome=outcome, next_run_at=next_ms)
        except Exception:  # noqa: BLE001 - a busy database must not kill the scheduler
            log.warning("cannot record the run of %s", job.name, exc_info=True)
        with self._lock:
            self._next[job.name] = next_ms
            self._running.discard(job.name)
            self._idle.notify_all()
            if self._closed and not self._running:
                self._close_conns()
        if ok and outcome not in ("ok", "") and not outcome.startswith("nothing"):
            log.debug("scheduled job %s: %s", job.name, outcome)
        if self._on_ran is not None:
            try:
                self._on_ran(job.name, ok, outcome, duration_ms)
            except Exception:  # noqa: BLE001
                log.exception("on_ran callback failed")

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _close_conns(self) -> None:
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._conns.clear()

    def shutdown(self, timeout: float | None = None) -> bool:
        """No new runs; wait up to ``timeout`` for running ones. True when all finished."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        idle = self.wait_idle(timeout)
        with self._lock:
            if not self._running:
                self._close_conns()
        return idle
