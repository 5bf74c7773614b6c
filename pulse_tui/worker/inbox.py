"""The import folder on disk: which files count, when they have settled, moves, retry, the lock."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pulse_tui.config import IMPORT_TYPES
from pulse_tui.errors import PulseError
from pulse_tui.store import worker_jobs as jobs_sql

PROCESSED = "processed"
FAILED = "failed"
LOCK_NAME = ".pulse-worker.lock"
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", "~", ".errors.csv")
# extensions kept together when a collision suffix is inserted ("a.csv.gz" -> "a.1.csv.gz")
COMPOUND_EXTENSIONS = (".csv.gz",)


def ignored_name(name: str) -> bool:
    """Dotfiles and names scp, rsync and editors use while writing (and our own errors files)."""
    lower = name.lower()
    return name.startswith(".") or lower.endswith(IGNORED_SUFFIXES)


def inbox_dirs(import_dir: Path) -> dict[str, Path]:
    return {kind: import_dir / kind for kind in IMPORT_TYPES}


def ensure_folders(import_dir: Path) -> None:
    """Create the inbox subfolders and the processed/failed folders."""
    for sub in (*IMPORT_TYPES, PROCESSED, FAILED):
        try:
            (import_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PulseError(f"cannot create import folder {import_dir / sub}: "
                             f"{exc.strerror or exc}") from exc


def kind_of(import_dir: Path, path: Path) -> str | None:
    """The import type of ``path`` when it is a file the worker should take, else None."""
    name = path.name
    if ignored_name(name):
        return None
    parent = path.parent
    if parent == import_dir:
        # longest type name first, so a future type that prefixes another is not shadowed
        for kind in sorted(IMPORT_TYPES, key=len, reverse=True):
            if name.startswith(kind):
                return kind
        return None
    if parent.parent == import_dir and parent.name in IMPORT_TYPES:
        return parent.name
    return None


def scan(import_dir: Path) -> dict[Path, str]:
    """Every candidate file in the inbox (regular files only), with its type."""
    found: dict[Path, str] = {}
    dirs = [import_dir, *inbox_dirs(import_dir).values()]
    for folder in dirs:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
            except OSError:
                continue
            path = Path(entry.path)
            kind = kind_of(import_dir, path)
            if kind is not None:
                found[path] = kind
    return found


@dataclass
class _Watch:
    kind: str
    size: int
    mtime_ns: int
    since: float


class SettleTracker:
    """Remembers candidate files and says which ones held size and mtime still long enough."""

    def __init__(self, settle_seconds: float, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self.settle_seconds = settle_seconds
        self._monotonic = monotonic
        self._files: dict[Path, _Watch] = {}

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, path: object) -> bool:
        return path in self._files

    def add(self, path: Path, kind: str) -> None:
        if path not in self._files:
            self._files[path] = _Watch(kind, -1, -1, self._monotonic())

    def forget(self, path: Path) -> None:
        self._files.pop(path, None)

    def observed_size(self, path: Path) -> int | None:
        """The size last seen for ``path`` (None when not tracked, -1 before the first look)."""
        watch = self._files.get(path)
        return None if watch is None else watch.size

    def pending(self) -> list[Path]:
        return sorted(self._files)

    def settled(self) -> list[tuple[Path, str]]:
        """Files whose size and mtime have not changed for settle_seconds (oldest first)."""
        now = self._monotonic()
        ready: list[tuple[float, Path, str]] = []
        for path, watch in list(self._files.items()):
            try:
                st = path.stat()
            except FileNotFoundError:
                del self._files[path]  # renamed away or deleted (e.g. a .part renamed later)
                continue
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != (watch.size, watch.mtime_ns):
                watch.size, watch.mtime_ns, watch.since = st.st_size, st.st_mtime_ns, now
                continue
            if now - watch.since >= self.settle_seconds:
                ready.append((watch.since, path, watch.kind))
        ready.sort()
        return [(path, kind) for _, path, kind in ready]


def split_ext(name: str) -> tuple[str, str]:
    """("events", ".csv") for events.csv, ("events", ".csv.gz") for events.csv.gz."""
    lower = name.lower()
    for ext in COMPOUND_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], name[-len(ext):]
    stem, ext = os.path.splitext(name)
    return stem, ext


def errors_name(name: str) -> str:
    """``<name without extension>.errors.csv`` (the importer's rule: .gz, then .csv dropped)."""
    from pulse_tui.ingest.importer import errors_file_name

    return errors_file_name(name)


def unique_destination(folder: Path, name: str, *, taken: Iterable[Path] = ()) -> Path:
    """``folder/name``, or ``name`` with ``.1``, ``.2`` ... before the extension, such that
    neither the file nor its errors file exists yet."""
    stem, ext = split_ext(name)
    reserved = set(taken)
    n = 0
    while True:
        candidate_name = name if n == 0 else f"{stem}.{n}{ext}"
        candidate = folder / candidate_name
        errors = folder / errors_name(candidate_name)
        if (not candidate.exists() and not candidate.is_symlink() and not errors.exists()
                and candidate not in reserved):
            return candidate
        n += 1


def move_no_overwrite(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest`` without ever replacing an existing ``dest``.

    Hard link then unlink (a crash in between leaves both names of one file, which
    :func:`finish_move` resolves); plain rename where links are not supported.
    """
    try:
        os.link(src, dest)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP,
                             errno.EMLINK, errno.ENOSYS):
            raise
        if dest.exists():
            raise FileExistsError(errno.EEXIST, "destination exists", str(dest)) from exc
        os.rename(src, dest)
        return
    os.unlink(src)


def finish_move(src: Path, dest: Path) -> bool:
    """Complete an interrupted move of ``src`` to ``dest``; True when the file is at ``dest``."""
    src_exists = src.exists()
    dest_exists = dest.exists()
    if dest_exists and src_exists:
        try:
            same = os.path.samefile(src, dest)
        except OSError:
            same = False
        if same:
            os.unlink(src)
        return True  # otherwise src is a new file that arrived under the same name
    if dest_exists:
        return True
    if src_exists:
        move_no_overwrite(src, dest)
        return True
    return False


class InboxLockedError(PulseError):
    """Another worker (of another database) uses this import folder."""


class InboxLock:
    """An exclusive ``flock`` on ``<import_dir>/.pulse-worker.lock``; the file says who holds it."""

    def __init__(self, import_dir: Path, db: Path) -> None:
        self.path = import_dir / LOCK_NAME
        self.db = str(Path(db).resolve())
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict[str, str]:
        """What the lock file says (pid, host, db) — best effort."""
        info: dict[str, str] = {}
        try:
            for line in self.path.read_text("utf-8").splitlines():
                key, _, value = line.partition("=")
                if key:
                    info[key.strip()] = value.strip()
        except OSError:
            pass
        return info

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={os.getpid()}\nhost={os.uname().nodename}\ndb={self.db}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


# ---------------------------------------------------------------- retrying a failed file
def retry_failed_file(conn: sqlite3.Connection, import_dir: Path, path: Path) -> Path:
    """Move ``failed/NAME`` back into its inbox so the worker imports it again."""
    import_dir = Path(import_dir).absolute()
    path = Path(path)
    if not path.is_absolute():
        path = import_dir / FAILED / path
    if path.parent != import_dir / FAILED:
        raise PulseError(f"{path} is not in {import_dir / FAILED}")
    if not path.is_file():
        raise PulseError(f"{path} does not exist")
    jobs = jobs_sql.jobs_with_result(conn, str(path))
    kind = jobs[0].type if jobs else None
    name = jobs[0].file_name if jobs else path.name
    if kind is None:
        kind = kind_of(import_dir, import_dir / path.name)
    if kind is None:
        raise PulseError(f"cannot tell the type of {path.name}; move it into "
                         f"{import_dir}/events, users or cohort_members yourself")
    if ignored_name(name):
        name = path.name
    dest = unique_destination(import_dir / kind, name)
    move_no_overwrite(path, dest)
    stale = path.parent / errors_name(path.name)
    if stale.exists():
        stale.unlink()
    for job in jobs:
        jobs_sql.set_retried(conn, job.id, str(dest))
    return dest


def retry_failed_job(conn: sqlite3.Connection, import_dir: Path, job_id: str) -> Path:
    """Retry the failed file of ``job_id`` (the Jobs pane works with job ids)."""
    row = jobs_sql.get_job(conn, job_id)
    if row is None or row.status != "failed" or not row.result_path:
        raise PulseError(f"job {job_id} has no failed file to retry")
    return retry_failed_file(conn, import_dir, Path(row.result_path))
