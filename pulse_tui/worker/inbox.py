"""The import folder on disk: which files count, when they have settled, moves, retry, the lock."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pulse_tui import safefs
from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import control_conn
from pulse_tui.errors import PulseError
from pulse_tui.ingest import kinds
from pulse_tui.safefs import UnsafePathError, shown
from pulse_tui.store import worker_jobs as jobs_sql

PROCESSED = "processed"
log = logging.getLogger("pulse_tui.worker")

# the services' callers pass the Backends (a bare connection: the PULSE file itself)
Target = Backends | sqlite3.Connection

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
    """Kind name -> its inbox folder."""
    return {kind: import_dir / folder for folder, kind in kinds.folders().items()}


def ensure_folders(import_dir: Path) -> None:
    """Create the import folder, its inbox subfolders and the processed/failed folders.

    Raises PulseError when the import folder itself cannot be created; a subfolder that is a
    symbolic link or not a folder is reported by :func:`folder_problem` instead.
    """
    try:
        import_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PulseError(f"cannot create import folder {shown(import_dir)}: "
                         f"{exc.strerror or exc}") from exc
    for sub in (*kinds.folders(), PROCESSED, FAILED):
        if not os.path.lexists(import_dir / sub):
            try:
                (import_dir / sub).mkdir(exist_ok=True)
            except OSError as exc:
                raise PulseError(f"cannot create import folder {shown(import_dir / sub)}: "
                                 f"{exc.strerror or exc}") from exc


def open_import_dir(import_dir: Path) -> int:
    """A descriptor of the import folder (the configured path may itself be a link)."""
    try:
        return os.open(import_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafePathError(f"cannot open import folder {shown(import_dir)}: "
                              f"{exc.strerror or exc}") from exc


def open_subfolder(import_dir: Path, sub: str) -> int:
    """A descriptor of ``<import_dir>/<sub>``, a real folder (created when missing, refused
    with UnsafePathError when it is a symbolic link or not a folder)."""
    top = open_import_dir(import_dir)
    try:
        return safefs.open_folder(Path(sub), dir_fd=top, create=True)
    except UnsafePathError as exc:
        raise UnsafePathError(str(exc).replace(shown(sub), shown(import_dir / sub), 1)) from exc
    finally:
        os.close(top)


def folder_problem(import_dir: Path) -> str | None:
    """Why files cannot be taken from or moved within the import folder now (None: fine).

    Missing folders are created; a subfolder that is a symbolic link or not a folder, or
    processed/failed not writable, is a problem: the worker imports nothing until it is fixed.
    """
    for sub in (*kinds.folders(), PROCESSED, FAILED):
        try:
            fd = open_subfolder(import_dir, sub)
        except UnsafePathError as exc:
            return str(exc)
        os.close(fd)
        if sub in (PROCESSED, FAILED) and not os.access(import_dir / sub, os.W_OK | os.X_OK):
            return f"{shown(import_dir / sub)} is not writable"
    return None


def kind_of(import_dir: Path, path: Path) -> str | None:
    """The import type of ``path`` when it is a file the worker should take, else None."""
    name = path.name
    if ignored_name(name):
        return None
    parent = path.parent
    if parent == import_dir:
        if name in (*kinds.folders(), PROCESSED, FAILED):
            return None  # the folders themselves (even when one is a link), never inputs
        # longest type name first, so a type that prefixes another is not shadowed
        for kind in kinds.by_longest_name():
            if name.startswith(kind):
                return kind
        return None
    if parent.parent == import_dir:
        return kinds.folders().get(parent.name)
    return None


def candidate(path: Path) -> bool:
    """Anything but a folder (a link is judged as itself): regular files are imported;
    links, pipes, sockets and devices are refused later, with the reason."""
    try:
        return not stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def scan(import_dir: Path) -> dict[Path, str]:
    """Every candidate in the inbox (see :func:`candidate`), with its type. An inbox
    subfolder that is itself a link is not looked into."""
    found: dict[Path, str] = {}
    dirs = [import_dir, *inbox_dirs(import_dir).values()]
    for folder in dirs:
        if folder != import_dir and folder.is_symlink():
            continue
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
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

    def next_due(self) -> float | None:
        """Seconds until the first waiting file may have settled (0: look now); None when no
        file waits. The worker sleeps this long instead of polling."""
        if not self._files:
            return None
        first = min(w.since for w in self._files.values()) + self.settle_seconds
        return max(0.0, first - self._monotonic())

    def pending(self) -> list[Path]:
        return sorted(self._files)

    def settled(self) -> list[tuple[Path, str]]:
        """Files whose size and mtime have not changed for settle_seconds (oldest first)."""
        now = self._monotonic()
        ready: list[tuple[float, Path, str]] = []
        for path, watch in list(self._files.items()):
            try:
                st = os.lstat(path)  # a link is judged as itself, never by its target
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
    neither the file nor its errors file exists yet (names kept within the file system's
    limit, see :func:`pulse_tui.safefs.fit_name`)."""
    stem, ext = split_ext(name)
    reserved = set(taken)
    n = 0
    while True:
        candidate_name = name if n == 0 else safefs.fit_name(stem, f".{n}{ext}")
        if n == 0 and len(os.fsencode(name)) > safefs.NAME_MAX:
            candidate_name = safefs.fit_name(stem, ext)
        candidate = folder / candidate_name
        errors = folder / errors_name(candidate_name)
        if (not os.path.lexists(candidate) and not os.path.lexists(errors)
                and candidate not in reserved):
            return candidate
        n += 1


def _open_parent(path: Path, import_dir: Path | None, *, create: bool) -> int:
    folder = path.parent
    if import_dir is not None and folder == import_dir:
        return open_import_dir(import_dir)
    if import_dir is not None and folder.parent == import_dir:
        top = open_import_dir(import_dir)
        try:
            return safefs.open_folder(Path(folder.name), dir_fd=top, create=create)
        except UnsafePathError as exc:
            raise UnsafePathError(str(exc).replace(shown(folder.name), shown(folder), 1)
                                  ) from exc
        finally:
            os.close(top)
    return safefs.open_folder(folder, create=create)


class _Folders:
    """Descriptors of the source and destination folders of a move (closed on exit).

    Subfolders of ``import_dir`` are opened relative to it and must be real folders (the
    destination is created when missing)."""

    def __init__(self, src: Path, dest: Path, import_dir: Path | None) -> None:
        self.src_fd = _open_parent(src, import_dir, create=False)
        try:
            self.dest_fd = _open_parent(dest, import_dir, create=True)
        except BaseException:
            os.close(self.src_fd)
            raise

    def __enter__(self) -> _Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.src_fd)
        os.close(self.dest_fd)


def _move_at(folders: _Folders, src: str, dest: str) -> None:
    try:
        os.link(src, dest, src_dir_fd=folders.src_fd, dst_dir_fd=folders.dest_fd,
                follow_symlinks=False)  # a link is moved as itself
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP,
                             errno.EMLINK, errno.ENOSYS):
            raise
        if safefs.lexists(dest, folders.dest_fd):
            raise FileExistsError(errno.EEXIST, "destination exists", dest) from exc
        os.rename(src, dest, src_dir_fd=folders.src_fd, dst_dir_fd=folders.dest_fd)
        return
    os.unlink(src, dir_fd=folders.src_fd)


def move_no_overwrite(src: Path, dest: Path, import_dir: Path | None = None) -> None:
    """Move ``src`` to ``dest`` without ever replacing an existing ``dest``.

    Both folders are opened without following a link in their last part and the move is done
    relative to them; a link at ``src`` is moved as itself. Hard link then unlink (a crash in
    between leaves both names of one file, which :func:`finish_move` resolves); plain rename
    where links are not supported.
    """
    with _Folders(src, dest, import_dir) as folders:
        _move_at(folders, src.name, dest.name)


def _lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def finish_move(src: Path, dest: Path, import_dir: Path | None = None) -> bool:
    """Complete an interrupted move of ``src`` to ``dest``; True when the file is at ``dest``."""
    with _Folders(src, dest, import_dir) as folders:
        s = _lstat_at(src.name, folders.src_fd)
        d = _lstat_at(dest.name, folders.dest_fd)
        if d is not None and s is not None:
            if (s.st_dev, s.st_ino) == (d.st_dev, d.st_ino):
                os.unlink(src.name, dir_fd=folders.src_fd)
            return True  # otherwise src is a new file that arrived under the same name
        if d is not None:
            return True
        if s is not None:
            _move_at(folders, src.name, dest.name)
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

    def _open(self, flags: int) -> int:
        """The lock file, never through a link, and only when it is a plain file of its own
        (a hard link to another file, e.g. the database, is refused: it would be truncated)."""
        top = open_import_dir(self.path.parent)
        try:
            fd = os.open(LOCK_NAME, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         0o644, dir_fd=top)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(
                    f"the worker's lock file {shown(self.path)} is a symbolic link; PULSE "
                    "never writes through links: remove it and start again") from exc
            if isinstance(exc, FileNotFoundError):
                raise
            raise UnsafePathError(f"cannot open the worker's lock file {shown(self.path)}: "
                                  f"{exc.strerror or exc}") from exc
        finally:
            os.close(top)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = ("is not a plain file" if not stat.S_ISREG(st.st_mode)
                    else "is a hard link to another file")
            raise UnsafePathError(f"the worker's lock file {shown(self.path)} {what}; "
                                  "remove it and start again")
        return fd

    def holder(self) -> dict[str, str]:
        """What the lock file says (pid, host, db) — best effort."""
        info: dict[str, str] = {}
        try:
            fd = self._open(os.O_RDONLY)
        except (OSError, PulseError):
            return info
        try:
            with os.fdopen(fd, "rb") as fh:
                text = fh.read(4096).decode("utf-8", "replace")
        except OSError:
            return info
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key:
                info[key.strip()] = value.strip()
        return info

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = self._open(os.O_RDWR | os.O_CREAT)
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
        raise PulseError(f"{shown(path)} is not in {shown(import_dir / FAILED)}")
    if not os.path.lexists(path):
        raise PulseError(f"{shown(path)} does not exist")
    jobs = jobs_sql.jobs_with_result(conn, str(path))
    kind = jobs[0].type if jobs else None
    name = Path(jobs[0].source_path).name if jobs and jobs[0].source_path else path.name
    if kind is None:
        kind = kind_of(import_dir, import_dir / path.name)
    if kind is None:
        raise PulseError(f"cannot tell the type of {shown(path.name)}; move it into "
                         f"{import_dir}/{kinds.folder_list()} yourself")
    if ignored_name(name):
        name = path.name
    dest = unique_destination(import_dir / kinds.folder_of(kind), name)
    move_no_overwrite(path, dest, import_dir)
    try:  # the stale errors file, in failed/ opened without following a link
        fd = open_subfolder(import_dir, FAILED)
    except UnsafePathError as exc:
        log.warning("the errors file of %s stays: %s", shown(path.name), exc)
    else:
        try:
            os.unlink(errors_name(path.name), dir_fd=fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    for job in jobs:
        jobs_sql.set_retried(conn, job.id, str(dest))
    return dest


def retry_failed_job(target: Target, import_dir: Path, job_id: str) -> Path:
    """Retry the failed file of ``job_id`` (the Jobs pane works with job ids)."""
    conn = control_conn(target)
    row = jobs_sql.get_job(conn, job_id)
    if row is None or row.status != "failed" or not row.result_path:
        raise PulseError(f"job {job_id} has no failed file to retry")
    return retry_failed_file(conn, import_dir, Path(row.result_path))
