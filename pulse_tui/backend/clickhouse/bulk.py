"""The events import's fast path: ClickHouse reads, checks and stores a whole CSV file.

The Python importer (pulse_tui.ingest) parses and validates every row in Python and hands
ClickHouse batches of tuples; at a million rows that costs more than ClickHouse's own work. Here
ClickHouse reads the file's lines itself (chdb: ``file()`` on the importer's open descriptor,
``/proc/self/fd/N``, so exactly the file the importer opened is read; a server: the file's bytes
streamed into a staging table, see connection.py), checks every row with SQL at least as strict
as the Python validator (SPEC 9 "Imports"; pulse_tui.ingest.parse), and when every row passes,
stores the ids not stored yet with one ``INSERT ... SELECT``.

It declines (returns None, nothing stored) whenever the file is not plain enough for the SQL to
read it exactly as Python's ``csv`` module does, or any row would be rejected: a quote character
anywhere (quoted values, multi-line records and stray quotes are the Python reader's business),
a tab, NUL, CR other than a CRLF line end, or another character ``str.strip()`` would take off a
value, bytes that are not UTF-8, a header that is not the first line alone, a line near the
1 MiB limit, a compressed file whose sizes do not add up, an id repeated inside the file, a
timestamp that is not 12-13 digits (ISO-8601 text stays with Python), any value Python would
reject. The importer then reads the whole file the usual way, so the errors file, messages, line
numbers and exit codes are exactly those of the Python path. When it stores, the counts
(imported, duplicates, rejected = 0), the job's checkpoint (records, decompressed byte offset,
physical lines), its site and the sites registered are what the Python path gives.

A crash after the insert and before the job row moved is recognised on the retry as the
Python path does it: the rows carry ``(ingest_job, ingest_line)`` = (this job, the file's last
line) and count as imported, not as duplicates (the retry starts from checkpoint 0 and takes
this path again: the file is the same, so is the decision).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from typing import Any

from pulse_tui.errors import DatabaseError
from pulse_tui.ingest.kinds import EVENTS
from pulse_tui.ingest.parse import (
    EXPANSION_RATIO,
    ID,
    MAX_ID_CHARS,
    MAX_LINE_BYTES,
    MAX_TEXT_BYTES,
    MAX_TS,
    MIN_EXPANSION_LIMIT,
    MIN_TS,
    TEXT,
    TS,
    Header,
)

log = logging.getLogger("pulse_tui.ingest")

# bytes after which Python's str.strip() would see whitespace other than a space, or which the
# SQL split cannot read as Python's csv does: a line holding any of them is left to Python
_UNUSUAL = ['"', "\x00", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\r",
            "\u0085", "\u00a0", "\u1680", *(chr(c) for c in range(0x2000, 0x200B)), "\u2028",
            "\u2029", "\u202f", "\u205f", "\u3000"]
MAX_SITES = 10_000  # more distinct sites in one file than this: Python registers them
# read the file with pread, not mmap (ClickHouse's default for local files): a mapped file's
# pages count in the process's resident memory (1.1 GB more peak RSS for a 10M-row file), at
# the same CPU time
READ = "storage_file_read_method = 'pread'"
# a file larger than this (a gzip file once decompressed) is stored one chunk of whole lines
# at a time (see import_whole_file): about 2.3M rows of the benchmark's events
CHUNK_BYTES = 256 << 20
# a chunk of a file larger than CHUNK_BYTES is inserted with the embedded engine's merges held
# off (ChdbConn.bulk_command) while no partition of the store has this many active parts (a
# 256 MB chunk makes about 3 per table; ClickHouse slows inserts down from 1,000)
MAX_UNMERGED_PARTS = 100
# (start, end) byte offsets of the open file -> a context manager giving SQL for those lines
ChunkSource = Callable[[int, int], AbstractContextManager[str]]


def _line_ranges(fd: int, size: int, step: int | None = None) -> list[tuple[int, int]]:
    """[start, end) byte ranges of about ``step`` bytes covering the file, each cut just after
    a line break (the check ensured no line is as long as MAX_LINE_BYTES)."""
    step = step or CHUNK_BYTES
    cuts = [0]
    while cuts[-1] + step < size:
        at = cuts[-1] + step
        tail = os.pread(fd, MAX_LINE_BYTES, at - 1)
        brk = tail.find(b"\n")
        if brk < 0 or at + brk >= size:
            break
        cuts.append(at + brk)
    cuts.append(size)
    return list(zip(cuts, cuts[1:], strict=False))
BOM = "\ufeff"


@dataclass(frozen=True)
class WholeFile:
    """What the fast path stored: counts and the job's final checkpoint."""

    records: int  # data records (blank lines not counted)
    stored: int  # rows inserted now
    ours: int  # rows this job had stored before a crash (counted as imported)
    end_offset: int  # decompressed bytes
    end_line: int  # physical lines, header included
    first_site: str
    sites: tuple[str, ...]

    @property
    def duplicates(self) -> int:
        return self.records - self.stored - self.ours


def _sql_text(value: str) -> str:
    """A constant of this module (never data) as a ClickHouse string literal."""
    return "'" + "".join(f"\\x{b:02X}" for b in value.encode("utf-8")) + "'"


def _columns(header: Header, site_id: str | None) -> tuple[dict[str, str], str]:
    """Per target column the SQL of its stripped text, and the SQL that is 1 for a good row
    (the rules of pulse_tui.ingest.parse.make_row_parser)."""
    value: dict[str, str] = {}
    ok = [f"length(f) <= {len(header.names)}"]
    for col in EVENTS.columns:
        idx = header.index.get(col.name)
        v = "''" if idx is None else f"trimBoth(f[{idx + 1}])"  # out of range: ''
        value[col.name] = v
        required = col.required and not (col.name == "site_id" and site_id)
        if required:
            ok.append(f"{v} != ''")
        if col.kind == ID:
            ok.append(f"lengthUTF8({v}) <= {MAX_ID_CHARS}")
        elif col.kind == TEXT:
            ok.append(f"length({v}) <= {MAX_TEXT_BYTES}")
        elif col.kind == TS:
            good = (f"(match({v}, '^[0-9]{{12,13}}$') AND "
                    f"toInt64OrZero({v}) BETWEEN {MIN_TS} AND {MAX_TS})")
            ok.append(good if required else f"({v} = '' OR {good})")
    return value, " AND ".join(ok)


def _select(value: dict[str, str], site_id: str | None, now_ms: int) -> list[str]:
    """The stored values of a good row in events' column order (as the Python parser's
    tuple: empty optional text is NULL, a missing created_at is the import time)."""
    out = []
    for col in EVENTS.columns:
        v = value[col.name]
        if col.name == "site_id" and site_id:
            out.append(f"if({v} = '', {{site:String}}, {v})")
        elif col.kind == TS:
            out.append(f"toInt64({v})" if col.required else
                       f"if({v} = '', toInt64({now_ms}), toInt64({v}))")
        elif col.required:
            out.append(v)
        else:
            out.append(f"nullIf({v}, '')")
    return out


def gzip_isize(fd: int) -> int | None:
    """The last 4 bytes of a gzip file: its last member's size mod 2**32."""
    size = os.fstat(fd).st_size
    if size < 18:
        return None
    tail = os.pread(fd, 4, size - 4)
    return int.from_bytes(tail, "little") if len(tail) == 4 else None


def import_whole_file(ch: Any, events_table: str, ids_table: str, source: str, *, job_id: str,
                      header: Header, header_text: str, site_id: str | None, now_ms: int,
                      file_size: int, compressed: bool, isize: int | None,
                      fd: int | None = None, chunk_source: ChunkSource | None = None
                      ) -> WholeFile | None:
    """Check the lines ``source`` (SQL: a table function or table with one String column
    ``line``) yields and store the unseen ids; None when it declines (nothing stored).

    With ``chunk_source`` (the embedded engine) a file of more than ``CHUNK_BYTES`` (once
    decompressed) is stored by one ``INSERT`` per chunk of whole lines of the open file
    ``fd``, a plain file's chunk read through ``chunk_source(start, end)``, a gzip file's
    decompressed here (``_gunzipped_parts``): one ``INSERT ... SELECT`` of a whole 10M-row
    file held 2.7 GB resident (2.9 GB gzip); a chunk's insert frees what it held when it ends
    (1.4 GB either way). A crash between two chunks is retried as any crash after an insert
    (see above): the rows of the chunks stored count as this job's, the others are stored."""
    try:
        return _import(ch, events_table, ids_table, source, job_id=job_id, header=header,
                       header_text=header_text, site_id=site_id, now_ms=now_ms,
                       file_size=file_size, compressed=compressed, isize=isize, fd=fd,
                       chunk_source=chunk_source)
    except _Declined:
        return None


class _Declined(Exception):  # noqa: N818 - a signal inside this module, never shown
    pass


def _plain_parts(fd: int, size: int, chunk_source: ChunkSource) -> Iterator[str]:
    """SQL for each chunk of whole lines of the plain file ``fd`` (valid until the next)."""
    for start, end in _line_ranges(fd, size):
        with chunk_source(start, end) as part:
            yield part


def _gunzip(fd: int, size: int, step: int) -> Iterator[bytes]:
    """The decompressed bytes of the gzip file ``fd`` from its start, every member of it (as
    ClickHouse and Python's ``gzip`` read them), at most ``step`` bytes at a time (a small
    input cannot expand into a large buffer); DatabaseError unless they end a member and add
    up to ``size``, the bytes the check read (the file changed under us)."""
    def member() -> Any:
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)

    inflate, started = member(), False  # started: the member has had input, not its end
    pos = written = 0
    pending = b""
    try:
        while True:
            out = b""
            if pending or started:  # (no input: what the last input still holds back)
                started = True
                out = inflate.decompress(pending, step)
                pending = inflate.unconsumed_tail
            if out:
                written += len(out)
                if written > size:
                    break
                yield out
            if inflate.eof:  # a member ends; the bytes after it (all of the input left:
                # unconsumed_tail may repeat them) start the next
                pending = inflate.unused_data
                inflate, started = member(), False
            elif not out and not pending:
                pending = os.pread(fd, 1 << 20, pos)
                pos += len(pending)
                if not pending:
                    break
    except zlib.error:
        raise DatabaseError("the file changed while it was imported") from None
    if started or written != size:
        raise DatabaseError("the file changed while it was imported")


def _gunzipped_parts(ch: Any, fd: int, size: int) -> Iterator[str]:
    """SQL for each chunk of about ``CHUNK_BYTES`` of whole lines of the gzip file ``fd``
    decompressed (``size`` bytes, as the check read them), each written to an unnamed
    temporary file that lives until the next: a compressed file is stored one chunk at a
    time as a plain one is (one ``INSERT`` of a 10M-row gzip file held 2.9 GB resident).
    The last chunk is given only once the whole stream was read and found as the check saw
    it."""
    tmp: Any = None
    held = 0  # bytes in tmp
    try:
        for out in _gunzip(fd, size, min(1 << 22, CHUNK_BYTES)):
            if tmp is None:
                tmp = tempfile.TemporaryFile(prefix="pulse-chunk-")
            cut = out.rfind(b"\n") if held + len(out) >= CHUNK_BYTES else -1
            if cut < 0:
                tmp.write(out)
                held += len(out)
                continue
            tmp.write(out[:cut + 1])
            yield from _lines_of_temp(ch, tmp)
            tmp.close()
            tmp = tempfile.TemporaryFile(prefix="pulse-chunk-")
            tmp.write(out[cut + 1:])
            held = len(out) - cut - 1
        if tmp is not None and held:
            yield from _lines_of_temp(ch, tmp)
    finally:
        if tmp is not None:
            tmp.close()


def _lines_of_temp(ch: Any, tmp: Any) -> Iterator[str]:
    """SQL for the lines of the temporary file ``tmp`` written so far."""
    tmp.flush()
    with ch.lines_source(tmp.fileno(), False) as part:
        yield part


def _most_parts(ch: Any) -> int:
    """The most active parts one partition of a table of the store has."""
    got = ch.rows("SELECT count() AS n FROM system.parts WHERE database = {db:String} AND active "
                  "GROUP BY table, partition_id ORDER BY n DESC LIMIT 1", {"db": ch.database})
    return int(got[0][0]) if got else 0


def _checked(ch: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A query before anything is stored: any error (a damaged gzip, a line ClickHouse cannot
    read) declines, and the Python path says what is wrong in our words."""
    try:
        return ch.rows(sql, params)
    except Exception as exc:  # noqa: BLE001 - the Python path reports the file's problem
        log.info("fast import declined: %s", type(exc).__name__)
        raise _Declined from None


def _import(ch: Any, events_table: str, ids_table: str, source: str, *, job_id: str,
            header: Header, header_text: str, site_id: str | None, now_ms: int,
            file_size: int, compressed: bool, isize: int | None, fd: int | None,
            chunk_source: ChunkSource | None) -> WholeFile | None:
    value, ok = _columns(header, site_id)
    params: dict[str, Any] = {"hdr": header_text, "bom_hdr": BOM + header_text,
                              "site": site_id or "", "job": job_id}
    unusual = "[" + ", ".join(_sql_text(u) for u in _UNUSUAL) + "]"

    def lines_of(src: str) -> str:
        return (f"SELECT line, if(endsWith(line, '\\r'), substring(line, 1, length(line) - 1), "
                f"line) AS l, splitByChar(',', l) AS f, l IN ({{hdr:String}}, "
                f"{{bom_hdr:String}}) AS is_header, trimBoth(l) = '' AS blank FROM {src}")

    lines = lines_of(source)
    record = "NOT is_header AND NOT blank"
    eid = value["event_id"]
    site = _select(value, site_id, now_ms)[1]
    check = (f"SELECT count(), sum(length(line) + 1), max(length(line)), countIf(is_header), "
             f"countIf({record}), countIf({record} AND NOT ({ok})), "
             f"countIf(NOT isValidUTF8(l) OR multiSearchAny(l, {unusual})), "
             f"uniqExactIf(cityHash64({eid}), {record}), "
             f"groupUniqArrayIf({MAX_SITES})({site}, {record}), minIf({eid}, {record}), "
             f"maxIf({eid}, {record}) FROM ({lines}) SETTINGS {READ}")
    (n_lines, n_bytes, longest, headers, records, bad, unusual_lines, distinct_ids, sites,
     lo, hi), = _checked(ch, check, params)
    n_lines, n_bytes, records = int(n_lines), int(n_bytes), int(records)
    if (int(headers) != 1 or int(bad) or int(unusual_lines) or int(longest) > MAX_LINE_BYTES - 2
            or int(distinct_ids) != records or len(sites) >= MAX_SITES or records == 0):
        return None  # (a hash collision of two ids only sends the file to Python)
    # decompressed size: the lines and their breaks, the last line with or without one
    if compressed:
        limit = max(EXPANSION_RATIO * file_size, MIN_EXPANSION_LIMIT)
        ends = [n for n in (n_bytes, n_bytes - 1) if isize is not None and n % 2**32 == isize]
        if len(ends) != 1 or ends[0] > limit:
            return None  # several members, trailing bytes, or past the expansion limit
        end_offset = ends[0]
    else:
        if file_size not in (n_bytes, n_bytes - 1):
            return None  # the file moved under us: Python says so
        end_offset = file_size
    first = (f"SELECT {site} FROM ({lines}) WHERE {record} LIMIT 1 "
             f"SETTINGS max_threads = 1, input_format_parallel_parsing = 0, {READ}")  # in order
    (first_site,), = _checked(ch, first, params)
    # which of the file's ids are stored already: none can be unless the stored range
    # overlaps the file's (the primary index answers that without reading)
    params.update(lo=lo, hi=hi, line=n_lines)
    stored_before = ours = 0
    in_file = f"SELECT {eid} FROM ({lines}) WHERE {record}"
    overlap = (f"SELECT count() FROM {ids_table} "
               "WHERE event_id BETWEEN {lo:String} AND {hi:String}")
    if int(_checked(ch, overlap, params)[0][0]):
        stored = (f"SELECT uniqExact(event_id), uniqExactIf(event_id, ingest_job = {{job:String}} "
                  f"AND ingest_line = {{line:UInt64}}) FROM {ids_table} "
                  f"WHERE event_id IN ({in_file}) SETTINGS {READ}")
        stored_before, ours = (int(x) for x in _checked(ch, stored, params)[0])
    fresh = records - stored_before
    if fresh:
        names = ", ".join(c.name for c in EVENTS.columns)
        store = ", ".join(_select(value, site_id, now_ms))

        def insert(part: str, unmerged: bool = False) -> None:
            """The rows of lines SQL ``part`` not stored yet (``unmerged``: with the embedded
            engine's background merges held off while it runs, see ChdbConn.bulk_command)."""
            unseen = (f" AND {eid} NOT IN (SELECT event_id FROM {ids_table} WHERE event_id IN "
                      f"(SELECT {eid} FROM ({part}) WHERE {record}))" if stored_before else "")
            (ch.bulk_command if unmerged else ch.command)(
                f"INSERT INTO {events_table} ({names}, ingest_job, ingest_line) "
                f"SELECT {store}, {{job:String}}, {{line:UInt64}} FROM ({part}) "
                f"WHERE {record}{unseen} SETTINGS optimize_on_insert = 0, "
                f"parallel_view_processing = 1, max_insert_threads = 2, {READ}", params)

        if chunk_source is not None and fd is not None and end_offset > CHUNK_BYTES:
            parts = (_gunzipped_parts(ch, fd, end_offset) if compressed else
                     _plain_parts(fd, end_offset, chunk_source))
            with closing(parts):  # an insert that fails: the chunk's temporary file goes now
                for part in parts:
                    # merges held off while each chunk is inserted (a single insert, a file
                    # smaller than a chunk, leaves them alone: a backlog of small files must
                    # not keep cancelling the merges of the ones before); once a partition
                    # holds MAX_UNMERGED_PARTS parts, the next chunks are inserted while
                    # merges run, until they have caught up
                    insert(lines_of(part), unmerged=_most_parts(ch) < MAX_UNMERGED_PARTS)
        else:
            insert(lines)
    return WholeFile(records, fresh, ours, end_offset, n_lines, str(first_site),
                     tuple(sorted(str(s) for s in sites)))
