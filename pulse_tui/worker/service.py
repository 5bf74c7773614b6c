"""The worker: watches the import folder, imports settled files, holds the lease, runs jobs.

Usable headless (``pulse-tui worker`` calls :meth:`WorkerService.run`) or embedded in the TUI
(:meth:`WorkerService.start` / :meth:`WorkerService.stop`), reporting through ``on_event``.

Crash safety, step by step for one file (a kill -9 may land between any two steps):

1. the importer creates the job (source_path = the inbox file) and commits a checkpoint with
   every batch; a restart resumes a job still uploading/processing from its checkpoint with the
   same job id (a file that changed size or vanished meanwhile ends the old job as failed);
2. the importer's last commit marks the job completed or failed;
3. the worker picks a free name in processed/ or failed/ and commits it as ``result_path``
   together with a "hooks pending" mark — a restart finds a finished job without result_path
   whose file is still in the inbox and does this step, so the file is never imported twice;
4. it writes ``NAME.errors.csv`` (when rows were rejected) and moves the file by hard link +
   unlink, never overwriting; a restart redoes whatever of this is missing;
5. it runs the after-import hooks and clears the mark (a restart runs them if the mark stays).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pulse_tui.backend.sqlite.home import check_events_home
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.errors import PulseError
from pulse_tui.ingest.importer import batch_rows_setting
from pulse_tui.safefs import UnsafePathError, identity, shown
from pulse_tui.store import lease as lease_sql
from pulse_tui.store import worker_jobs as jobs_sql
from pulse_tui.store.connection import (
    SQLITE_CANTOPEN,
    SQLITE_READONLY,
    connect,
    describe_error,
    error_code,
)
from pulse_tui.store.tx import rollback_quietly
from pulse_tui.worker import inbox
from pulse_tui.worker.events import (
    RUNNING,
    STANDBY,
    STOPPED,
    FileWaiting,
    ImportCommitted,
    ImportFinished,
    ImportStarted,
    ScheduledJobRan,
    WorkerEvent,
    WorkerState,
)
from pulse_tui.worker.inbox import retry_failed_file as retry_failed_file
from pulse_tui.worker.inbox import retry_failed_job as retry_failed_job
from pulse_tui.worker.scheduler import (
    JobContext,
    PeriodicJob,
    Scheduler,
    resolve_or_raiser,
)

log = logging.getLogger("pulse_tui.worker")

EventCallback = Callable[[WorkerEvent], None]

LINK_REASON = "symbolic links are not imported"
SPECIAL_REASON = "not a regular file (a pipe, socket or device); not imported"
REPLACED_NOTE = ("the file was replaced while it was imported; the new file is imported as a "
                 "new job")
REMOVED_NOTE = "the file was removed from the import folder while it was imported"


# The worker shares the database with live writers and TUIs: each import transaction holds the
# write lock about a second (its size follows the measured speed, up to WORKER_TX_ROWS rows) and
# the worker then pauses longer than SQLite's busy-retry interval (100 ms), so simulated or real
# live traffic keeps landing and showing while a big file imports. While nobody else stores
# events, transactions grow to about 3 s (ingest.importer.QUIET_TX_FACTOR) for throughput.
WORKER_TX_SECONDS = 1.0
WORKER_TX_PAUSE = 0.12
WORKER_TX_ROWS = 100_000
LEASE_RETRY_MAX = 10.0  # seconds between lease checks while the database keeps failing

# No loop polls in a spin: the import loop sleeps until a file event, a stop, the next rescan or
# the moment a waiting file may have settled; the scheduler until its next job is due.
SCHEDULER_MIN_SLEEP = 0.05
SCHEDULER_MAX_SLEEP = 5.0
WATCH_DEBOUNCE_MS = 200
WATCH_STEP_MS = 250


def _real_ms() -> int:
    return time.time_ns() // 1_000_000


class WorkerService:
    """One database's worker. Thread-safe ``state``; ``stop()`` returns within ``timeout``."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        on_event: EventCallback | None = None,
        *,
        jobs: Sequence[PeriodicJob] | None = None,
        after_import: Sequence[Any] | None = None,
        lease_ttl_ms: int = lease_sql.LEASE_TTL_MS,
        renew_interval: float = 3.0,
        standby_poll: float = 1.0,
        rescan_interval: float = 5.0,
        watch: bool = True,
        scheduler_time: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock or Clock.from_env()
        self.import_dir = Path(settings.import_dir).absolute()
        self.on_event = on_event
        if jobs is None or after_import is None:
            from pulse_tui.worker import jobs as registry

            jobs = registry.JOBS if jobs is None else jobs
            after_import = registry.AFTER_IMPORT if after_import is None else after_import
        # job targets and hooks are resolved (imported) here, in the thread that builds the
        # service, never concurrently in the worker's threads (see scheduler.resolve)
        self.jobs = [dataclasses.replace(job, fn=resolve_or_raiser(job.fn)) for job in jobs]
        # hooks resolved here, in the thread that builds the service (see scheduler.resolve)
        self.after_import = [resolve_or_raiser(hook) for hook in after_import]
        self.lease_ttl_ms = lease_ttl_ms
        self.renew_interval = renew_interval
        self.standby_poll = standby_poll
        self.rescan_interval = rescan_interval
        self.watch = watch
        self.scheduler_time = scheduler_time
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.tick = min(0.25, max(0.05, settings.settle_seconds / 4))

        self._state = WorkerState(STOPPED, "not started")
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._lease_lost = threading.Event()
        self._serving = threading.Event()
        self._wake = threading.Event()  # the import loop: a file event, stop, lease lost
        self._rescan_soon = threading.Event()  # the watcher lost a batch of changes
        self._sched_wake = threading.Event()  # the scheduler loop: run now, a job ended, stop
        self._watch_stop = threading.Event()  # ends the file watcher
        self._changes: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = inbox.InboxLock(self.import_dir, settings.db)
        self._events: Any = None  # the ClickHouse events backend when events live there
        self._shared: Any = None  # its Backends: the jobs see the events through them
        self._tracker = inbox.SettleTracker(settings.settle_seconds, monotonic)
        self._announced: set[Path] = set()
        # files imported already that could not leave the inbox: identity -> job id
        self._unmoved: dict[str, str] = {}
        self._folder_problem: str | None = None
        self._next_folder_check = 0.0
        self._scheduler: Scheduler | None = None
        self.imports_done = 0  # finished jobs (tests and the status line)
        self.error: PulseError | None = None
        self._ever_held = False

    # -- public --------------------------------------------------------------------------
    @property
    def state(self) -> WorkerState:
        with self._state_lock:
            return self._state

    @property
    def scheduler(self) -> Scheduler | None:
        return self._scheduler

    def start(self) -> None:
        """Run the worker in a background thread (embedded use)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run_embedded, name="pulse-worker",
                                        daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the worker to finish the current batch and stop (safe from a signal handler)."""
        self._stop.set()
        self._halt_helpers()

    def _halt_helpers(self) -> None:
        """Wake every waiting loop so that it sees the stop / lost lease at once."""
        self._watch_stop.set()
        self._sched_wake.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the current batch; waits up to ``timeout`` s. True when it has stopped."""
        self.request_stop()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def retry_failed(self, path: str | Path) -> Path:
        """Move a file of ``failed/`` back into its inbox (the Jobs pane's retry)."""
        conn = connect(self.settings.db)
        try:
            return retry_failed_file(conn, self.import_dir, Path(path))
        finally:
            conn.close()

    def run_job_now(self, name: str) -> bool:
        """Make a periodic job due at once (Jobs pane); False when not running or unknown."""
        sched = self._scheduler
        if sched is None or not sched.run_now(name):
            return False
        self._sched_wake.set()
        return True

    def run(self) -> None:
        """Run until :meth:`request_stop` (blocking). Raises PulseError on a fatal problem."""
        events_backends = None
        try:
            inbox.ensure_folders(self.import_dir)
            if self.settings.events_store != "sqlite":
                # events in ClickHouse: the imports write there, and each job (on its own
                # connection) reads and cleans them there (JobContext.backends)
                events_backends = open_backends(
                    self.settings.db, self.settings.events_store,
                    cluster=self.settings.clickhouse_cluster)
                self._events = events_backends.events
                self._shared = events_backends
            conn = connect(self.settings.db)
            try:  # a file whose events live in another store: stop, saying so
                check_events_home(conn, self.settings.db, self.settings.events_store)
            except PulseError:
                conn.close()
                raise
        except PulseError as exc:
            if events_backends is not None:
                events_backends.close()
            self._set_state(STOPPED, str(exc))
            raise
        try:
            self._main_loop(conn)
        except PulseError as exc:
            self._set_state(STOPPED, str(exc))
            raise
        finally:
            self._serving.clear()
            self._lock.release()
            try:
                if self._ever_held:
                    lease_sql.release(conn, self.holder)
            except Exception as exc:  # noqa: BLE001 - the lease expires anyway
                log.warning("could not release the worker lease: %s", exc)
            conn.close()
            if events_backends is not None:
                events_backends.close()
            if self.state.state != STOPPED:
                self._set_state(STOPPED, "stopped")
            log.info("worker stopped")

    # -- plumbing ------------------------------------------------------------------------
    def _run_embedded(self) -> None:
        try:
            self.run()
        except PulseError as exc:
            self.error = exc
            log.error("worker: %s", exc)
            self._set_state(STOPPED, str(exc))
        except Exception as exc:  # noqa: BLE001 - the TUI must keep running
            log.exception("worker crashed")
            self._set_state(STOPPED, f"worker crashed: {exc}")

    def _emit(self, event: WorkerEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001 - a broken listener never stops the worker
            log.exception("worker on_event callback failed")

    def _set_state(self, state: str, detail: str) -> None:
        with self._state_lock:
            if self._state == WorkerState(state, detail):
                return
            self._state = WorkerState(state, detail)
        self._emit(WorkerState(state, detail))

    def _should_stop_import(self) -> bool:
        return self._stop.is_set() or self._lease_lost.is_set()

    def _acquire_lease(self, conn: Any) -> bool:
        return lease_sql.try_acquire(conn, self.holder, now_ms=_real_ms(), pid=os.getpid(),
                                     host=socket.gethostname(), import_dir=str(self.import_dir),
                                     ttl_ms=self.lease_ttl_ms)

    def _holder_is_dead(self, conn: Any) -> bool:
        """A holder on this host whose process no longer exists: end its lease (kill -9)."""
        info = lease_sql.current(conn, _real_ms())
        if info is None or info.host != socket.gethostname() or not info.pid:
            return False
        if info.pid == os.getpid():
            return False  # another worker in this process (tests, embedded + headless)
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            pass
        except OSError:
            return False  # exists (EPERM) or unknown
        else:
            return False
        if jobs_sql.expire_lease_of(conn, info.holder):
            log.info("the worker lease holder (pid %d) is dead; taking over", info.pid)
            return True
        return False

    # -- main loop -----------------------------------------------------------------------
    def _main_loop(self, conn: Any) -> None:
        logged_standby: str | None = None
        failing: str | None = None  # the lease check's error, said once
        retry = self.standby_poll
        while not self._stop.is_set():
            try:
                held = self._acquire_lease(conn)
            except sqlite3.Error as exc:
                if error_code(exc) in (SQLITE_READONLY, SQLITE_CANTOPEN):
                    # it will not get better by itself: stop with the reason
                    raise PulseError(f"worker: {describe_error(exc, self.settings.db)}; it "
                                     "imports and runs jobs only on a database it can write"
                                     ) from exc
                text = describe_error(exc, self.settings.db)
                if text != failing:  # said once; then back off, up to LEASE_RETRY_MAX
                    log.warning("lease check failed (retrying, less and less often): %s",
                                text)
                    failing, retry = text, self.standby_poll
                self._set_state(STANDBY, f"database error: {text}")
                self._stop.wait(retry)
                retry = min(retry * 2, LEASE_RETRY_MAX)
                continue
            if failing is not None:
                log.info("lease check works again")
                failing, retry = None, self.standby_poll
            self._ever_held = self._ever_held or held
            if not held and self._holder_is_dead(conn):
                continue  # its lease was ended; take it on the next turn
            if not held:
                info = lease_sql.current(conn, _real_ms())
                detail = (f"lease held by pid {info.pid} on host {info.host}" if info
                          else "waiting for the lease")
                if detail != logged_standby:
                    log.info("standby: %s; taking over when it expires", detail)
                    logged_standby = detail
                self._set_state(STANDBY, detail)
                self._stop.wait(self.standby_poll)
                continue
            if not self._lock.try_acquire():
                holder = self._lock.holder()
                other_db = holder.get("db", "")
                if other_db and other_db != self._lock.db:
                    lease_sql.release(conn, self.holder)
                    raise inbox.InboxLockedError(
                        f"import folder {self.import_dir} is in use by the worker of database "
                        f"{other_db} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}); "
                        "give each database its own import folder (--import-dir)")
                detail = (f"import folder locked by pid {holder.get('pid', '?')} on host "
                          f"{holder.get('host', '?')}")
                if detail != logged_standby:
                    log.info("standby: %s", detail)
                    logged_standby = detail
                self._set_state(STANDBY, detail)
                self._stop.wait(self.standby_poll)
                continue
            logged_standby = None
            self._lease_lost.clear()
            log.info("worker running on %s, watching %s", self.settings.db, self.import_dir)
            self._set_state(RUNNING, f"watching {self.import_dir}")
            try:
                self._serve(conn)
            finally:
                self._lock.release()
            if self._lease_lost.is_set() and not self._stop.is_set():
                log.warning("lost the worker lease; going back to standby")

    def _serve(self, conn: Any) -> None:
        self._serving.set()
        self._watch_stop.clear()
        threads = [threading.Thread(target=self._renew_loop, name="pulse-lease", daemon=True),
                   threading.Thread(target=self._scheduler_loop, name="pulse-scheduler",
                                    daemon=True)]
        if self.watch:
            threads.append(threading.Thread(target=self._watch_loop, name="pulse-watch",
                                            daemon=True))
        for t in threads:
            t.start()
        try:
            self._recover(conn)
            self._rescan()
            next_rescan = time.monotonic() + self.rescan_interval
            while not self._should_stop_import():
                self._drain_changes()
                if time.monotonic() >= next_rescan or self._rescan_soon.is_set():
                    self._rescan_soon.clear()
                    self._rescan()
                    next_rescan = time.monotonic() + self.rescan_interval
                ready = self._tracker.settled()
                held_back = bool(ready) and not self._folders_usable()
                if held_back:
                    ready = []  # imports wait until the folders are fixed (said once)
                for path, kind in ready:
                    if self._should_stop_import():
                        break
                    self._tracker.forget(path)
                    self._announced.discard(path)
                    if self._was_unmoved(conn, path):
                        continue  # imported already; its move failed (said once)
                    self._import(conn, path, kind)
                # sleep until a file event, a stop, the next rescan or the moment the first
                # waiting file may have settled; idle means idle (no polling while nothing waits)
                delay = next_rescan - time.monotonic()
                due = None if held_back else self._tracker.next_due()
                if due is not None:  # (folders to fix: look again at the rescan or an event)
                    delay = min(delay, max(self.tick, due))
                if delay > 0:
                    self._wake.wait(delay)
                self._wake.clear()
        finally:
            self._serving.clear()
            self._halt_helpers()
            for t in threads:
                t.join(2.0)

    def _drain_changes(self) -> None:
        while True:
            try:
                path = self._changes.get_nowait()
            except queue.Empty:
                return
            kind = inbox.kind_of(self.import_dir, path)
            if kind is not None and inbox.candidate(path):
                self._track(path, kind)

    def _folders_usable(self) -> bool:
        """processed/, failed/ and the inbox folders are real, writable folders (missing ones
        are created); otherwise say why once and check again every rescan interval."""
        now = time.monotonic()
        if self._folder_problem is not None and now < self._next_folder_check:
            return False
        problem = inbox.folder_problem(self.import_dir)
        if problem != self._folder_problem:
            if problem is not None:
                log.error("imports paused: %s", problem)
                self._set_state(RUNNING, f"imports paused: {problem}")
            else:
                log.info("import folders usable again; importing")
                self._set_state(RUNNING, f"watching {self.import_dir}")
            self._folder_problem = problem
        self._next_folder_check = now + self.rescan_interval
        return problem is None

    def _was_unmoved(self, conn: Any, path: Path) -> bool:
        """True when ``path`` is a file imported already whose move failed: its move is tried
        again quietly, and it is never imported again."""
        try:
            ident = identity(os.lstat(path))
        except OSError:
            return False
        job_id = self._unmoved.get(ident)
        if job_id is None:
            return False
        self._retry_unmoved(conn, job_id, ident, path)
        return True

    def _track(self, path: Path, kind: str) -> None:
        if path not in self._tracker:
            self._tracker.add(path, kind)
            if path not in self._announced:
                self._announced.add(path)
                self._emit(FileWaiting(str(path), kind))

    def _rescan(self) -> None:
        self._folders_usable()  # say at once when a folder is wrong, even with no file
        for path, kind in inbox.scan(self.import_dir).items():
            self._track(path, kind)

    # -- helper threads ------------------------------------------------------------------
    def _renew_loop(self) -> None:
        conn = None
        last_ok = _real_ms()
        try:
            conn = connect(self.settings.db)
            while self._serving.is_set() and not self._stop.wait(self.renew_interval):
                if not self._serving.is_set():
                    break
                try:
                    if self._acquire_lease(conn):
                        last_ok = _real_ms()
                        continue
                    log.warning("another worker took over the lease")
                except Exception as exc:  # noqa: BLE001
                    if _real_ms() < last_ok + self.lease_ttl_ms - 1000:
                        log.warning("lease renewal failed (will retry): %s", exc)
                        continue
                    log.warning("lease renewal failed for too long: %s", exc)
                self._lease_lost.set()
                self._halt_helpers()
                return
        except Exception:  # noqa: BLE001
            log.exception("lease thread failed")
            self._lease_lost.set()
            self._halt_helpers()
        finally:
            if conn is not None:
                conn.close()

    def _scheduler_loop(self) -> None:
        def ran(name: str, ok: bool, outcome: str, ms: int) -> None:
            self._sched_wake.set()  # its next run time is known now
            self._emit(ScheduledJobRan(name, ok, outcome, ms))

        sched = Scheduler(
            self.jobs,
            connect=lambda: connect(self.settings.db),
            shared=self._shared,
            clock=self.clock,
            settings=self.settings,
            time_fn=self.scheduler_time,
            on_ran=ran,
            should_stop=self._should_stop_import,
        )
        self._scheduler = sched
        try:
            while self._serving.is_set() and not self._should_stop_import():
                try:
                    sched.run_due()
                except Exception:  # noqa: BLE001
                    log.exception("scheduler tick failed")
                # sleep until the next job is due (a job that ends, "run now" and stop wake
                # it earlier); at most SCHEDULER_MAX_SLEEP so an injected clock is followed
                delay = sched.seconds_until_due()  # None: no job, or the start failed
                delay = 1.0 if delay is None else min(
                    SCHEDULER_MAX_SLEEP, max(SCHEDULER_MIN_SLEEP, delay))
                self._sched_wake.wait(delay)
                self._sched_wake.clear()
        finally:
            self._scheduler = None
            if not sched.shutdown(timeout=2.0):
                log.info("scheduled jobs still finishing after stop")

    def _watch_loop(self) -> None:
        try:
            import watchfiles
        except ImportError:  # pragma: no cover - a declared dependency
            return
        stop = self._watch_stop  # set on stop, a lost lease and the end of serving
        failures = 0
        while not stop.is_set():
            try:
                # watchfiles sleeps WATCH_STEP_MS between its looks at the queue of changes
                for changes in watchfiles.watch(self.import_dir, stop_event=stop,
                                                debounce=WATCH_DEBOUNCE_MS, step=WATCH_STEP_MS,
                                                raise_interrupt=False, watch_filter=None,
                                                recursive=True, ignore_permission_denied=True):
                    failures = 0
                    for change, raw in changes:
                        if change != watchfiles.Change.deleted:
                            self._changes.put(Path(raw))
                    self._wake.set()
                return  # stopped
            except Exception as exc:  # noqa: BLE001 - e.g. a name that is not UTF-8
                # the batch of changes is lost: rescan at once, then watch again (after a
                # pause growing to 1 s while it keeps failing: a name that is not UTF-8
                # being written to, or the folder gone)
                failures += 1
                (log.warning if failures == 1 else log.debug)(
                    "watching %s was interrupted (%s); rescanning and watching again",
                    shown(self.import_dir), shown(str(exc)))
                self._rescan_soon.set()
                self._wake.set()
                stop.wait(min(1.0, self.rescan_interval, 0.05 * 2 ** min(failures, 5)))
                self._rescan_soon.set()  # and what arrived while nothing watched
                self._wake.set()

    # -- importing -----------------------------------------------------------------------
    def _in_inbox(self, raw: str | None) -> bool:
        if not raw:
            return False
        try:
            path, base = Path(raw), self.import_dir.resolve()
            path = path.parent.resolve() / path.name  # the file itself may be a link
        except OSError:
            return False
        return inbox.kind_of(base, path) is not None

    def _recover(self, conn: Any) -> None:
        """Finish what a crashed worker left: pending hooks, moves, interrupted imports."""
        self._unmoved = {ident: job for job, ident in jobs_sql.unmoved(conn).items()}
        for job_id in jobs_sql.hooks_pending(conn):
            row = jobs_sql.get_job(conn, job_id)
            if row is None or row.result_path is None:
                jobs_sql.clear_hooks_pending(conn, job_id)
                continue
            log.info("recovering job %s: finishing its move and hooks", job_id)
            self._finalize(conn, row, Path(row.result_path) if row.result_path else None)
        waiting = set(self._unmoved.values())
        for row in jobs_sql.unplaced_jobs(conn):
            if row.id in waiting:
                continue  # tried again when the file is seen in the inbox
            if (self._in_inbox(row.source_path)
                    and os.path.lexists(str(row.source_path))):
                log.info("recovering job %s: moving %s", row.id, shown(row.source_path))
                self._place(conn, row)
        for row in jobs_sql.unfinished_jobs(conn):
            if self._should_stop_import():
                return
            if not self._in_inbox(row.source_path):
                continue  # a one-shot CLI import elsewhere (maybe still running)
            src = Path(str(row.source_path))
            try:
                st = os.lstat(src)
            except FileNotFoundError:
                log.warning("job %s: %s disappeared before its import finished", row.id,
                            shown(src))
                jobs_sql.mark_failed(conn, row.id, "the file disappeared from the import "
                                     "folder before its import finished", self.clock.now_ms())
                continue
            stored = jobs_sql.source_identity(conn, row.id)
            if (stat.S_ISLNK(st.st_mode) or (stored is not None and identity(st) != stored)
                    or (row.file_size and st.st_size != row.file_size)):
                log.warning("job %s: %s changed while the worker was down; importing it anew",
                            row.id, shown(src))
                jobs_sql.mark_failed(conn, row.id, "the file changed before its import "
                                     "finished; imported again as a new job",
                                     self.clock.now_ms())
                self._not_moved(conn, row.id, None)
                continue
            kind = inbox.kind_of(self.import_dir, src) or row.type
            log.info("resuming job %s (%s) from its checkpoint", row.id, shown(src.name))
            self._import(conn, src, kind, job_id=row.id)

    def _import(self, conn: Any, path: Path, kind: str, job_id: str | None = None) -> None:
        from pulse_tui import ingest

        self._emit(ImportStarted(job_id, str(path), kind, resumed=job_id is not None))
        try:
            st = os.lstat(path)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            self._refuse_link(conn, path, kind, job_id)
            return
        if stat.S_ISDIR(st.st_mode):
            return  # a folder named like an input is left alone
        if not stat.S_ISREG(st.st_mode):  # never opened: a pipe would block
            self._refuse_link(conn, path, kind, job_id, SPECIAL_REASON)
            return
        state: dict[str, Any] = {"job_id": job_id}

        def progress(p: ingest.ImportProgress) -> None:
            state["job_id"] = p.job_id
            self._emit(ImportCommitted(job_id=p.job_id, file=str(path), rows=p.records,
                                      bytes_done=p.bytes_done, total_bytes=p.bytes_total,
                                      processed=p.processed, duplicates=p.duplicates,
                                      failed=p.failed))

        try:
            result = ingest.import_file(conn, path, kind=kind, clock=self.clock, job_id=job_id,
                                        batch_size=batch_rows_setting(WORKER_TX_ROWS),
                                        max_tx_seconds=WORKER_TX_SECONDS,
                                        pause_between_tx=WORKER_TX_PAUSE,
                                        progress=progress, should_stop=self._should_stop_import,
                                        follow_symlinks=False, inside=self.import_dir,
                                        events=getattr(self, "_events", None))
            job = getattr(result, "job_id", None) or state.get("job_id")
            changed = bool(getattr(result, "changed", False))
        except FileNotFoundError:
            log.info("%s vanished before its import", shown(path))
            return
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the worker
            changed = False
            if isinstance(exc, sqlite3.Error):  # disk full, locked ...: one line in our words
                reason = describe_error(exc, self.settings.db)
                log.error("importing %s failed: %s", shown(path), reason)
            else:
                reason = str(exc)
                log.exception("importing %s failed", shown(path))
            message = " ".join(f"import error: {reason}".split())
            job = job_id or state.get("job_id")
            try:
                if job is None:
                    job = uuid.uuid4().hex
                    jobs_sql.insert_failed_job(
                        conn, job, kind=kind, site_id="", file_name=path.name,
                        file_size=_size(path), source_path=str(path), message=message,
                        now_ms=self.clock.now_ms())
                else:
                    jobs_sql.mark_failed(conn, job, message, self.clock.now_ms())
            except sqlite3.Error as again:
                # the job stays as it is and resumes from its checkpoint at the next start
                log.error("could not record that failure either: %s",
                          describe_error(again, self.settings.db))
                return
        if job is None:
            return
        row = jobs_sql.get_job(conn, job)
        if row is None:
            return
        if row.status not in jobs_sql.FINISHED:
            log.info("job %s paused after a batch (%d rows); it resumes at the next start",
                     row.id, row.processed_records + row.duplicate_records + row.failed_records)
            return
        if changed:
            log.warning("job %s: %s changed while it was imported (%s); the file now there is "
                        "imported as a new job", row.id, shown(path), row.status)
            there = os.path.lexists(path)
            note = (REPLACED_NOTE if there else REMOVED_NOTE) if row.status == "completed" \
                else None
            self._not_moved(conn, row.id, note)
            if there:
                self._track(path, kind)
            return
        self._place(conn, row, fallback=path)

    def _refuse_link(self, conn: Any, path: Path, kind: str, job_id: str | None,
                     reason: str = LINK_REASON) -> None:
        """A symbolic link (or a pipe, socket or device) in the inbox is never followed nor
        opened: it goes to failed/ as itself."""
        log.warning("%s: %s; moving it to failed/", shown(path), reason)
        if job_id is not None and jobs_sql.get_job(conn, job_id) is not None:
            jobs_sql.mark_failed(conn, job_id, reason, self.clock.now_ms())
        else:
            job_id = uuid.uuid4().hex
            jobs_sql.insert_failed_job(conn, job_id, kind=kind, site_id="", file_name=path.name,
                                       file_size=0, source_path=str(path), message=reason,
                                       now_ms=self.clock.now_ms())
        row = jobs_sql.get_job(conn, job_id)
        if row is not None:
            self._place(conn, row, fallback=path)

    def _not_moved(self, conn: Any, job_id: str, note: str | None) -> None:
        """The job's file is not moved (the one under its name now is another)."""
        jobs_sql.set_not_moved(conn, job_id, note)
        row = jobs_sql.get_job(conn, job_id)
        if row is not None:
            self._finalize(conn, row, None)

    def _place(self, conn: Any, row: jobs_sql.ImportJob, fallback: Path | None = None
               ) -> None:
        """Pick the destination, record it, then move (steps 3-5 of the module docstring)."""
        src = Path(row.source_path) if row.source_path else fallback
        if src is None:
            return
        stored = jobs_sql.source_identity(conn, row.id)
        try:
            st: os.stat_result | None = os.lstat(src)
        except OSError:
            st = None
        if st is not None and stored is not None and identity(st) != stored:
            # another file arrived under the name since: it is not this job's to move
            log.warning("job %s: %s is not the file it imported any more; the new file is "
                        "imported as a new job", row.id, shown(src))
            self._not_moved(conn, row.id, REPLACED_NOTE if row.status == "completed" else None)
            return
        sub = inbox.PROCESSED if row.status == "completed" else inbox.FAILED
        try:
            os.close(inbox.open_subfolder(self.import_dir, sub))
            dest = inbox.unique_destination(self.import_dir / sub, src.name)
        except (OSError, UnsafePathError) as exc:
            jobs_sql.set_not_moved(conn, row.id, None)  # hooks due; nothing moved
            self._finalize(conn, row, None, src=src, problem=_reason(exc))
            return
        jobs_sql.set_destination(conn, row.id, str(dest))
        self._finalize(conn, row, dest, src=src)

    def _finalize(self, conn: Any, row: jobs_sql.ImportJob, dest: Path | None,
                  src: Path | None = None, problem: str | None = None) -> None:
        """Errors file and move (``dest`` None: nothing to move), then the hooks, once."""
        src = src or (Path(row.source_path) if row.source_path else None)
        errors_path: Path | None = None
        moved = False
        if dest is not None and src is not None:
            try:
                errors_path = self._move(conn, row, src, dest)
                moved = True
            except _Replaced:
                log.warning("job %s: %s was replaced before it could be moved; the new file "
                            "is imported as a new job", row.id, shown(src))
                jobs_sql.set_not_moved(conn, row.id,
                                       REPLACED_NOTE if row.status == "completed" else None)
                dest = None
                self._track(src, inbox.kind_of(self.import_dir, src) or row.type)
            except (OSError, PulseError) as exc:
                problem = _reason(exc)
        if problem is not None and src is not None and os.path.lexists(src):
            self._cannot_move(conn, row, src, problem, dest)
        elif dest is not None and not moved:
            log.warning("job %s: %s is gone; nothing to move", row.id, shown(src or "?"))
        finished = ImportFinished(
            job_id=row.id, file=str(src) if src else "", kind=row.type, site_id=row.site_id,
            status=row.status, processed=row.processed_records,
            duplicates=row.duplicate_records, failed=row.failed_records,
            result_path=str(dest) if moved else None,
            errors_path=str(errors_path) if errors_path else None, message=row.message)
        log.info("import %s %s: %s -> %s (%d new, %d duplicates, %d rejected)",
                 row.id, row.status, shown(src.name) if src else "?",
                 shown(dest) if moved else "(not moved)", row.processed_records,
                 row.duplicate_records, row.failed_records)
        self._run_hooks(conn, finished)
        jobs_sql.clear_hooks_pending(conn, row.id)
        jobs_sql.clear_source_identity(conn, row.id)
        self.imports_done += 1
        self._emit(finished)

    def _move(self, conn: Any, row: jobs_sql.ImportJob, src: Path, dest: Path, *,
              quiet: bool = False) -> Path | None:
        """NAME.errors.csv (when rows were rejected) and the file into ``dest``'s folder, all
        relative to that folder opened without following links; the errors file path."""
        from pulse_tui import ingest

        errors_path: Path | None = None
        fd = inbox.open_subfolder(self.import_dir, dest.parent.name) \
            if dest.parent.parent == self.import_dir else None
        try:
            if row.failed_records > 0:
                errors_path = dest.parent / inbox.errors_name(dest.name)
                try:
                    ingest.write_errors_csv(conn, row.id, dest.parent, dest.name, dir_fd=fd,
                                            replace=False)
                except FileExistsError:
                    pass  # written before a crash
                except OSError as exc:
                    (log.debug if quiet else log.error)(
                        "could not write %s: %s", shown(errors_path), _reason(exc))
                    errors_path = None
        finally:
            if fd is not None:
                os.close(fd)
        # the file may have been replaced meanwhile (writing the errors file takes a while):
        # never move a file that was not read as this job's
        stored = jobs_sql.source_identity(conn, row.id)
        if stored is not None and not os.path.lexists(dest):
            try:
                now = identity(os.lstat(src))
            except OSError:
                now = stored
            if now != stored:
                raise _Replaced(f"{shown(src)} was replaced")
        if not inbox.finish_move(src, dest, self.import_dir):
            raise FileNotFoundError(f"{shown(src)} is gone")
        return errors_path

    def _cannot_move(self, conn: Any, row: jobs_sql.ImportJob, src: Path, problem: str,
                     dest: Path | None = None) -> None:
        """Say once why the file stays in the inbox, and never import it again."""
        try:
            st = os.lstat(src)
        except OSError:
            return
        ident = identity(st)
        try:  # linked into place already, only its inbox name could not be removed
            d = os.lstat(dest) if dest is not None else None
        except OSError:
            d = None
        keep = dest if d is not None and (d.st_dev, d.st_ino) == (st.st_dev, st.st_ino) \
            else None
        what = "imported" if row.status == "completed" else "failed"
        reason = (f"{what}, but it could not be moved out of the import folder ({problem}); "
                  "it stays there and is not imported again")
        log.error("job %s: %s: %s", row.id, shown(src), reason)
        jobs_sql.mark_unmoved(conn, row.id, ident, reason,
                              result_path=str(keep) if keep is not None else None)
        self._unmoved[ident] = row.id

    def _retry_unmoved(self, conn: Any, job_id: str, ident: str, src: Path) -> None:
        """Move a file left in the inbox now that its folder may be usable (quietly)."""
        row = jobs_sql.get_job(conn, job_id)
        if row is None:
            self._unmoved.pop(ident, None)
            jobs_sql.clear_unmoved(conn, job_id)
            return
        sub = inbox.PROCESSED if row.status == "completed" else inbox.FAILED
        if inbox.folder_problem(self.import_dir) is not None:
            return
        try:
            dest = (Path(row.result_path) if row.result_path
                    else inbox.unique_destination(self.import_dir / sub, src.name))
            jobs_sql.set_result_path(conn, job_id, str(dest))
            self._move(conn, row, src, dest, quiet=True)
        except (OSError, PulseError) as exc:
            log.debug("job %s: still cannot move %s: %s", job_id, shown(src), exc)
            jobs_sql.set_result_path(conn, job_id, row.result_path)
            return
        self._unmoved.pop(ident, None)
        jobs_sql.clear_unmoved(conn, job_id)
        log.info("job %s: %s moved to %s at last", job_id, shown(src), shown(dest))

    def _run_hooks(self, conn: Any, finished: ImportFinished) -> None:
        ctx = JobContext(conn=conn, settings=self.settings, clock=self.clock,
                         shared=self._shared, should_stop=self._should_stop_import,
                         log=logging.getLogger("pulse_tui.worker.after_import"))
        for hook in self.after_import:
            try:
                hook(ctx, finished)
            except Exception:  # noqa: BLE001 - hooks are isolated from each other
                log.exception("after-import hook %r failed for job %s", hook, finished.job_id)
                rollback_quietly(conn)  # a hook that failed inside its transaction


class _Replaced(PulseError):
    """The job's file is not under its name any more (another file is)."""


def _reason(exc: BaseException) -> str:
    """One line in our words for a file-system error."""
    if isinstance(exc, PulseError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _write_errors(conn: Any, row: jobs_sql.ImportJob, target: Path) -> Path | None:
    """NAME.errors.csv beside the moved file, via the importer's writer (atomic replace)."""
    from pulse_tui import ingest

    return ingest.write_errors_csv(conn, row.id, target.parent, target.name)


__all__ = [
    "EventCallback",
    "WorkerService",
    "retry_failed_file",
    "retry_failed_job",
]
