"""The events import's fast path on ClickHouse (backend/clickhouse/bulk.py): when it takes a
file it stores exactly what the Python path stores (rows, values, counts, the job row, sites);
when anything is unusual it declines and the Python path gives its usual errors; a crash
between the insert and the job's checkpoint is retried with exact counts."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from pulse_tui.backend.clickhouse.backend import ClickHouseEvents
from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import Clock
from pulse_tui.ingest import import_file
from pulse_tui.ingest.importer import FAST_PATH_ENV
from tests.backend.chdb_support import fresh_chdb_url

NOW = 1_795_953_600_000
CLOCK = Clock(NOW)
ROOT = Path(__file__).resolve().parents[2]
HEADER = "event_id,site_id,event_type,timestamp_ms,session_id,user_id,url,referrer,country," \
         "device_type"
JOB_COLS = ("status", "processed_records", "duplicate_records", "failed_records",
            "total_records", "checkpoint_rows", "checkpoint_offset", "checkpoint_line", "site_id",
            "message", "type")
EVENT_COLS = ("event_id", "site_id", "event_type", "timestamp_ms", "session_id", "user_id",
              "url", "referrer", "country", "device_type", "created_at")


@contextmanager
def _spy() -> Iterator[list[Any]]:
    """Record what each fast-path attempt returned (None: declined)."""
    seen: list[Any] = []
    real = ClickHouseEvents.import_whole_file

    def spy(self: ClickHouseEvents, *args: Any, **kwargs: Any) -> Any:
        got = real(self, *args, **kwargs)
        seen.append(got)
        return got

    ClickHouseEvents.import_whole_file = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        ClickHouseEvents.import_whole_file = real  # type: ignore[method-assign]


@contextmanager
def _python_path() -> Iterator[None]:
    old = os.environ.get(FAST_PATH_ENV)
    os.environ[FAST_PATH_ENV] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ[FAST_PATH_ENV]
        else:
            os.environ[FAST_PATH_ENV] = old


def _import(b: Backends, path: Path, *, site: str | None = None, job: str = "job1"
            ) -> Any:
    return import_file(b.events.conn, path, kind="events", clock=CLOCK,  # type: ignore[attr-defined]
                       events=b.events, site_id=site, job_id=job)


def _state(b: Backends, job: str = "job1") -> dict[str, Any]:
    conn = b.events.conn  # type: ignore[attr-defined]
    ch = b.events.ch  # type: ignore[attr-defined]
    return {
        "job": conn.execute(f"SELECT {', '.join(JOB_COLS)} FROM import_jobs WHERE id = ?",
                            (job,)).fetchone(),
        "rejects": conn.execute("SELECT line, column_name, value, reason FROM import_rejects "
                                "WHERE job_id = ? ORDER BY line", (job,)).fetchall(),
        "sites": [r[0] for r in conn.execute("SELECT id FROM sites ORDER BY id")],
        "events": sorted(ch.rows(f"SELECT {', '.join(EVENT_COLS)} FROM "
                                 f"{b.events.t('events')}")),  # type: ignore[attr-defined]
        "ids": ch.rows(f"SELECT count() FROM {b.events.t('event_ids')}")[0][0],  # type: ignore[attr-defined]
    }


def _server_url() -> str:
    """A fresh database on the server PULSE_TEST_CLICKHOUSE_URL names (skipped without)."""
    url = os.environ.get("PULSE_TEST_CLICKHOUSE_URL", "")
    if not url:
        pytest.skip("PULSE_TEST_CLICKHOUSE_URL is not set: no ClickHouse server to test against")
    return urlunsplit(urlsplit(url)._replace(path=f"/t{uuid.uuid4().hex[:12]}"))


@pytest.fixture(params=["chdb", "clickhouse-server"])
def where(request: pytest.FixtureRequest) -> str:
    """Where the fast path runs: embedded (file() on the open descriptor) or a server (the
    file's bytes streamed into a staging table)."""
    if request.param == "clickhouse-server":
        _server_url()
    return str(request.param)


@contextmanager
def _two_stores(tmp: Path, where: str = "chdb") -> Iterator[tuple[Backends, Backends]]:
    fast = open_backends(tmp / "fast.db",
                         _server_url() if where == "clickhouse-server" else fresh_chdb_url())
    slow = open_backends(tmp / "slow.db", fresh_chdb_url())
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()


def _both(tmp: Path, data: bytes, name: str = "events.csv", *, site: str | None = None,
          before: bytes | None = None, where: str = "chdb"
          ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Import ``data`` into a fresh store by the fast path (when it takes it) and into another
    by the Python path (``before`` first into both, always by the Python path)."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with _two_stores(tmp, where) as (fast, slow):
        if before is not None:
            first = tmp / "before.csv"
            first.write_bytes(before)
            with _python_path():
                _import(fast, first, job="before")
                _import(slow, first, job="before")
        with _spy() as seen:
            _import(fast, path, site=site)
        with _python_path():
            _import(slow, path, site=site)
        return seen, _state(fast), _state(slow)


def _rows(n: int, prefix: str = "e", *, site: str = "s1") -> str:
    return "".join(f"{prefix}{i},{site},view,{NOW - i * 60_000},sess{i // 3},u{i % 7},/p/{i},,"
                   f"DE,mobile\n" for i in range(n))


# ---------------------------------------------------------------- taken: the same as Python
PLAIN = [
    ("lf", (HEADER + "\n" + _rows(50)).encode(), "events.csv", None),
    ("crlf, no final line break", (HEADER + "\r\n" + _rows(20).replace("\n", "\r\n")).encode()
     .rstrip(b"\r\n"), "events.csv", None),
    ("bom, blank lines, spaces", ("\ufeff" + HEADER + "\n\n" + _rows(10) + "   \n"
                                  + " e99 , s2 ,click, 1795953000000 ,x,,, ,,\n\n").encode(),
     "events.csv", None),
    ("gzip", (HEADER + "\n" + _rows(30)).encode(), "events.csv.gz", None),
    ("--site, other order, unknown column, upper case, created_at, 12 digits",
     ("Session_ID,EVENT_TYPE,event_id,timestamp,extra,created_at\n"
      + "".join(f"s{i},view,id{i},{999_999_999_999 + i},x,{'' if i % 2 else NOW}\n"
                for i in range(12))).encode(), "events.csv", "forced"),
    ("site column and --site", (HEADER + "\n" + _rows(5) + "f1,,view,1795953000000,x,,,,,\n")
     .encode(), "events.csv", "dflt"),
    ("text and ids at their limits", (HEADER + "\n" + f"{'i' * 256},s1,{'t' * 8192},"
                                      f"1795953000000,{'ü' * 256},u,{'é' * 4096},,,\n").encode(),
     "events.csv", None),
]


@pytest.mark.parametrize(("what", "data", "name", "site"), PLAIN, ids=[p[0] for p in PLAIN])
def test_a_plain_file_takes_the_fast_path_and_ends_as_the_python_path(
        tmp_path: Path, what: str, data: bytes, name: str, site: str | None, where: str) -> None:
    seen, fast, slow = _both(tmp_path, data, name, site=site, where=where)
    assert len(seen) == 1 and seen[0] is not None, what
    assert fast == slow
    assert fast["job"][0] == "completed" and fast["job"][1] > 0 and fast["ids"] == fast["job"][1]


def test_ids_stored_before_count_as_duplicates_as_on_the_python_path(tmp_path: Path) -> None:
    before = (HEADER + "\n" + _rows(40)).encode()
    data = (HEADER + "\n" + _rows(60)).encode()  # 40 stored already, 20 new
    seen, fast, slow = _both(tmp_path, data, before=before)
    assert seen and seen[0] is not None
    assert fast == slow and fast["job"][1:3] == (20, 40)


@contextmanager
def _chunks_of(size: int) -> Iterator[list[tuple[int, int]]]:
    """The fast path's chunk size set to ``size`` bytes; yields the (start, end) of each chunk
    stored."""
    from pulse_tui.backend.clickhouse import bulk
    from pulse_tui.backend.clickhouse.connection import ChdbConn

    old, real = bulk.CHUNK_BYTES, ChdbConn.chunk_source
    taken: list[tuple[int, int]] = []

    def spy(self: ChdbConn, fd: int, start: int, end: int) -> Any:
        taken.append((start, end))
        return real(self, fd, start, end)

    bulk.CHUNK_BYTES = size
    ChdbConn.chunk_source = spy  # type: ignore[method-assign]
    try:
        yield taken
    finally:
        bulk.CHUNK_BYTES = old
        ChdbConn.chunk_source = real  # type: ignore[method-assign]


@pytest.mark.parametrize("crlf", [False, True])
def test_a_large_file_stored_in_chunks_ends_as_the_python_path(tmp_path: Path,
                                                               crlf: bool) -> None:
    # chunks of whole lines: the BOM and header in the first, blank lines, CRLF, a last line
    # without a line break; 60 of the 2,000 ids stored before (duplicates, as on Python)
    text = "\ufeff" + HEADER + "\n" + _rows(1000) + "\n  \n" + _rows(1000, "f").rstrip("\n")
    if crlf:
        text = text.replace("\n", "\r\n")
    before = (HEADER + "\n" + _rows(30, "e") + _rows(30, "f")).encode()
    with _chunks_of(7_000) as taken:
        seen, fast, slow = _both(tmp_path, text.encode(), before=before)
    assert seen and seen[0] is not None
    size = len(text.encode())
    assert len(taken) >= 10 and taken[0][0] == 0 and taken[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(taken, taken[1:], strict=False))
    assert fast == slow and fast["job"][1:3] == (1940, 60)
    assert fast["ids"] == 2000 and len(fast["events"]) == 2000


@pytest.mark.parametrize(("crlf", "stored_before"), [(False, True), (True, False)])
def test_a_large_gzip_file_is_stored_in_chunks_and_ends_as_the_python_path(
        tmp_path: Path, crlf: bool, stored_before: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # decompressed one chunk of whole lines at a time (one INSERT of a whole 10M-row gzip
    # file held 2.9 GB resident): the same rows, counts and job as the Python path
    from pulse_tui.backend.clickhouse.connection import ChdbConn

    text = "\ufeff" + HEADER + "\n" + _rows(1000) + "\n  \n" + _rows(1000, "f").rstrip("\n")
    if crlf:
        text = text.replace("\n", "\r\n")
    before = (HEADER + "\n" + _rows(30, "e") + _rows(30, "f")).encode()
    inserts: list[str] = []
    real = ChdbConn.bulk_command

    def spy(self: ChdbConn, sql: str, params: dict[str, Any] | None = None) -> None:
        inserts.append(sql)
        real(self, sql, params)

    monkeypatch.setattr(ChdbConn, "bulk_command", spy)
    # (without ids stored before, no insert filters out ids already stored: a line stored
    # twice at a chunk boundary would show)
    with _chunks_of(7_000) as taken:
        seen, fast, slow = _both(tmp_path, text.encode(), "events.csv.gz",
                                 before=before if stored_before else None)
    assert seen and seen[0] is not None and not taken  # decompressed here, not copied
    assert len(inserts) >= 10
    assert fast == slow and fast["job"][1:3] == ((1940, 60) if stored_before else (2000, 0))
    assert fast["ids"] == 2000 and len(fast["events"]) == 2000


class _ReadBack:
    """A stand-in for the embedded engine's connection: each chunk's "SQL" is the bytes of
    its temporary file, read back."""

    @contextmanager
    def lines_source(self, fd: int, compressed: bool) -> Iterator[bytes]:
        assert not compressed
        yield os.pread(fd, os.fstat(fd).st_size, 0)


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)  # the same bytes in every test process (xdist)


def _gunzipped(data: bytes, size: int, chunk: int) -> list[bytes]:
    from pulse_tui.backend.clickhouse import bulk

    old = bulk.CHUNK_BYTES
    bulk.CHUNK_BYTES = chunk
    try:
        with open(os.memfd_create("gz"), "w+b") as fh:
            fh.write(data)
            fh.flush()
            return list(bulk._gunzipped_parts(_ReadBack(), fh.fileno(), size))  # type: ignore[arg-type]
    finally:
        bulk.CHUNK_BYTES = old


@given(lines=st.lists(st.text(alphabet="ab,é ", max_size=120), max_size=60),
       crlf=st.booleans(), last_break=st.booleans(), chunk=st.integers(1, 600),
       cuts=st.lists(st.integers(0, 10_000), max_size=2), empty_first=st.booleans(),
       level=st.integers(0, 9))
def test_gzip_chunks_are_whole_lines_adding_up_to_the_decompressed_file(
        lines: list[str], crlf: bool, last_break: bool, chunk: int, cuts: list[int],
        empty_first: bool, level: int) -> None:
    # against gzip.decompress: every byte once, in order, each chunk but the last ending a
    # line, across gzip members (an empty one first, the data split into several)
    end = "\r\n" if crlf else "\n"
    data = (end.join(lines) + (end if last_break and lines else "")).encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    gz = (gzip.compress(b"") if empty_first else b"") + b"".join(
        gzip.compress(data[a:b], compresslevel=level)
        for a, b in zip(bounds, bounds[1:], strict=False))
    assert gzip.decompress(gz) == data
    parts = _gunzipped(gz, len(data), chunk)
    assert b"".join(parts) == data
    assert all(p.endswith(b"\n") and p for p in parts[:-1]) and all(parts)


CHANGED_GZIP = [
    ("bytes after the last member", _gz(b"a,b\n" * 50) + b"junk", 200),
    ("cut short", _gz(b"a,b\n" * 50)[:-6], 200),
    ("cut inside the stream", _gz(bytes(range(256)) * 40)[:200], 10240),
    ("more than the check read", _gz(b"a,b\n" * 50), 150),
    ("less than the check read", _gz(b"a,b\n" * 50), 250),
    ("damaged", _gz(b"a,b\n" * 50)[:12] + b"\xff" * 20, 200),
]


@pytest.mark.parametrize(("what", "gz", "size"), CHANGED_GZIP, ids=[c[0] for c in CHANGED_GZIP])
def test_a_gzip_file_that_changed_since_the_check_stops_the_import(
        what: str, gz: bytes, size: int) -> None:
    from pulse_tui.errors import DatabaseError

    with pytest.raises(DatabaseError, match="the file changed while it was imported"):
        _gunzipped(gz, size, 64)


class _Statements:
    """The embedded engine's session, recording the statements sent to it."""

    def __init__(self, real: Any) -> None:
        self.real, self.sent = real, []

    def query(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(sql.split(" (", 1)[0][:40])
        return self.real.query(sql, *args, **kwargs)


@pytest.mark.parametrize("case", ["chunks", "crowded", "one insert"])
def test_merges_are_held_off_while_each_chunk_is_inserted_and_run_after(
        tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the bulk insert of each chunk runs between SYSTEM STOP MERGES and START MERGES (its
    # time on 2 cores: see ChdbConn.bulk_command); merges run again after it, after a failed
    # insert too; a store with a crowded partition (a new store has one part: pulse_meta's)
    # gets its chunks inserted with merges on, and so does a file stored by one insert (a
    # backlog of small files must not keep cancelling running merges)
    from pulse_tui.backend.clickhouse import bulk

    if case == "crowded":
        monkeypatch.setattr(bulk, "MAX_UNMERGED_PARTS", 1)
    path = tmp_path / "events.csv"
    path.write_text(HEADER + "\n" + _rows(2000))
    b = open_backends(tmp_path / "p.db", fresh_chdb_url())
    try:
        ch = b.events.ch  # type: ignore[attr-defined]
        spy = _Statements(ch._session)
        monkeypatch.setattr(ch, "_session", spy)
        with _chunks_of(20_000 if case != "one insert" else 1 << 30) as taken, _spy() as seen:
            _import(b, path)
        assert seen[0] is not None
        assert len(taken) == 0 if case == "one insert" else len(taken) >= 4
        inserts = [i for i, s in enumerate(spy.sent) if s.startswith("INSERT INTO")]
        assert len(inserts) == max(len(taken), 1)
        if case != "chunks":
            assert "SYSTEM STOP MERGES" not in spy.sent
        else:
            assert all((spy.sent[i - 1], spy.sent[i + 1]) == ("SYSTEM STOP MERGES",
                                                              "SYSTEM START MERGES")
                       for i in inserts)
        with pytest.raises(Exception):  # noqa: B017, PT011 - ClickHouse's own error
            ch.bulk_command(f"INSERT INTO {b.events.t('events')} (event_id) "  # type: ignore[attr-defined]
                            "SELECT throwIf(1)")
        assert spy.sent[-1] == "SYSTEM START MERGES"
        # OPTIMIZE ... FINAL fails ("Cancelled merging parts") while merges are stopped
        ch.command(f"OPTIMIZE TABLE {b.events.t('events')} FINAL")  # type: ignore[attr-defined]
        assert ch.rows(f"SELECT count(), uniqExact(event_id) FROM "
                       f"{b.events.t('events')}") == [(2000, 2000)]  # type: ignore[attr-defined]
    finally:
        b.close()


# ---------------------------------------------------------------- declined: Python's errors
UNUSUAL = [
    ("quoted value", HEADER + '\ne1,s1,view,1795953000000,x,u,"/a,b",,,\n'),
    ("iso timestamp", HEADER + "\ne1,s1,view,2026-11-29T10:00:00Z,x,u,,,,\n"),
    ("seconds", HEADER + "\ne1,s1,view,1795953000,x,u,,,,\n"),
    ("out of range", HEADER + "\ne1,s1,view,4102444800001,x,u,,,,\n"),
    ("missing required", HEADER + "\ne1,s1,,1795953000000,x,u,,,,\n"),
    ("too many fields", HEADER + "\ne1,s1,view,1795953000000,x,u,,,,,extra\n"),
    ("tab around a value", HEADER + "\ne1,s1,view,1795953000000,x,\tu,,,,\n"),
    ("no-break space", HEADER + "\ne1,s1,view,1795953000000,x,\u00a0u,,,,\n"),
    ("id inside the file twice", HEADER + "\ne1,s1,view,1795953000000,x,u,,,,\n"
     "e1,s1,click,1795953000001,x,u,,,,\n"),
    ("id too long", HEADER + f"\n{'i' * 257},s1,view,1795953000000,x,u,,,,\n"),
    ("header not on line 1", "\n" + HEADER + "\ne1,s1,view,1795953000000,x,u,,,,\n"),
    ("a data row equal to the header", HEADER + "\n" + HEADER + "\n"),
    ("old mac line ends", (HEADER + "\ne1,s1,view,1795953000000,x,u,,,,\n").replace("\n", "\r")),
    ("nul byte", HEADER + "\ne1,s1,view,1795953000000,x,u\x00,,,,\n"),
]


@pytest.mark.parametrize(("what", "text"), UNUSUAL, ids=[u[0] for u in UNUSUAL])
def test_an_unusual_file_is_declined_and_imported_by_the_python_path(
        tmp_path: Path, what: str, text: str, where: str) -> None:
    seen, fast, slow = _both(tmp_path, text.encode() + _rows(5, "ok").encode(), where=where)
    assert all(s is None for s in seen), what  # declined (or not offered)
    assert fast == slow


def test_bytes_that_are_not_utf8_and_a_damaged_gzip_are_declined(tmp_path: Path) -> None:
    data = (HEADER + "\n").encode() + b"e1,s1,view,1795953000000,x,u\xff,,,,\n"
    seen, fast, slow = _both(tmp_path / "a", data)
    assert seen == [None] and fast == slow and fast["rejects"]
    good = gzip.compress((HEADER + "\n" + _rows(2000)).encode())
    with _two_stores(tmp_path) as (fast_b, slow_b):
        tried: list[Any] = []
        for b, ctx, sub in ((fast_b, _spy, "f"), (slow_b, _python_path, "s")):
            (tmp_path / sub).mkdir()
            path = tmp_path / sub / "cut.csv.gz"
            path.write_bytes(good[: len(good) // 2])  # cut short
            with ctx() as seen:
                result = _import(b, path)
            tried += seen or []
            assert result.status == "failed" and "damaged or cut short" in (result.message or "")
        assert tried == [None]
        assert _state(fast_b)["job"] == _state(slow_b)["job"]


# ---------------------------------------------------------------- crashes and retries
def test_a_retry_after_a_partial_insert_counts_the_jobs_own_rows_once(tmp_path: Path) -> None:
    lines = _rows(300)
    path = tmp_path / "events.csv"
    path.write_text(HEADER + "\n" + lines)
    with _two_stores(tmp_path) as (b, other):
        del other
        b.control.create_import_job(job_id="job1", kind="events", site_id="", file_name=path.name,
                                    file_size=path.stat().st_size, source_path=str(path),
                                    now_ms=NOW)
        rows = [(f"e{i}", "s1", "view", NOW - i * 60_000, f"sess{i // 3}", f"u{i % 7}",
                 f"/p/{i}", None, "DE", "mobile", NOW) for i in range(300)]
        # the crashed attempt stored some rows (its parts), the job row did not move; another
        # job stored a few others before
        b.events.store_rows(rows[:120], job="job1", line=301)  # type: ignore[attr-defined]
        b.events.store_rows(rows[200:210], job="other", line=11)  # type: ignore[attr-defined]
        with _spy() as seen:
            result = _import(b, path)
        assert seen and seen[0] is not None
        assert (result.processed, result.duplicates, result.failed) == (290, 10, 0)
        assert _state(b)["ids"] == 300 and len(_state(b)["events"]) == 300


_CRASH = """
import json, os, signal, sys
from pathlib import Path
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import Clock
from pulse_tui.ingest import import_file
import pulse_tui.store.imports as imports
db, store, path, crash = sys.argv[1:5]
b = open_backends(Path(db), store)
if crash == "1":  # SIGKILL right after the rows are stored, before the job row moves
    imports._record = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
r = import_file(b.events.conn, path, kind="events", clock=Clock(1795953600000), events=b.events,
                job_id="crashy")
n = b.events.ch.rows(f"SELECT count(), uniqExact(event_id) FROM {b.events.t('events')}")[0]
print(json.dumps([r.status, r.processed, r.duplicates, r.failed, list(n)]))
b.close()
"""


def _killed_then_retried(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Import 5,000 rows with ``script`` in a process SIGKILLed where the script says, then
    again in a fresh process (the retry): its result."""
    path = tmp_path / "events.csv"
    path.write_text(HEADER + "\n" + _rows(5000))
    args = [str(tmp_path / "p.db"), f"chdb://{tmp_path / 'ch'}", str(path)]

    def run(crash: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", script, *args, crash], cwd=ROOT,
                              capture_output=True, text=True, timeout=180)

    killed = run("1")
    assert killed.returncode == -9, killed.stderr
    again = run("0")
    assert again.returncode == 0, again.stderr
    return again


def test_sigkill_between_the_insert_and_the_checkpoint_then_retry_gives_exact_counts(
        tmp_path: Path) -> None:
    pytest.importorskip("chdb")
    again = _killed_then_retried(tmp_path, _CRASH)
    assert json.loads(again.stdout) == ["completed", 5000, 0, 0, [5000, 5000]]


_CHUNK_CRASH = """
import json, os, signal, sys
from pathlib import Path
from pulse_tui.backend.clickhouse import bulk
from pulse_tui.backend.clickhouse.connection import ChdbConn
from pulse_tui.backend.wiring import open_backends
from pulse_tui.clock import Clock
from pulse_tui.ingest import import_file
db, store, path, crash = sys.argv[1:5]
bulk.CHUNK_BYTES = 20_000
b = open_backends(Path(db), store)
inserts = []
real = ChdbConn.bulk_command
def command(self, sql, params=None):
    real(self, sql, params)
    if sql.startswith("INSERT INTO") and "ingest_job" in sql:
        inserts.append(sql)
        if crash == "1" and len(inserts) == 3:  # SIGKILL after the third chunk is stored
            os.kill(os.getpid(), signal.SIGKILL)
ChdbConn.bulk_command = command
r = import_file(b.events.conn, path, kind="events", clock=Clock(1795953600000), events=b.events,
                job_id="crashy")
t = b.events.t
n = b.events.ch.rows(f"SELECT count(), uniqExact(event_id) FROM {t('events')}")[0]
views = b.events.ch.rows(f"SELECT (SELECT count() FROM {t('event_ids')}), "
                         f"(SELECT sum(event_count) FROM {t('sessions')}), "
                         f"(SELECT sum(events) FROM {t('events_daily')})")[0]
print(json.dumps([r.status, r.processed, r.duplicates, r.failed, list(n), list(views),
                  len(inserts)]))
b.close()
"""


def test_sigkill_between_two_chunks_then_retry_gives_exact_counts(tmp_path: Path) -> None:
    pytest.importorskip("chdb")
    again = _killed_then_retried(tmp_path, _CHUNK_CRASH)
    status, processed, dups, failed, stored, views, inserts = json.loads(again.stdout)
    # the three chunks stored before the kill count as this job's rows, not duplicates; the
    # retry stores the rest, chunk by chunk, each id once
    assert [status, processed, dups, failed, stored, views] == [
        "completed", 5000, 0, 0, [5000, 5000], [5000, 5000, 5000]]
    assert inserts >= 10


# ---------------------------------------------------------------- property: declines or equals
_GOOD_TS = st.one_of(st.integers(946_684_800_000, 4_102_444_800_000).map(str),
                    st.sampled_from(["0946684800000", "999999999999", " 1795953000000 "]))
_RANGE_TS = st.sampled_from(["0946684799999", "100000000000", "4102444800001"])
_FORMAT_TS = st.sampled_from(["", "1795953000", "2026-11-29", "2026-11-29T10:00:00", "0",
                              "-1795953000000", "99999999999999", "1795953000000.5",
                              "+1795953000000"])
_CLEAN = st.text(st.characters(codec="utf-8", exclude_characters='\n\r,"\t\x00\x0b\x0c\x1c'
                               '\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000'
                               + "".join(chr(c) for c in range(0x2000, 0x200B)),
                               exclude_categories=("Cs",)), max_size=5)
_VALUE = st.one_of(st.sampled_from(["", " ", "a", "x y", " padded ", "ü", "%_", "'q'", "=1+2"]),
                   _CLEAN)
_BAD_VALUE = st.sampled_from(['"q"', "a\tb", "\ta", "\u00a0a", "a\x00", "i" * 257])


@st.composite
def _files(draw: st.DrawFn) -> bytes:
    """Events files of valid rows; half of them with one bad thing: a timestamp out of range
    or of a form the fast path leaves to Python, a bad value, a bad or blank line, an id
    twice (each as likely)."""
    n = draw(st.integers(1, 12))
    spoil = draw(st.sampled_from([None, "range", "format", "value", "line", "dup"]))
    at = draw(st.integers(0, n - 1))
    lines = [HEADER + ",created_at"]
    for i in range(n):
        fields = [f"id{i}", draw(st.sampled_from(["s1", "s2", " s3"])),
                  draw(st.sampled_from(["view", "click", " buy "])), draw(_GOOD_TS),
                  draw(st.sampled_from(["sa", "sb"])), draw(_VALUE), draw(_VALUE),
                  draw(_VALUE), draw(_VALUE), draw(_VALUE), draw(_GOOD_TS | st.just(""))]
        if i == at and spoil == "line":
            lines.append(draw(st.sampled_from(["", "  ", ",", '"q",1',
                                               "a,b,c,d,e,f,g,h,i,j,k,l"])))
            continue
        if i == at and spoil in ("range", "format"):
            fields[draw(st.sampled_from([3, 10]))] = draw(
                _RANGE_TS if spoil == "range" else _FORMAT_TS)
        elif i == at and spoil == "value":
            fields[draw(st.integers(0, 9))] = draw(_BAD_VALUE | st.just(""))
        elif i == at and spoil == "dup":
            fields[0] = draw(st.sampled_from(["id0", f" id{i} ", f"id{i}x"]))
        cut = draw(st.integers(5, 11))  # fewer fields than the header is allowed
        lines.append(",".join(fields[:cut]))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return (end.join(lines) + draw(st.sampled_from(["", end]))).encode()


@given(data=_files(), site=st.sampled_from([None, "forced"]))
def test_the_fast_path_declines_or_stores_exactly_what_the_python_path_stores(
        tmp_path_factory: pytest.TempPathFactory, data: bytes, site: str | None) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    seen, fast, slow = _both(tmp, data, site=site)
    event("taken" if seen and seen[0] is not None else "declined")
    assert fast == slow
