"""CSV reading and row validation for imports (events, users, cohort_members); pure, no SQL."""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pulse_tui.models import member_id_for
from pulse_tui.safefs import open_input

KINDS = ("events", "users", "cohort_members")

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

# column kinds
ID, TEXT, TS, BOOL = "id", "text", "ts", "bool"

REASON_MISSING = "missing required value"
REASON_NUL = "NUL byte in value"
REASON_UTF8 = "bytes that are not UTF-8"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: str
    required: bool = False


# target columns in the order the writer inserts them
COLUMNS: dict[str, tuple[Column, ...]] = {
    "events": (
        Column("event_id", ID, True),
        Column("site_id", ID, True),
        Column("event_type", TEXT, True),
        Column("timestamp_ms", TS, True),
        Column("session_id", ID, True),
        Column("user_id", ID),
        Column("url", TEXT),
        Column("referrer", TEXT),
        Column("country", TEXT),
        Column("device_type", TEXT),
        Column("created_at", TS),
    ),
    "users": (
        Column("user_id", ID, True),
        Column("site_id", ID),
        Column("name", TEXT),
        Column("email", TEXT),
        Column("company", TEXT),
        Column("plan", TEXT),
        Column("created_at", TS),
        Column("updated_at", TS),
    ),
    "cohort_members": (
        Column("member_id", ID),
        Column("cohort_id", ID, True),
        Column("session_id", ID),
        Column("user_id", ID, True),
        Column("joined_at", TS),
        Column("last_seen_at", TS),
        Column("is_active", BOOL),
    ),
}

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
    """events / users / cohort_members from the parent folder name or the file name prefix."""
    parent = path.parent.name.lower()
    if parent in KINDS:
        return parent
    name = path.name.lower()
    for kind in ("cohort_members", "events", "users"):
        if name.startswith(kind):
            return kind
    return None


def normalise_name(name: str) -> str:
    name = name.strip().lower()
    return ALIASES.get(name, name)


def kind_from_header(names: list[str]) -> str | None:
    cols = {normalise_name(n) for n in names}
    if "event_id" in cols or "event_type" in cols:
        return "events"
    if "cohort_id" in cols:
        return "cohort_members"
    if "user_id" in cols:
        return "users"
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


def _lines(stream: IO[bytes], bad: list[int], first_line: int) -> Iterator[str]:
    """Physical lines decoded one at a time; lines with bad bytes or NUL are noted in ``bad``."""
    for number, raw in enumerate(stream, first_line):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "surrogateescape")
            bad.append(number)
        else:
            if "\x00" in text:
                bad.append(number)
        yield text


class CsvFile:
    """Streams records of one CSV (or .csv.gz) file, with physical line numbers and offsets.

    Use as a context manager: ``read_header()``, optionally ``seek(offset, line)`` to resume,
    then ``batches(...)``.
    """

    def __init__(self, path: Path, *, follow_symlinks: bool = True) -> None:
        self.path = path
        try:
            self._raw: IO[bytes] = open_input(path, follow_symlinks=follow_symlinks)
        except OSError as exc:
            raise FileRejected(f"cannot read {path.name}: {exc.strerror or exc}") from exc
        self._stream: IO[bytes] = (
            gzip.GzipFile(fileobj=self._raw, mode="rb") if is_gzip(path) else self._raw
        )
        self._bad: list[int] = []
        self._base = 0  # physical lines before the current reader's first line
        self._skip_bom()
        self._reader = self._make_reader(0)

    def _skip_bom(self) -> None:
        try:
            head = self._stream.read(len(_BOM))
            if head != _BOM:
                self._stream.seek(0)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self.close()
            raise FileRejected(f"cannot read {self.path.name}: {exc}") from exc

    def _make_reader(self, lines_before: int) -> Any:
        self._base = lines_before
        self._bad = []
        return csv.reader(_lines(self._stream, self._bad, lines_before + 1))

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
        return self._base + self._reader.line_num

    def offset(self) -> int:
        return self._stream.tell()

    def bytes_read(self) -> int:
        return self._raw.tell()

    def fstat(self) -> os.stat_result:
        """The open file's status (it may differ from what the path names now)."""
        return os.fstat(self._raw.fileno())

    def read_header(self, kind: str | None) -> tuple[str, list[str]]:
        """The header's raw names and the import kind (given, or told from the header)."""
        try:
            while True:
                row = next(self._reader)
                if any(c.strip() for c in row):
                    break
        except StopIteration:
            raise FileRejected("empty file: no header line") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise FileRejected(f"cannot read {self.path.name}: {exc}") from exc
        except csv.Error as exc:
            raise FileRejected(f"not a CSV file: {exc}") from exc
        if self._bad:
            raise FileRejected("not a UTF-8 CSV file: the header has bytes that are not UTF-8 "
                               "or a NUL byte")
        if kind is None:
            kind = kind_from_header(row)
            if kind is None:
                raise FileRejected("cannot tell the import type from the file name or header; "
                                   "use --type events|users|cohort_members")
        return kind, row

    def seek(self, offset: int, line: int) -> None:
        """Continue after a checkpoint: ``offset`` bytes into the (decompressed) stream."""
        self._stream.seek(offset)
        self._reader = self._make_reader(line)

    def records(self) -> Iterator[tuple[int, list[str] | None, str | None]]:
        """(start line, fields, csv error) per non-blank record."""
        reader = self._reader
        base = self._base
        prev = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield base + prev + 1, None, str(exc)
                prev = reader.line_num
                continue
            start = base + prev + 1
            prev = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield start, row, None

    def bad_lines_from(self, start: int) -> bool:
        bad = self._bad
        if not bad:
            return False
        if bad[-1] >= start:
            return True
        if len(bad) > 64:  # keep the list short; old entries can no longer matter
            del bad[:-1]
        return False


def map_header(kind: str, names: list[str], *, site_id: str | None) -> Header:
    """Match header names to the kind's columns; a missing required column -> FileRejected."""
    columns = COLUMNS[kind]
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
    kind = header.kind
    width = len(header.names)
    spec: list[tuple[int, str, str, bool, Any]] = []
    for col in COLUMNS[kind]:
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
    is_members = kind == "cohort_members"

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
        if is_members and out[0] is None:
            out[0] = member_id_for(out[1], out[3])
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
    """Group the file's records into batches of at most ``batch_size`` records."""
    rows: list[tuple[Any, ...]] = []
    lines: list[int] = []
    rejects: list[Reject] = []
    records = 0
    names = header.names
    for line, fields, error in src.records():
        records += 1
        if fields is None:
            rejects.append(Reject(line, None, None, f"malformed CSV: {error}"))
        else:
            bad = src.bad_lines_from(line) and check_bytes(fields, names, line)
            if bad:
                rejects.append(bad)
            else:
                r = parse(fields, line)
                if type(r) is tuple:
                    rows.append(r)
                    lines.append(line)
                else:
                    rejects.append(r)  # type: ignore[arg-type]
        if records >= batch_size:
            yield Batch(rows, lines, rejects, records, src.offset(), src.line, src.bytes_read())
            rows, lines, rejects, records = [], [], [], 0
    yield Batch(rows, lines, rejects, records, src.offset(), src.line, src.bytes_read())


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
        self._bad = []
        self._base = 0
        self._skip_bom()
        self._reader = self._make_reader(0)
