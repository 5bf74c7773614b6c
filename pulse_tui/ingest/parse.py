"""CSV reading and row validation for imports; pure, no SQL. The kinds (their columns and the
rest) are the registry in ``ingest/kinds.py``; everything here reads it at call time."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

from pulse_tui.ingest import kinds
from pulse_tui.ingest.kinds import ID, TEXT, TS
from pulse_tui.models import member_id_for  # noqa: F401 - the importer's member ids (tests)
from pulse_tui.safefs import open_input

MIN_TS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_ID_CHARS = 256
MAX_TEXT_BYTES = 8 * 1024
MAX_REJECT_VALUE = 512  # characters of a rejected value kept for the report

# csv's own limit (128 KiB) would turn a long field into a parse error; we reject it ourselves
csv.field_size_limit(64 * 1024 * 1024)

_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\udc80-\udcff]")
_DECIMAL_SECONDS = re.compile(r"^\d{10}\.\d+$")

REASON_MISSING = "missing required value"
REASON_NUL = "NUL byte in value"
REASON_UTF8 = "bytes that are not UTF-8"

ALIASES = {"timestamp": "timestamp_ms"}

_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


class FileRejected(Exception):
    """The file as a whole cannot be imported (its message is one line for the job/operator)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A rejected row: physical line where the record starts, column, raw value, reason."""

    line: int
    column: str | None
    value: str | None
    reason: str


@dataclass(slots=True)
class Batch:
    """Rows ready to write plus the rejects, and where the file stands after them."""

    rows: list[tuple[Any, ...]]
    lines: list[int]  # the line each row starts on
    rejects: list[Reject]
    records: int  # data records consumed (rows + rejects; blank lines not counted)
    end_offset: int  # byte offset (of the decompressed stream) after the last record
    end_line: int  # physical lines consumed so far (header included)
    bytes_read: int  # position in the file on disk (progress; compressed for .gz)
    final: bool = False  # the file's last batch (none follows)


@dataclass(slots=True)
class Header:
    kind: str
    names: list[str]  # normalised names as found
    index: dict[str, int]  # target column -> field index
    unknown: list[str] = field(default_factory=list)
    ignored_duplicates: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ helpers


def is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def base_name(path: Path) -> str:
    """The file name without ``.gz`` and ``.csv`` (``events.csv.gz`` -> ``events``)."""
    name = path.name
    for ext in (".gz", ".csv"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


def kind_from_path(path: Path) -> str | None:
    """The import kind from the parent folder name (a kind's inbox folder) or the file name
    prefix (a kind's name, the longest that fits)."""
    parent = path.parent.name.lower()
    by_folder = kinds.folders()
    if parent in by_folder:
        return by_folder[parent]
    name = path.name.lower()
    for kind in kinds.by_longest_name():
        if name.startswith(kind):
            return kind
    return None


def normalise_name(name: str) -> str:
    name = name.strip().lower()
    return ALIASES.get(name, name)


def kind_from_header(names: list[str]) -> str | None:
    """The first kind (by header rank) one of whose header marks the header holds."""
    cols = {normalise_name(n) for n in names}
    for kind in kinds.by_header_rank():
        if any(mark in cols for mark in kind.header_marks):
            return kind.name
    return None


def printable_value(value: str) -> str:
    """A value as stored in a reject: undecodable bytes as \\xNN, NUL as \\x00, truncated."""
    if _SURROGATE.search(value):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    value = value.replace("\x00", "\\x00")
    if len(value) > MAX_REJECT_VALUE:
        value = value[:MAX_REJECT_VALUE] + "…"
    return value


def parse_timestamp(text: str) -> int | str:
    """Epoch ms from integer milliseconds or ISO-8601 (no offset = UTC); else the reason (str)."""
    v = text
    digits = v[1:] if v[:1] == "-" else v
    if digits.isascii() and digits.isdigit():
        n = len(digits)
        if n == 10:
            return "looks like seconds; PULSE uses milliseconds"
        if n == 16:
            return "looks like microseconds; PULSE uses milliseconds"
        if n == 19:
            return "looks like nanoseconds; PULSE uses milliseconds"
        ms = int(v)
    else:
        if _DECIMAL_SECONDS.match(v):
            return "looks like seconds; PULSE uses milliseconds"
        if "-" not in v[1:] or not v[:4].isdigit():
            return "not a timestamp: use integer milliseconds or ISO-8601"
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            return "not a timestamp: use integer milliseconds or ISO-8601"
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = (int(dt.timestamp()) * 1000) + dt.microsecond // 1000
    if ms < MIN_TS or ms > MAX_TS:
        return "timestamp outside 2000-01-01..2100-01-01"
    return ms


# ------------------------------------------------------------------------------ the reader

# SPEC 10: one CSV line holds at most 1 MiB; a compressed file expands to at most 100 times its
# size or 10 GiB, whichever is larger. Past either, the file fails with that reason.
MAX_LINE_BYTES = 1024 * 1024
EXPANSION_RATIO = 100
MIN_EXPANSION_LIMIT = 10 * 1024 ** 3
# A quoted value may hold line breaks; a record that runs over several lines is cut short as
# broken quoting once its lines after the first pass this many bytes (the line limit).
MAX_SPAN_BYTES = MAX_LINE_BYTES
# A batch of rows holds at most this much input (besides its row count), so memory stays flat
# even when every row carries long values.
MAX_BATCH_BYTES = 16 * 1024 * 1024
_PEEK_BYTES = 64 * 1024


def _size_text(n: int) -> str:
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


class _BrokenQuote(Exception):  # noqa: N818 - a signal inside the csv reader, never shown
    """The record being read has an open quote at the end of the file, or runs past the
    limit: raised through ``csv.reader`` by the line feed."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _LineFeed:
    """Physical lines of the (decompressed) byte stream for ``csv.reader``, one at a time.

    Lines end at LF or CRLF; an old Mac file (see :func:`_breaks_at_cr`) is split at CR, LF
    and CRLF alike. Each line holds at most MAX_LINE_BYTES; a compressed stream may not
    pass ``expand_limit`` bytes. Knows where the current record started (line number, byte
    offset) and keeps its continuation lines, so a record with an unterminated quote can be cut
    back to its first line and the lines after it handed out again (:meth:`rewind`).
    """

    def __init__(self, stream: IO[bytes], name: str, *, cr_mode: bool,
                 expand_limit: int | None, compressed: bool) -> None:
        self.stream = stream
        self.name = name
        self.cr_mode = cr_mode
        self.expand_limit = expand_limit
        self.compressed = compressed
        self.pos = 0  # byte offset after the last line handed out
        self.line = 0  # number of the last line handed out
        self.bad: list[int] = []  # lines with bytes that are not UTF-8 or a NUL
        self.first = True  # the next line handed out starts a record
        self.start_line = 0
        self.first_text = ""
        self.held: list[tuple[str, int, bool]] | None = None  # the record's further lines
        self.held_bytes = 0
        self.replay: deque[tuple[str, int, bool]] = deque()
        self._buf = b""  # CR mode: bytes read past the last line
        self._eof = False
        self._read_some = getattr(stream, "read1", stream.read)
        self._readline = self._read_cr if cr_mode else partial(stream.readline,
                                                               MAX_LINE_BYTES + 2)
        # lines longer than this, or reaching past this offset, are looked at closely
        self._check_size = MAX_LINE_BYTES
        self._check_pos = expand_limit if expand_limit is not None else 1 << 62

    def reset(self, pos: int, line: int) -> None:
        """Read on from byte ``pos`` (the stream is there) as line ``line + 1``."""
        self.pos, self.line = pos, line
        self.bad = []
        self.first = True
        self.held = None
        self.replay.clear()
        self._buf = b""
        self._eof = False

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.replay:
            text, n, bad = self.replay.popleft()
        else:
            try:
                raw = self._readline()
            except (OSError, EOFError, zlib.error) as exc:
                raise self._unreadable(exc) from exc
            n = len(raw)
            if n > self._check_size or self.pos + n > self._check_pos:
                self._check_limits(raw)
            if not n:
                if not self.first:
                    raise _BrokenQuote("eof")  # csv.reader asked for more: a quote is open
                raise StopIteration
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "surrogateescape")
                bad = True
            else:
                bad = "\x00" in text
        self.line += 1
        self.pos += n
        if bad:
            self.bad.append(self.line)
        if self.first:
            self.first = False
            self.start_line = self.line
            self.first_text = text
            if self.held is not None:
                self.held = None
                self.held_bytes = 0
        else:
            if self.held is None:
                self.held = []
            self.held.append((text, n, bad))
            self.held_bytes += n
            if self.held_bytes > MAX_SPAN_BYTES:
                raise _BrokenQuote("long")
        return text

    def rewind(self) -> None:
        """Cut the current record back to its first line: its other lines come again."""
        if self.held:
            self.replay.extendleft(reversed(self.held))
        self.held = None
        self.line = self.start_line
        self.pos -= self.held_bytes
        self.held_bytes = 0
        self.first = True

    # -- reading bytes -------------------------------------------------------------------
    def _check_limits(self, raw: bytes) -> None:
        """FileRejected when ``raw`` is longer than a line may be or passes the expansion."""
        size = len(raw)
        body = size - (2 if raw.endswith(b"\r\n") else 1 if raw.endswith((b"\n", b"\r"))
                       else 0)
        if body > MAX_LINE_BYTES:
            raise FileRejected(f"line {self.line + 1} is longer than "
                               f"{_size_text(MAX_LINE_BYTES)} (the limit for one CSV line)")
        if self.expand_limit is not None and self.pos + size > self.expand_limit:
            raise FileRejected(
                f"{self.name} expands to more than {_size_text(self.expand_limit)} when "
                f"decompressed (the limit is {EXPANSION_RATIO} times its size or "
                f"{_size_text(MIN_EXPANSION_LIMIT)}, whichever is larger)")

    def _read_cr(self) -> bytes:
        """One line ending at CR, LF or CRLF (old Mac files)."""
        scanned = 0
        while True:
            buf = self._buf
            m = _NEWLINE.search(buf, scanned)
            # a CR at the very end may be the first half of a CRLF: read on unless at the end
            if m is not None and (m.end() < len(buf) or buf[-1:] == b"\n" or self._eof):
                self._buf = buf[m.end():]
                return buf[:m.end()]
            if len(buf) > MAX_LINE_BYTES + 2:
                return buf  # too long: refused by the caller
            if self._eof:
                self._buf = b""
                return buf
            scanned = max(0, len(buf) - 1)
            chunk = self._read_some(_PEEK_BYTES)
            if chunk:
                self._buf = buf + chunk
            else:
                self._eof = True

    def _unreadable(self, exc: BaseException) -> FileRejected:
        damaged = isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile))
        if self.compressed and damaged:
            return FileRejected(f"cannot read {self.name}: the compressed data is damaged or "
                                "cut short")
        detail = getattr(exc, "strerror", None) or "read error"
        return FileRejected(f"cannot read {self.name}: {detail}")


_NEWLINE = re.compile(rb"\r\n?|\n")


def _breaks_at_cr(stream: IO[bytes]) -> bool:
    """True when lines of this stream end with a lone CR (old Mac files): its first line break
    is one, or its first 64 KiB after the first line hold lone CRs and no LF (a header written
    with CRLF over a CR-only body). The stream is put back where it was."""
    start = stream.tell()
    read = getattr(stream, "read1", stream.read)  # what is there: a cut gzip fails later
    seen = b""
    try:
        while True:
            chunk = read(_PEEK_BYTES)
            seen += chunk
            m = _NEWLINE.search(seen)
            if m is not None and (m.end() < len(seen) or not chunk):
                if m.group() == b"\r":
                    return True
                try:
                    while chunk and len(seen) < m.end() + _PEEK_BYTES:
                        chunk = read(_PEEK_BYTES)
                        seen += chunk
                except (OSError, EOFError, zlib.error):
                    pass  # damaged further on: said when the reading gets there
                rest = seen[m.end():m.end() + _PEEK_BYTES]
                return b"\n" not in rest and _LONE_CR.search(rest) is not None
            if m is None and (not chunk or len(seen) > MAX_LINE_BYTES + 2):
                return False  # one line, or a line too long (refused when read)
    finally:
        stream.seek(start)


_LONE_CR = re.compile(rb"\r(?!\n)")


class CsvFile:
    """Streams records of one CSV (or .csv.gz) file, with physical line numbers and offsets.

    Use as a context manager: ``read_header()``, optionally ``seek(offset, line)`` to resume,
    then ``batches(...)``.
    """

    def __init__(self, path: Path, *, follow_symlinks: bool = True,
                 inside: Path | None = None) -> None:
        self.path = path
        try:
            self._raw: IO[bytes] = open_input(path, follow_symlinks=follow_symlinks,
                                              inside=inside)
        except OSError as exc:
            raise FileRejected(f"cannot read {path.name}: {exc.strerror or exc}") from exc
        compressed = is_gzip(path)
        self._stream: IO[bytes] = (
            gzip.GzipFile(fileobj=self._raw, mode="rb") if compressed else self._raw
        )
        limit = None
        if compressed:
            try:
                size = os.fstat(self._raw.fileno()).st_size
            except OSError:
                size = 0
            limit = max(EXPANSION_RATIO * size, MIN_EXPANSION_LIMIT)
        self._setup(compressed, limit)

    def _setup(self, compressed: bool, expand_limit: int | None) -> None:
        try:
            self._skip_bom()
            cr_mode = _breaks_at_cr(self._stream)
        except (OSError, EOFError, zlib.error) as exc:
            self.close()
            if compressed:
                raise FileRejected(f"cannot read {self.path.name}: not a gzip file, or its "
                                   "compressed data is damaged or cut short") from exc
            raise FileRejected(f"cannot read {self.path.name}: "
                               f"{getattr(exc, 'strerror', None) or 'read error'}") from exc
        self._feed = _LineFeed(self._stream, self.path.name, cr_mode=cr_mode,
                               expand_limit=expand_limit, compressed=compressed)
        self._feed.reset(self._stream.tell(), 0)
        self._reader = csv.reader(self._feed)
        self.broken_value: str | None = None  # the first line of the last broken record

    def _skip_bom(self) -> None:
        head = self._stream.read(len(_BOM))
        if head != _BOM:
            self._stream.seek(0)

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._stream is not self._raw:
                self._stream.close()
        finally:
            self._raw.close()

    @property
    def line(self) -> int:
        """Physical lines consumed so far."""
        return self._feed.line

    def offset(self) -> int:
        """Byte offset (of the decompressed stream) after the last record read."""
        return self._feed.pos

    def bytes_read(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        """The open file's descriptor (the file on disk, compressed or not)."""
        return self._raw.fileno()

    @property
    def compressed(self) -> bool:
        return self._feed.compressed

    def fstat(self) -> os.stat_result:
        """The open file's status (it may differ from what the path names now)."""
        return os.fstat(self._raw.fileno())

    def read_header(self, kind: str | None) -> tuple[str, list[str]]:
        """The header's raw names and the import kind (given, or told from the header)."""
        feed = self._feed
        try:
            while True:
                feed.first = True
                row = next(self._reader)
                if any(c.strip() for c in row):
                    break
        except StopIteration:
            raise FileRejected("empty file: no header line") from None
        except _BrokenQuote:
            raise FileRejected(f"the header has a quote opened on line {feed.start_line} "
                               "that is not closed") from None
        except csv.Error:
            raise FileRejected("not a CSV file: the header line is malformed") from None
        if feed.bad:
            raise FileRejected("not a UTF-8 CSV file: the header has bytes that are not UTF-8 "
                               "or a NUL byte")
        if kind is None:
            kind = kind_from_header(row)
            if kind is None:
                raise FileRejected("cannot tell the import type from the file name or header; "
                                   f"use --type {'|'.join(kinds.names())}")
        return kind, row

    def seek(self, offset: int, line: int) -> None:
        """Continue after a checkpoint: ``offset`` bytes into the (decompressed) stream."""
        try:
            self._stream.seek(offset)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileRejected("the file ends before its checkpoint" if isinstance(
                exc, EOFError) or not self._feed.compressed else
                "its compressed data is damaged") from exc
        if self._stream.tell() != offset:
            raise FileRejected("the file ends before its checkpoint")
        self._feed.reset(offset, line)
        self._reader = csv.reader(self._feed)

    def records(self) -> Iterator[tuple[int, list[str] | None, str | None]]:
        """(start line, fields, reason) per non-blank record; fields None for a broken one.

        A record whose quote is still open at the end of the file, or whose lines after the
        first pass MAX_SPAN_BYTES, is broken quoting: its first line is rejected and reading
        goes on with the line after it.
        """
        feed = self._feed
        while True:
            feed.first = True
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except _BrokenQuote as exc:
                line = feed.start_line
                if exc.why == "eof":
                    reason = (f"unterminated quote: the quote opened on line {line} is not "
                              "closed before the end of the file; reading went on at line "
                              f"{line + 1}")
                else:
                    reason = (f"unterminated quote: the quote opened on line {line} is not "
                              f"closed within {_size_text(MAX_SPAN_BYTES)}; reading went on at "
                              f"line {line + 1}")
                self.broken_value = feed.first_text.rstrip("\r\n")
                feed.rewind()
                self._reader = csv.reader(feed)
                yield line, None, reason
                continue
            except csv.Error:
                yield feed.start_line, None, ("malformed CSV: a line break inside a value "
                                              "that is not quoted")
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield feed.start_line, row, None

    def record_lines(self) -> list[str]:
        """The physical lines of the last record read."""
        feed = self._feed
        return [feed.first_text, *(text for text, _, _ in feed.held or ())]

    def first_line_text(self) -> str:
        return self._feed.first_text.rstrip("\r\n")

    def cut_record(self) -> None:
        """Take the last record as broken quoting: read on from the line after its first."""
        self._feed.rewind()

    def last_lines(self) -> tuple[int, int]:
        """First and last physical line of the last record read."""
        return self._feed.start_line, self._feed.line

    def bad_lines_from(self, start: int) -> bool:
        bad = self._feed.bad
        if not bad:
            return False
        if bad[-1] >= start:
            return True
        if len(bad) > 64:  # keep the list short; old entries can no longer matter
            del bad[:-1]
        return False


def map_header(kind: str, names: list[str], *, site_id: str | None) -> Header:
    """Match header names to the kind's columns; a missing required column -> FileRejected."""
    columns = kinds.get(kind).columns
    known = {c.name for c in columns}
    index: dict[str, int] = {}
    unknown: list[str] = []
    dups: list[str] = []
    norm = [normalise_name(n) for n in names]
    for i, name in enumerate(norm):
        if name in known:
            if name in index:
                dups.append(names[i].strip())
            else:
                index[name] = i
        elif name:
            unknown.append(names[i].strip())
    missing = []
    for col in columns:
        if not col.required or col.name in index:
            continue
        if col.name == "site_id" and site_id:
            continue
        missing.append("timestamp_ms (or timestamp)" if col.name == "timestamp_ms" else col.name)
    if missing:
        what = "column" if len(missing) == 1 else "columns"
        raise FileRejected(f"required {what} missing: {', '.join(missing)}")
    return Header(kind=kind, names=norm, index=index, unknown=unknown, ignored_duplicates=dups)


RowFn = Callable[[list[str], int], "tuple[Any, ...] | Reject"]


def make_row_parser(header: Header, *, site_id: str | None, now_ms: int) -> RowFn:
    """A function (fields, line) -> the tuple to write, or a Reject."""
    kind = kinds.get(header.kind)
    width = len(header.names)
    spec: list[tuple[int, str, str, bool, Any]] = []
    for col in kind.columns:
        idx = header.index.get(col.name, -1)
        default: Any = None
        required = col.required
        if col.name == "site_id" and site_id:
            default, required = site_id, False
        elif col.name in ("created_at", "updated_at"):
            default = now_ms
        elif col.name == "is_active":
            default = 1
        spec.append((idx, col.kind, col.name, required, default))
    complete = kind.complete_row

    def parse(fields: list[str], line: int) -> tuple[Any, ...] | Reject:
        n = len(fields)
        if n > width:
            return Reject(line, None, None,
                          f"more fields than the header ({n} > {width})")
        out: list[Any] = []
        append = out.append
        for idx, ckind, name, required, default in spec:
            v = fields[idx].strip() if 0 <= idx < n else ""
            if not v:
                if required:
                    return Reject(line, name, "", REASON_MISSING)
                append(default)
                continue
            if ckind is TEXT:
                if len(v) > MAX_TEXT_BYTES // 4 and len(v.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
                    return Reject(line, name, printable_value(v),
                                  f"text longer than 8 KiB ({len(v.encode('utf-8', 'surrogatepass'))} bytes)")
                append(v)
            elif ckind is ID:
                if len(v) > MAX_ID_CHARS:
                    return Reject(line, name, printable_value(v),
                                  f"id longer than {MAX_ID_CHARS} characters ({len(v)})")
                append(v)
            elif ckind is TS:
                if len(v) == 13 and v.isascii() and v.isdigit():
                    ms = int(v)
                    if MIN_TS <= ms <= MAX_TS:
                        append(ms)
                        continue
                r = parse_timestamp(v)
                if isinstance(r, str):
                    return Reject(line, name, printable_value(v), r)
                append(r)
            else:  # BOOL
                low = v.lower()
                if low in _TRUE:
                    append(1)
                elif low in _FALSE:
                    append(0)
                else:
                    return Reject(line, name, printable_value(v), "not a boolean (use 1/0, true/false)")
        if complete is not None:
            return complete(tuple(out))
        return tuple(out)

    return parse


def check_bytes(fields: list[str], names: list[str], line: int) -> Reject | None:
    """A Reject for the first field holding a NUL byte or undecodable bytes (else None)."""
    for i, v in enumerate(fields):
        name = names[i] if i < len(names) else None
        if "\x00" in v:
            return Reject(line, name, printable_value(v.strip()), REASON_NUL)
        if _SURROGATE.search(v):
            return Reject(line, name, printable_value(v.strip()), REASON_UTF8)
    return None


def iter_batches(src: CsvFile, header: Header, parse: RowFn, batch_size: int
                 ) -> Iterator[Batch]:
    """Group the file's records into batches of at most ``batch_size`` records, and of at most
    MAX_BATCH_BYTES of input, so that memory stays flat whatever the rows hold."""
    rows: list[tuple[Any, ...]] = []
    lines: list[int] = []
    rejects: list[Reject] = []
    records = 0
    names = header.names
    width = len(names)
    feed = src._feed
    cut_at = feed.pos + MAX_BATCH_BYTES
    for line, fields, error in src.records():
        records += 1
        if fields is None:
            value = src.broken_value
            src.broken_value = None
            rejects.append(Reject(line, None, None if value is None else printable_value(value),
                                  error or "malformed CSV"))
        elif feed.held is not None and (stray := _stray_quote(src, parse, width)):
            # a stray quote closed by another one further down: cut back to its line
            first = src.last_lines()[0]
            rejects.append(Reject(first, None, printable_value(src.first_line_text()),
                                  f"{stray}; reading went on at line {first + 1}"))
            src.cut_record()
        else:
            bad = src.bad_lines_from(line) and check_bytes(fields, names, line)
            r = bad or parse(fields, line)
            if type(r) is tuple:
                rows.append(r)
                lines.append(line)
            else:
                if feed.held is not None:  # name the lines: a stray quote is easy to find
                    first, last = src.last_lines()
                    r = dataclasses.replace(r, reason=(  # type: ignore[arg-type]
                        f"{r.reason} (the record runs over lines {first}-{last}: a quoted "  # type: ignore[union-attr]
                        "value holds line breaks; check its quotes)"))
                rejects.append(r)  # type: ignore[arg-type]
        if records >= batch_size or feed.pos >= cut_at:
            yield Batch(rows, lines, rejects, records, src.offset(), src.line, src.bytes_read())
            rows, lines, rejects, records = [], [], [], 0
            cut_at = feed.pos + MAX_BATCH_BYTES
    yield Batch(rows, lines, rejects, records, src.offset(), src.line, src.bytes_read(),
                final=True)


def _stray_quote(src: CsvFile, parse: RowFn, width: int) -> str | None:
    """Why the last record, which runs over several lines, is a stray quote and not a value
    with line breaks (None when it reads as a proper multi-line value).

    A proper one closes its quote right before a comma or the end of a line; the lines it
    holds are not rows of their own (valid, with all the header's fields), and its first and
    last lines are not both such rows once their quote characters are taken out.
    """
    first, last = src.last_lines()
    lines = src.record_lines()
    try:
        next(csv.reader(lines, strict=True))
    except (csv.Error, StopIteration):
        return (f"unterminated quote: the quote opened on line {first} ends on line {last} "
                "in the middle of a value")

    def is_row(text: str) -> bool:
        if text.count(",") < width - 1:
            return False
        try:
            fields = next(csv.reader([text]))
        except (csv.Error, StopIteration):
            return False
        return len(fields) == width and type(parse(fields, 0)) is tuple

    rows = (f"unterminated quote: the quote opened on line {first} runs to line {last} over "
            "lines that are rows of their own")
    if any(is_row(text) for text in lines[1:-1][:8]):
        return rows
    if is_row(lines[0].replace('"', "")) and is_row(lines[-1].replace('"', "")):
        return rows
    return None


def read_all(path: Path, kind: str | None = None, *, site_id: str | None = None,
             now_ms: int = 0) -> tuple[Header, list[tuple[Any, ...]], list[Reject]]:
    """Parse a whole file in memory (tests, small files): header, good rows, rejects."""
    with CsvFile(path) as src:
        return _read_everything(src, kind or kind_from_path(path), site_id, now_ms)


def parse_text(text: str | bytes, kind: str, *, site_id: str | None = None, now_ms: int = 0,
               tmp_dir: Path | None = None) -> tuple[Header, list[tuple[Any, ...]], list[Reject]]:
    """Parse CSV content given as text/bytes (via an in-memory stream)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return _read_everything(_MemoryCsv(data), kind, site_id, now_ms)


def _read_everything(src: CsvFile, kind: str | None, site_id: str | None, now_ms: int
                     ) -> tuple[Header, list[tuple[Any, ...]], list[Reject]]:
    kind, names = src.read_header(kind)
    header = map_header(kind, names, site_id=site_id)
    parse = make_row_parser(header, site_id=site_id, now_ms=now_ms)
    rows: list[tuple[Any, ...]] = []
    rejects: list[Reject] = []
    for b in iter_batches(src, header, parse, 10_000):
        rows.extend(b.rows)
        rejects.extend(b.rejects)
    return header, rows, rejects


class _MemoryCsv(CsvFile):
    def __init__(self, data: bytes) -> None:
        self.path = Path("<memory>")
        self._raw = io.BytesIO(data)
        self._stream = self._raw
        self._setup(False, None)
