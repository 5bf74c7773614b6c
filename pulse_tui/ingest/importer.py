"""Importing one CSV file into the database as an import job (batches, checkpoints, resume)."""

from __future__ import annotations

import csv
import errno
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pulse_tui import safefs
from pulse_tui.clock import Clock
from pulse_tui.ingest import kinds
from pulse_tui.ingest.parse import (
    Batch,
    CsvFile,
    FileRejected,
    base_name,
    iter_batches,
    kind_from_path,
    make_row_parser,
    map_header,
    normalise_name,
)
from pulse_tui.store import imports as store
from pulse_tui.store.events import newest_seq

log = logging.getLogger("pulse_tui.ingest")


class EventsWriter(Protocol):
    """The import writers of an events backend (backend.interface.EventsBackend)."""

    def write_import_batch(self, kind: str, job_id: str, rows: Any, rejects: Any,
                           checkpoint: Any, now_ms: int, lines: Any = ()) -> store.BatchOutcome:
        ...

    def import_stream(self, kind: str) -> Callable[[str, int], Any] | None:
        ...

DEFAULT_BATCH_SIZE = 100_000  # rows per write transaction (PULSE_IMPORT_BATCH_ROWS)
MAX_BATCH_ROWS = 1_000_000
BATCH_ROWS_ENV = "PULSE_IMPORT_BATCH_ROWS"
PARSE_CHUNK_ROWS = 10_000  # events are parsed and inserted in chunks of this many rows
MAX_TX_SECONDS = 3.0  # ... and a transaction commits after this long even if not full
# when sharing the write lock (pause_between_tx > 0): smaller parse chunks, and transactions
# sized from the previous one so that each holds the lock about max_tx_seconds in all, or
# QUIET_TX_FACTOR times that while no other program writes events
SHARED_CHUNK_ROWS = 2_000
SHARED_FIRST_TX_ROWS = 5_000
QUIET_TX_FACTOR = 3
QUIET_AFTER_SECONDS = 10.0  # ... that is, none stored during the pauses of the last 10 s


CHANGED_MESSAGE = ("the file changed while it was imported; it stays in the import folder "
                   "and is imported again as a new job")


def batch_rows_setting(default: int = DEFAULT_BATCH_SIZE) -> int:
    """Rows per import transaction: PULSE_IMPORT_BATCH_ROWS when set to a positive integer."""
    raw = os.environ.get(BATCH_ROWS_ENV, "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        return default
    return min(int(raw), MAX_BATCH_ROWS)  # a huge number would read a whole file into memory


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """Reported after each committed batch."""

    job_id: str
    records: int  # data records done (all batches, including a resumed job's earlier ones)
    processed: int
    duplicates: int
    failed: int
    bytes_done: int  # position in the file on disk
    bytes_total: int


@dataclass(slots=True)
class ImportResult:
    """What happened to one file. ``status``: completed | failed | processing (stopped early)."""

    job_id: str
    path: Path
    kind: str
    status: str
    site_id: str = ""
    processed: int = 0
    duplicates: int = 0
    failed: int = 0
    message: str | None = None
    unknown_columns: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    # the file under ``path`` is no longer what the job read: replaced (the job read the old
    # file to its end) or changed while read (the job failed); either way the file now there
    # is a new one, to be imported by a new job, and must not be moved as this job's
    changed: bool = False

    @property
    def total(self) -> int:
        return self.processed + self.duplicates + self.failed

    @property
    def interrupted(self) -> bool:
        """should_stop() ended the run; the job stays resumable with the same job_id."""
        return self.status == "processing"


def _result_from_job(job: store.ImportJob, path: Path, elapsed: float,
                     unknown: list[str] | None = None) -> ImportResult:
    return ImportResult(
        job_id=job.id, path=path, kind=job.type, status=job.status, site_id=job.site_id,
        processed=job.processed_records, duplicates=job.duplicate_records,
        failed=job.failed_records, message=job.message, unknown_columns=unknown or [],
        elapsed=elapsed,
    )


def import_file(
    conn: sqlite3.Connection,
    path: str | Path,
    *,
    kind: str | None = None,
    site_id: str | None = None,
    clock: Clock,
    job_id: str | None = None,
    progress: Callable[[ImportProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    batch_size: int | None = None,
    max_tx_seconds: float = MAX_TX_SECONDS,
    pause_between_tx: float = 0.0,
    events: EventsWriter | None = None,
    follow_symlinks: bool = True,
    inside: Path | None = None,
) -> ImportResult:
    """Import one CSV / .csv.gz file of ``kind`` (a name in ``ingest.kinds.KINDS``) as a job.

    - ``kind`` None: told from the parent folder / file name prefix, else from the header.
    - ``site_id``: the site for rows without one (events then need no site_id column); also
      the job's site_id (else the first row's, else '').
    - ``job_id``: None creates a new job (a uuid hex). An existing id whose job is
      'uploading'/'processing' RESUMES from its checkpoint with exact counts; a finished job
      is returned as it is. An unknown id creates the job under that id.
    - Each batch of ``batch_size`` records (default: env PULSE_IMPORT_BATCH_ROWS, else
      DEFAULT_BATCH_SIZE) is one transaction: sites, rows, derived tables
      (sessions, first-seen, rollups), rejects and the job's counters + checkpoint. Events
      are parsed (in a thread) and inserted in chunks of PARSE_CHUNK_ROWS inside that
      transaction, which also commits early after MAX_TX_SECONDS so the write lock is never
      held for long.
    - ``should_stop()`` is checked between chunks (events) or batches; when it returns True the job is left in
      'processing' and the result has ``interrupted`` True (call again with the job_id).
    - ``progress(ImportProgress)`` is called after each batch.
    - ``max_tx_seconds`` / ``pause_between_tx``: a transaction commits after that long of
      writing, and the importer then sleeps that long before the next one, so other writers
      (live traffic, another importer) get the write lock in between. The worker sets both;
      a one-shot CLI import keeps the long transactions for throughput. With a pause, event
      transactions start at SHARED_FIRST_TX_ROWS rows and are then sized (up to
      ``batch_size``) so that each holds the lock about ``max_tx_seconds`` in all, whatever
      the machine's speed (:func:`next_tx_rows`); QUIET_TX_FACTOR times that once no other
      connection stored events during the pauses of the last QUIET_AFTER_SECONDS (no live
      traffic is waiting).

    - ``events``: the events backend the rows go through (None: the SQLite one over ``conn``).
      A kind it streams (``events.import_stream``: SQLite's events) is written several parsed
      chunks per transaction, paced as above; any other batch is handed to
      ``events.write_import_batch`` (which moves the job's checkpoint in ``conn`` after storing
      the rows); ``conn`` keeps the job, its rejects and checkpoint.
      A fresh events job first offers the whole file to ``events.import_whole_file`` when it
      has one (ClickHouse's fast path, backend/clickhouse/bulk.py): it stores the file and
      moves the job to its end with the counts this importer would give, or declines and the
      file is read here as usual (``PULSE_IMPORT_FAST_PATH=0``: never offered).
    - ``follow_symlinks`` False: a symbolic link at ``path`` is refused (the worker's rule);
      ``inside`` (the import folder): a subfolder of it holding ``path`` is never a link.
    - The file is read through one descriptor; when its size, modification or change time
      moved while it was read (overwritten in place, truncated, appended), the job fails and
      the result has ``changed`` True (rows already stored stay; importing the file again
      counts them as duplicates). When the path names another file at the end (replaced by a
      rename), the job completes with what it read and ``changed`` is True. A resumed job
      whose file is not the one it started on fails with ``changed`` True.

    Returns an ImportResult; a file that cannot be imported at all gives status 'failed' with
    ``message`` (no exception). ``conn`` must be in autocommit mode (store.connection.connect).

    A database error (disk full, read-only, locked ...) is raised after the job is marked
    'failed' with that reason in our words, so it is never left 'processing' (what was
    committed before stays, with its checkpoint).
    """
    created: dict[str, str] = {}
    try:
        return _import_file(conn, path, kind=kind, site_id=site_id, clock=clock,
                            job_id=job_id, progress=progress, should_stop=should_stop,
                            batch_size=batch_size, max_tx_seconds=max_tx_seconds,
                            pause_between_tx=pause_between_tx,
                            events=events, follow_symlinks=follow_symlinks, inside=inside,
                            created=created)
    except sqlite3.Error as exc:
        if "job_id" in created:
            _fail_after_error(conn, created["job_id"], exc, clock)
        raise


def _fail_after_error(conn: sqlite3.Connection, job_id: str, exc: sqlite3.Error,
                      clock: Clock) -> None:
    """Mark the job failed with the database error's reason, if the database still lets us
    (a job that stays 'processing' is resumed from its checkpoint by the next worker start)."""
    from pulse_tui.store.connection import describe_error

    reason = describe_error(exc)
    try:
        job = store.get_job(conn, job_id)
        if job is not None and job.status not in ("completed", "failed"):
            store.fail_job(conn, job_id, reason, clock.now_ms())
    except sqlite3.Error as again:
        log.error("import job %s: %s; could not mark it failed either (%s)", job_id, reason,
                  again)


def _import_file(
    conn: sqlite3.Connection,
    path: str | Path,
    *,
    kind: str | None,
    site_id: str | None,
    clock: Clock,
    job_id: str | None,
    progress: Callable[[ImportProgress], None] | None,
    should_stop: Callable[[], bool] | None,
    batch_size: int | None,
    max_tx_seconds: float,
    pause_between_tx: float,
    events: EventsWriter | None,
    follow_symlinks: bool,
    inside: Path | None,
    created: dict[str, str],
) -> ImportResult:
    started = time.monotonic()
    batch_size = batch_size or batch_rows_setting()
    path = Path(path)
    now_ms = clock.now_ms()
    if kind is not None and kind not in kinds.KINDS:
        raise ValueError(f"unknown import kind {kind!r}")
    job = store.get_job(conn, job_id) if job_id else None
    if job is not None and job.status in ("completed", "failed"):
        return _result_from_job(job, path, time.monotonic() - started)
    if job is not None:
        kind = job.type if job.type in kinds.KINDS else kind
    rejected: FileRejected | None = None
    try:
        src: CsvFile | None = CsvFile(path, follow_symlinks=follow_symlinks, inside=inside)
    except FileRejected as exc:
        src, rejected = None, exc
    opened = src.fstat() if src is not None else None
    if opened is not None:
        file_size = opened.st_size
    else:
        try:
            file_size = os.lstat(path).st_size
        except OSError:
            file_size = 0
    identity = safefs.identity(opened) if opened is not None else None
    guessed = kind or kind_from_path(path)
    if job is None:
        job_id = job_id or uuid.uuid4().hex
        store.create_job(conn, job_id=job_id, kind=guessed or "", site_id=site_id or "",
                         file_name=path.name, file_size=file_size,
                         source_path=str(path), now_ms=now_ms, identity=identity)
        job = store.get_job(conn, job_id)
        assert job is not None
    elif identity is not None:
        started_on = store.source_identity(conn, job.id)
        if started_on is not None and started_on != identity:
            assert src is not None
            src.close()
            store.fail_job(conn, job.id, "the file changed before its import finished; "
                           "the new file is imported as a new job", clock.now_ms())
            result = _finish(conn, job.id, path, started)
            result.changed = True
            return result
    assert job_id is not None
    created["job_id"] = job_id

    if src is None:
        assert rejected is not None
        store.fail_job(conn, job_id, str(rejected), clock.now_ms())
        return _finish(conn, job_id, path, started)
    assert opened is not None
    with src:
        try:
            kind, names = src.read_header(guessed)
            spec = kinds.get(kind)
            if (site_id is None and job.site_id and spec.site_required
                    and "site_id" not in {normalise_name(n) for n in names}):
                site_id = job.site_id  # resuming a job started with --site
            header = map_header(kind, names, site_id=site_id)
        except FileRejected as exc:
            store.fail_job(conn, job_id, str(exc), clock.now_ms(), kind=guessed)
            return _finish(conn, job_id, path, started)
        unknown = header.unknown + header.ignored_duplicates
        note = f"unknown columns ignored: {', '.join(unknown)}" if unknown else None
        if unknown and job.checkpoint_rows == 0:
            log.info("%s: unknown columns ignored: %s", safefs.shown(path.name),
                     safefs.shown(", ".join(unknown)))
        store.start_job(conn, job_id, kind=kind, now_ms=now_ms, note=note)
        if job.checkpoint_rows > 0 or job.checkpoint_offset > 0:
            try:
                src.seek(job.checkpoint_offset, job.checkpoint_line)
            except FileRejected as exc:
                store.fail_job(conn, job_id, f"cannot resume {path.name}: {exc}",
                               clock.now_ms())
                return _finish(conn, job_id, path, started)
        # the fast path's SQL is written for the built-in events kind's columns (bulk.py)
        if spec is kinds.EVENTS and events is not None and job.checkpoint_rows == 0 \
                and job.checkpoint_offset == 0:
            whole = _whole_file(src, events, job_id, header, site_id, now_ms, file_size)
            if whole is not None:
                outcome, cp = whole
                if progress is not None:
                    progress(ImportProgress(job_id, cp.rows, outcome.processed,
                                            outcome.duplicates, outcome.failed, file_size,
                                            file_size))
                return _complete(conn, job_id, path, started, src.fstat(), opened, unknown,
                                 clock)
        parse = make_row_parser(header, site_id=site_id, now_ms=now_ms)
        # every row goes through the events interface: the store elsewhere, or the SQLite
        # implementation over ``conn`` (its events writer streams several parsed chunks into
        # one transaction: import_stream)
        if events is None:  # (imported here: backend.sqlite reads ingest.kinds at import)
            from pulse_tui.backend.wiring import backends_on

            events = backends_on(conn).events
        writer: EventsWriter = events
        records = job.checkpoint_rows
        processed, dups, failed = job.processed_records, job.duplicate_records, job.failed_records
        sharing = pause_between_tx > 0
        chunk = batch_size
        # rows of a streamed writer going into this file: parsed in chunks, written in
        # transactions of batch_size rows (or MAX_TX_SECONDS of writing)
        stream_of = getattr(writer, "import_stream", None)  # (a writer without streams)
        streamed = stream_of(spec.name) if stream_of is not None else None
        if streamed is not None:
            chunk = min(batch_size, SHARED_CHUNK_ROWS if sharing else PARSE_CHUNK_ROWS)
        tx_rows = min(batch_size, SHARED_FIRST_TX_ROWS) if sharing else batch_size
        tx_seconds = max_tx_seconds
        others_seen = float("-inf")  # the first pause tells whether live traffic waits
        batches = _prefetch(iter_batches(src, header, parse, chunk))
        tx: Any = None  # an ImportStream (backend.interface)
        tx_started = 0.0
        try:
            for batch in batches:
                if streamed is not None:
                    # the checkpoint is the last chunk's
                    if tx is None:
                        tx = streamed(job_id, now_ms)
                        tx_started = time.monotonic()
                    _add(tx, batch)
                    more = not batch.final
                    stop = should_stop is not None and should_stop()
                    if more and not stop and tx.records < tx_rows and (
                            time.monotonic() - tx_started < tx_seconds):
                        continue
                    n_tx = tx.records
                    outcome, tx = tx.commit(), None
                    held = time.monotonic() - tx_started
                    if more and not stop and sharing:
                        # let waiting writers take the lock; while none of them writes events
                        # (live traffic), the next transaction may hold it longer
                        if _events_written_during(conn, pause_between_tx):
                            others_seen = time.monotonic()
                        quiet = time.monotonic() - others_seen >= QUIET_AFTER_SECONDS
                        tx_seconds = max_tx_seconds * (QUIET_TX_FACTOR if quiet else 1)
                        tx_rows = next_tx_rows(n_tx, held, tx_seconds, chunk, batch_size)
                    done = outcome, n_tx, more
                else:
                    outcome = _write(job_id, spec, batch, now_ms, writer)
                    stop = should_stop is not None and should_stop()
                    done = outcome, batch.records, not batch.final
                outcome, n_records, more = done
                records += n_records
                processed += outcome.processed
                dups += outcome.duplicates
                failed += outcome.failed
                if progress is not None:
                    progress(ImportProgress(job_id, records, processed, dups, failed,
                                            batch.bytes_read, file_size))
                if stop and more:  # more may follow: leave it resumable
                    result = _finish(conn, job_id, path, started)
                    result.unknown_columns = unknown
                    return result
        except (OSError, EOFError, FileRejected) as exc:
            # the file became unreadable mid-way (truncated gzip, I/O error) or passed a limit
            # (line length, expansion): what was written so far is committed with its
            # checkpoint, the job fails with the reason
            if tx is not None:
                tx.commit()
                tx = None
            if _changed_while_read(src.fstat(), opened):  # e.g. a .gz truncated mid-way
                store.fail_job(conn, job_id, CHANGED_MESSAGE, clock.now_ms())
                result = _finish(conn, job_id, path, started)
                result.changed = True
                return result
            reason = str(exc) if isinstance(exc, FileRejected) else (
                f"cannot read {path.name}: {getattr(exc, 'strerror', None) or 'read error'}")
            store.fail_job(conn, job_id, reason, clock.now_ms())
            return _finish(conn, job_id, path, started)
        finally:
            if tx is not None:
                tx.rollback()
            batches.close()
        return _complete(conn, job_id, path, started, src.fstat(), opened, unknown, clock)


FAST_PATH_MAX_BYTES = 2 * 1024 ** 3  # larger files keep the Python path's stop checks
FAST_PATH_ENV = "PULSE_IMPORT_FAST_PATH"  # "0": always the Python path (tests, benchmarks)


def _whole_file(src: CsvFile, events: Any, job_id: str,
                header: Any, site_id: str | None, now_ms: int, file_size: int
                ) -> tuple[store.BatchOutcome, store.Checkpoint] | None:
    """The events store's fast path for a fresh job (ClickHouse reads, checks and stores the
    whole file: backend/clickhouse/bulk.py), when it has one and the header is the file's
    first line alone; None when there is none or it declines (nothing stored). It is one
    step: ``should_stop`` is next asked after it (FAST_PATH_MAX_BYTES bounds how long)."""
    fast = getattr(events, "import_whole_file", None)
    if fast is None or os.environ.get(FAST_PATH_ENV, "").strip() == "0":
        return None
    if src.line != 1 or file_size > FAST_PATH_MAX_BYTES:
        return None
    got = fast(job_id, src.fileno(), compressed=src.compressed, header=header,
               header_text=src.first_line_text(), site_id=site_id, now_ms=now_ms)
    return got  # type: ignore[no-any-return]


def _changed_while_read(now: os.stat_result, then: os.stat_result) -> bool:
    """Size or modification time moved, or the change time did without the file being
    linked or unlinked (a rename over it unlinks the file read, which is no change of it)."""
    if (now.st_size, now.st_mtime_ns) != (then.st_size, then.st_mtime_ns):
        return True
    return now.st_nlink == then.st_nlink and now.st_ctime_ns != then.st_ctime_ns


def _same_file(path: Path, opened: os.stat_result) -> bool:
    """Whether ``path`` still names the file that was read (not replaced by a rename)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


def _events_written_during(conn: sqlite3.Connection, pause: float) -> bool:
    """Sleep ``pause`` seconds outside any transaction; True when another connection stored
    events meanwhile (rowids are never reused: cleanup keeps the top row)."""
    before = newest_seq(conn)
    time.sleep(pause)
    return newest_seq(conn) != before


def next_tx_rows(rows: int, held: float, target: float, lowest: int, highest: int) -> int:
    """Rows for the next transaction so that it holds the write lock about ``target`` seconds
    (insert, derived tables and COMMIT), from the last one's ``rows`` in ``held`` seconds: at
    most twice as many as last time, within [lowest, highest]."""
    if rows <= 0 or held <= 0:
        return max(lowest, min(highest, rows))
    aim = int(rows * target / held)
    return max(lowest, min(highest, aim, 2 * rows))


_END = object()


def _prefetch(batches: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """Parse the next batch in a thread while this one is written (sqlite releases the GIL).

    Exceptions from parsing are re-raised here; closing the generator stops the thread.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        # blocking puts (no polling): the consumer drains the queue when it stops early
        try:
            for batch in batches:
                q.put(batch)
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            if not stop.is_set():
                q.put(exc)

    thread = threading.Thread(target=produce, name="pulse-import-parse", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # it ends after the batch it is parsing
            try:
                while True:
                    q.get_nowait()
            except queue.Empty:
                pass
            thread.join(0.05)


def _add(tx: Any, batch: Batch) -> None:
    tx.add(batch.rows, [(r.line, r.column, r.value, r.reason) for r in batch.rejects],
           store.Checkpoint(batch.records, batch.end_offset, batch.end_line))


def _write(job_id: str, kind: kinds.ImportKind, batch: Batch, now_ms: int,
           writer: EventsWriter) -> store.BatchOutcome:
    """One batch through the events backend, which looks the kind's writer up by name."""
    cp = store.Checkpoint(batch.records, batch.end_offset, batch.end_line)
    rejects = [(r.line, r.column, r.value, r.reason) for r in batch.rejects]
    return writer.write_import_batch(kind.name, job_id, batch.rows, rejects, cp, now_ms,
                                     batch.lines)


def _complete(conn: sqlite3.Connection, job_id: str, path: Path, started: float,
              now_stat: os.stat_result, opened: os.stat_result, unknown: list[str],
              clock: Clock) -> ImportResult:
    """The file was read to its end: the job fails if the file changed while it was read,
    else it is finished; its result either way."""
    if _changed_while_read(now_stat, opened):
        store.fail_job(conn, job_id, CHANGED_MESSAGE, clock.now_ms())
        result = _finish(conn, job_id, path, started)
        result.changed = True
        return result
    store.finish_job(conn, job_id, clock.now_ms())
    result = _finish(conn, job_id, path, started)
    result.unknown_columns = unknown
    result.changed = not _same_file(path, opened)
    return result


def _finish(conn: sqlite3.Connection, job_id: str, path: Path, started: float) -> ImportResult:
    job = store.get_job(conn, job_id)
    assert job is not None
    return _result_from_job(job, path, time.monotonic() - started)


# ------------------------------------------------------------------------------ errors file

_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: object) -> str:
    """A CSV cell safe for spreadsheets (OWASP): a leading = + - @ tab or CR gets a ' prefix."""
    text = "" if cell is None else str(cell)
    if text.startswith(_DANGEROUS):
        return "'" + text
    return text


def errors_file_name(path: str | Path) -> str:
    """``<name without extension>.errors.csv`` (events.csv.gz -> events.errors.csv); a name
    that would be too long for the file system is cut and given a short hash
    (:func:`pulse_tui.safefs.fit_name`)."""
    return safefs.fit_name(base_name(Path(path)), ".errors.csv")


def write_errors_csv(conn: sqlite3.Connection, job_id: str, folder: str | Path,
                     source_name: str | Path, *, dir_fd: int | None = None,
                     replace: bool = True) -> Path | None:
    """Write the job's rejected rows to ``folder/<name>.errors.csv``; None when there are none.

    Header ``line,column,value,reason``; cells are neutralised. Written to a new file under an
    unpredictable name (never through a link), then renamed over an existing file of that
    name (``replace``) or linked to the name, never replacing (FileExistsError when taken).
    ``dir_fd``: the folder already opened (the worker opens it without following links).
    """
    if store.reject_count(conn, job_id) == 0:
        return None
    folder = Path(folder)
    name = errors_file_name(source_name)
    own = dir_fd is None
    at = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if dir_fd is None \
        else dir_fd
    try:
        fd, tmp = safefs.create_temp(at)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["line", "column", "value", "reason"])
                for line, column, value, reason in store.iter_rejects(conn, job_id):
                    writer.writerow([line, neutralise(column), neutralise(value),
                                     neutralise(reason)])
                fh.flush()
                os.fsync(fh.fileno())
            if replace:
                os.replace(tmp, name, src_dir_fd=at, dst_dir_fd=at)
            else:
                try:
                    os.link(tmp, name, src_dir_fd=at, dst_dir_fd=at, follow_symlinks=False)
                except FileExistsError:
                    raise
                except OSError:  # a file system without hard links: rename if still free
                    if safefs.lexists(name, at):
                        raise FileExistsError(errno.EEXIST, "exists", name) from None
                    os.rename(tmp, name, src_dir_fd=at, dst_dir_fd=at)
        finally:
            try:
                os.unlink(tmp, dir_fd=at)
            except FileNotFoundError:
                pass
    finally:
        if own:
            os.close(at)
    return folder / name
