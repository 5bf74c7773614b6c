"""Export files: safe names, atomic writes into the export dir, CSV/JSON rendering, removal."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from pulse_tui import safefs
from pulse_tui.csvsafe import neutralise_row

log = logging.getLogger(__name__)

TEMP_PREFIX = ".pulse-export-"
TEMP_SUFFIX = ".tmp"
MAX_PART = 60
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ExportWriteError(Exception):
    """The file could not be written; the message is one line for the operator."""


def safe_part(text: str, fallback: str = "export") -> str:
    """A file-name component: letters, digits, ``. _ -`` only; no leading dot; short."""
    cleaned = _UNSAFE.sub("-", text).strip("-.")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:MAX_PART].strip("-.")
    return cleaned or fallback


def file_name(site_id: str, export_type: str, name: str, now_ms: int, fmt: str) -> str:
    """``<site>_<type>_<name>_<YYYYMMDDTHHMMSSZ>.<csv|json>``, sanitised."""
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return (f"{safe_part(site_id, 'site')}_{safe_part(export_type)}_{safe_part(name)}_"
            f"{stamp}.{fmt}")


def _cell(value: object) -> object:
    if isinstance(value, date):
        return value.isoformat()
    return value


def render_csv(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Header then rows; None is an empty cell; text cells neutralised (OWASP)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(neutralise_row(["" if v is None else _cell(v) for v in row]))
    return out.getvalue()


def render_json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=_cell) + "\n"


def records(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[dict[str, object]]:
    return [{c: _cell(v) for c, v in zip(columns, row, strict=True)} for row in rows]


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def write_atomic(export_dir: Path, name: str, content: str) -> Path:
    """Write ``content`` to ``export_dir/name`` atomically: a temp file in the same folder,
    fsync, then a no-overwrite link (``-1``, ``-2`` … before the extension when the name is
    taken), the folder fsynced. Raises ExportWriteError with a one-line reason."""
    if export_dir.exists() and not export_dir.is_dir():
        raise ExportWriteError(f"export dir {export_dir} is not a folder")
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportWriteError(f"cannot create export dir {export_dir}: {_why(exc)}") from exc
    if not export_dir.is_dir():
        raise ExportWriteError(f"export dir {export_dir} is not a folder")
    try:
        dir_fd = os.open(export_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ExportWriteError(f"cannot open export dir {export_dir}: {_why(exc)}") from exc
    try:
        try:  # a new file under an unpredictable name, never through a link
            fd, temp = safefs.create_temp(dir_fd, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        except OSError as exc:
            raise ExportWriteError(f"cannot write to export dir {export_dir}: "
                                   f"{_why(exc)}") from exc
        try:
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(content.encode("utf-8"))
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise ExportWriteError(f"cannot write {temp} in {export_dir}: "
                                       f"{_why(exc)}") from exc
            final = _place(dir_fd, temp, export_dir, name)
        finally:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
    finally:
        os.close(dir_fd)
    return final


def _place(dir_fd: int, temp: str, export_dir: Path, name: str) -> Path:
    """Link the temp file to ``name`` (or ``name-1`` ...) in the folder, never replacing a
    file and never through a link."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    for n in range(1000):
        candidate = name if n == 0 else f"{stem}-{n}{dot}{ext}"
        try:
            os.link(temp, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd,
                    follow_symlinks=False)
            return export_dir / candidate
        except FileExistsError:
            continue
        except OSError as exc:  # a file system without hard links: rename if still free
            if safefs.lexists(candidate, dir_fd):
                continue
            try:
                os.rename(temp, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc2:
                raise ExportWriteError(f"cannot create {export_dir / candidate}: "
                                       f"{_why(exc2)}") from exc
            return export_dir / candidate
    raise ExportWriteError(f"too many files named {name} in {export_dir}")


def inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def remove_export_files(paths: Iterable[str | None], export_dir: str | Path) -> int:
    """Delete files that lie inside the export dir (never elsewhere: rows may come from other
    programs); missing ones are fine. Returns how many were deleted."""
    folder = Path(export_dir)
    n = 0
    for p in paths:
        if not p:
            continue
        path = Path(p)
        if not inside(path, folder):
            log.warning("not deleting %s: outside the export dir %s", path, folder)
            continue
        try:
            path.unlink()
            n += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot delete export file %s: %s", path, _why(exc))
    return n


def remove_stale_temp_files(export_dir: str | Path, older_than_s: float = 86_400.0) -> int:
    """Temp files of writes interrupted by a crash (by file mtime, real time)."""
    folder = Path(export_dir)
    if not folder.is_dir():
        return 0
    limit = time.time() - older_than_s
    n = 0
    for path in folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                n += 1
        except OSError:
            continue
    return n
