"""One small connection shape over both ClickHouse clients: ``chdb`` (embedded, one process)
and ``clickhouse-connect`` (a server over HTTP). Values always travel as bound parameters
(``{name:Type}`` placeholders) or as Arrow columns for inserts, never spliced into SQL text.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from pulse_tui.config import redact_url
from pulse_tui.errors import DatabaseError, PulseError

MISSING_EXTRA = ("the events store {url} needs ClickHouse support, which is not installed: "
                 "pip install 'pulse-tui[clickhouse]'")
DEFAULT_DATABASE = "pulse"
log = logging.getLogger("pulse_tui.clickhouse")


class CHConn(Protocol):
    database: str
    url: str  # redacted: safe to show

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        ...

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        ...

    def bulk_command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """``command`` for the import's bulk ``INSERT ... SELECT`` (the embedded engine holds
        its background merges off while it runs)."""
        ...

    def insert(self, table: str, columns: dict[str, tuple[str, list[Any]]]) -> None:
        """Insert columns given as name -> (arrow type name, values)."""
        ...

    def lines_source(self, fd: int, compressed: bool) -> Any:
        """A context manager giving SQL that reads the lines of the open file ``fd`` (gzip
        when ``compressed``) as one String column ``line`` (the import's fast path)."""
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class Target:
    scheme: str
    path: str  # chdb: the directory
    host: str
    port: int
    user: str
    password: str
    database: str


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    if scheme == "chdb":
        db = query.get("database", [DEFAULT_DATABASE])[0]
        return Target(scheme, parts.path, "", 0, "", "", db)
    db = unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    secure = scheme == "clickhouses"
    return Target(scheme, "", parts.hostname or "", parts.port or (8443 if secure else 8123),
                  unquote(parts.username or "default"), unquote(parts.password or ""), db)


def _arrow_table(columns: dict[str, tuple[str, list[Any]]]) -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "uint64": pa.uint64()}
    return pa.table({name: pa.array(values, types[t]) for name, (t, values) in columns.items()})


# ---------------------------------------------------------------- chdb (embedded)
class _Embedded:
    """The process's one embedded engine (chdb refuses a second directory in one process)
    and the lock file that keeps other processes out of its directory (SPEC 10)."""

    lock = threading.Lock()
    # one query at a time on the engine, waited for here with the GIL released: chdb waits
    # for its own engine lock holding the GIL, and an insert from Python(arrow_rows) needs the
    # GIL inside that lock, so two threads querying at once (the TUI's panes, its embedded
    # worker, the demo's traffic) would otherwise deadlock
    query_lock = threading.Lock()
    path: str | None = None
    session: Any = None
    lock_fd: int | None = None
    users = 0


def _take_dir_lock(path: Path, url: str) -> int:
    path.mkdir(parents=True, exist_ok=True)
    lock_path = path / "pulse-tui.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise DatabaseError(
            f"the embedded events store {url} is open in {holder}; chdb allows one process at "
            "a time (the TUI runs its worker inside): close it, or use a ClickHouse server "
            "(clickhouse://...) for several processes") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} ({' '.join(_argv())})".encode(), 0)
    return fd


def _argv() -> list[str]:
    import sys

    return [Path(sys.argv[0]).name, *sys.argv[1:3]] if sys.argv else ["python"]


def _quoted(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ",".join(_quoted(x) for x in v) + "]"
    text = str(v).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def chdb_params(params: dict[str, Any]) -> dict[str, str]:
    """Parameters in ClickHouse's text form (chdb passes them on as given): arrays quoted
    element by element, NULL as \\N; the server parses them by the placeholder's type."""
    out = {}
    for k, v in params.items():
        if v is None:
            out[k] = "\\N"
        elif isinstance(v, list | tuple):
            out[k] = _quoted(list(v))
        elif isinstance(v, bool):
            out[k] = "1" if v else "0"
        elif isinstance(v, str):
            out[k] = v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        else:
            out[k] = str(v)
    return out


class ChdbConn:
    def __init__(self, target: Target, url: str) -> None:
        try:
            from chdb.session import Session
        except ImportError as exc:
            raise PulseError(MISSING_EXTRA.format(url=url)) from exc
        self.url = url
        self.database = target.database
        path = str(Path(target.path))
        with _Embedded.lock:
            if _Embedded.session is not None and _Embedded.path != path:
                raise DatabaseError(
                    f"{url}: this process already uses the embedded store chdb://{_Embedded.path}"
                    " (chdb opens one directory per process)")
            if _Embedded.session is None:
                fd = _take_dir_lock(Path(path), url)
                try:
                    session = Session(path)
                    session.query("SET output_format_json_quote_64bit_integers = 0")
                    session.query("SET output_format_json_quote_denormals = 0")
                except Exception as exc:
                    os.close(fd)
                    raise DatabaseError(f"{url}: cannot open the embedded store ({exc})") from exc
                _Embedded.session, _Embedded.path, _Embedded.lock_fd = session, path, fd
            _Embedded.users += 1
        self._session = _Embedded.session
        self._closed = False

    def _query(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> Any:
        with _Embedded.query_lock:  # one query at a time: see _Embedded.query_lock
            try:
                return self._session.query(sql, fmt, params=chdb_params(params or {}))
            except Exception:
                # chdb hands what a failed query had written (e.g. its JSON header) out with
                # the next query's result: a throwaway query takes it
                try:
                    self._session.query("SELECT 1", "TSV")
                except Exception:  # noqa: BLE001, S110 - the first error is the one to raise
                    pass
                raise

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        res = self._query(sql, "JSONCompact", params)
        raw = res.bytes() if hasattr(res, "bytes") else bytes(res)
        if not raw:
            return []
        return [tuple(r) for r in json.loads(raw)["data"]]

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._query(sql, "TSV", params)

    def bulk_command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """``command`` with the engine's background merges held off while it runs (one
        chunk's ``INSERT`` of a large file, bulk.py). On 2 cores, merging the parts of a
        file's first chunks while the next were inserted took a fifth of a 10M-row import's
        time (15.2 s -> 12.3 s), and merged the same rows again and again: the merges left
        once the file is stored cost less (import and merges after it: 40.6 -> 35.6 s of CPU;
        docs/benchmarks.md). ``SYSTEM STOP MERGES`` stops every merge and mutation of the
        engine (one that is running is cancelled), so it is sent and undone inside one hold
        of the query lock: no other query (a cleanup's mutation, which would wait for the
        merge pool forever) runs while merges are stopped. The stop lives in this process's
        memory only: a crash leaves nothing stopped."""
        with _Embedded.query_lock:
            session = self._session
            try:
                session.query("SYSTEM STOP MERGES", "TSV")
                session.query(sql, "TSV", params=chdb_params(params or {}))
            except BaseException:
                try:  # see _query: a throwaway query takes what the failed one wrote
                    session.query("SELECT 1", "TSV")
                except Exception:  # noqa: BLE001, S110 - the first error is the one to raise
                    pass
                raise
            finally:
                _start_merges(session)

    def insert(self, table: str, columns: dict[str, tuple[str, list[Any]]]) -> None:
        arrow_rows = _arrow_table(columns)  # noqa: F841 - read by name by chdb's Python()
        names = ", ".join(columns)
        self._query(f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(arrow_rows)",
                    "TSV")

    @contextmanager
    def lines_source(self, fd: int, compressed: bool) -> Iterator[str]:
        # the engine runs in this process: it opens the very file the importer opened (a
        # rename or a new file at its path changes nothing), from its start
        yield (f"file('/proc/self/fd/{int(fd)}', 'LineAsString', 'line String', "
               f"'{'gzip' if compressed else 'none'}')")

    @contextmanager
    def chunk_source(self, fd: int, start: int, end: int) -> Iterator[str]:
        """SQL reading the lines of bytes [start, end) of the open file ``fd`` (a chunk of whole
        lines of a plain file, bulk.py), copied by the kernel into an unnamed temporary file."""
        with tempfile.TemporaryFile(prefix="pulse-chunk-") as tmp:
            pos, left = start, end - start
            while left > 0:
                try:
                    done = os.copy_file_range(fd, tmp.fileno(), left, pos)
                except OSError:  # a kernel or file system without it
                    data = os.pread(fd, min(left, 1 << 20), pos)
                    done = os.write(tmp.fileno(), data)
                if done <= 0:
                    raise DatabaseError("the file changed while it was imported")
                pos, left = pos + done, left - done
            with self.lines_source(tmp.fileno(), False) as sql:
                yield sql

    def close(self) -> None:
        """The engine stays up for the process (chdb cannot reopen another directory after);
        the directory lock is released when the last user closes."""
        if self._closed:
            return
        self._closed = True
        with _Embedded.lock:
            _Embedded.users -= 1


def _start_merges(session: Any) -> None:
    """``SYSTEM START MERGES`` after ``bulk_command``; tried twice, and said loudly if it
    fails (merges left stopped would make every later mutation of this process wait)."""
    for attempt in (1, 2):
        try:
            session.query("SYSTEM START MERGES", "TSV")
            return
        except Exception as exc:  # noqa: BLE001 - logged; the caller's error, if any, is raised
            log.error("could not start the embedded engine's merges again (try %d): %s",
                      attempt, exc)


def release_embedded() -> None:
    """Shut the embedded engine down and free its directory (tests, process end)."""
    with _Embedded.lock:
        if _Embedded.session is not None:
            _Embedded.session.close()
        if _Embedded.lock_fd is not None:
            os.close(_Embedded.lock_fd)
        _Embedded.session = _Embedded.path = _Embedded.lock_fd = None
        _Embedded.users = 0


# ---------------------------------------------------------------- a server (clickhouse-connect)
class ServerConn:
    def __init__(self, target: Target, url: str) -> None:
        try:
            import clickhouse_connect
        except ImportError as exc:
            raise PulseError(MISSING_EXTRA.format(url=url)) from exc
        self.url = url
        self.database = target.database
        try:
            self._client = clickhouse_connect.get_client(
                host=target.host, port=target.port, username=target.user,
                password=target.password, secure=target.scheme == "clickhouses",
                settings={"mutations_sync": 2})
        except Exception as exc:  # its messages may carry the URL: say it in our words
            raise DatabaseError(f"cannot connect to the events store {url}: "
                                f"{type(exc).__name__}") from None

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._client.query(sql, parameters=params or {}).result_rows]

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._client.command(sql, parameters=params or {})

    def bulk_command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """``command`` (a shared server's merges are its own business)."""
        self.command(sql, params)

    def insert(self, table: str, columns: dict[str, tuple[str, list[Any]]]) -> None:
        self._client.insert_arrow(table, _arrow_table(columns))

    @contextmanager
    def lines_source(self, fd: int, compressed: bool) -> Iterator[str]:
        # the server cannot read our file: its bytes are streamed as they are (gzip as the
        # request's Content-Encoding) into a staging table of lines, dropped afterwards
        table = f"`{self.database}`.`pulse_stage_{uuid.uuid4().hex}`"
        self.command(f"CREATE TABLE {table} (line String) ENGINE = MergeTree ORDER BY tuple()")
        try:
            def chunks() -> Iterator[bytes]:
                pos = 0
                while chunk := os.pread(fd, 1 << 20, pos):
                    pos += len(chunk)
                    yield chunk

            self._client.raw_insert(table, ["line"], insert_block=chunks(), fmt="LineAsString",
                                    compression="gzip" if compressed else None)
            yield table
        finally:
            self.command(f"DROP TABLE IF EXISTS {table}")

    def close(self) -> None:
        self._client.close()


def connect_clickhouse(url: str) -> CHConn:
    """A connection for a ``chdb://``, ``clickhouse://`` or ``clickhouses://`` events store."""
    shown = redact_url(url)
    target = parse_target(url)
    if target.scheme == "chdb":
        return ChdbConn(target, shown)
    return ServerConn(target, shown)
