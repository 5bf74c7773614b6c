"""Files PULSE writes in the import and export folders: never through a symbolic link.

Folders are opened with ``O_NOFOLLOW`` and everything inside them is done relative to that
descriptor (``dir_fd``), so a folder swapped for a link after the check cannot redirect a write.
New files are created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) under an unpredictable
name, then linked (never replacing) or renamed into place.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
import stat
from pathlib import Path

from pulse_tui.errors import PulseError

NAME_MAX = 255  # bytes in one file name (Linux, macOS)
TEMP_PREFIX = ".pulse-"
TEMP_SUFFIX = ".tmp"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(PulseError):
    """A path PULSE would write through is a symbolic link or not what it must be."""


def shown(path: object) -> str:
    """A path or name for logs and messages: bytes that are not UTF-8 as ``\\xNN``, control
    characters escaped (see :func:`pulse_tui.textsafe.visible`)."""
    from pulse_tui.textsafe import visible

    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return visible(text)


def open_folder(path: Path, *, dir_fd: int | None = None, create: bool = False) -> int:
    """A descriptor of the real folder ``path`` (its last part must not be a symbolic link).

    ``create`` makes it first when it is missing. Raises UnsafePathError with a clear message.
    """
    if create:
        try:
            os.mkdir(path, 0o755, dir_fd=dir_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UnsafePathError(f"cannot create folder {shown(path)}: "
                                  f"{exc.strerror or exc}") from exc
    try:
        return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        try:
            st = os.lstat(path, dir_fd=dir_fd)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"{shown(path)} is a symbolic link; it must be a real "
                                  "folder (PULSE never writes through links)") from exc
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(f"{shown(path)} is not a folder") from exc
        raise UnsafePathError(f"cannot open folder {shown(path)}: "
                              f"{exc.strerror or exc}") from exc


def create_temp(dir_fd: int, *, prefix: str = TEMP_PREFIX, suffix: str = TEMP_SUFFIX
                ) -> tuple[int, str]:
    """A new empty file in the folder ``dir_fd`` under an unpredictable name (exclusive,
    never through a link): (descriptor open for writing, name)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        name = f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            return os.open(name, flags, 0o644, dir_fd=dir_fd), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name")


def lexists(name: str, dir_fd: int | None = None) -> bool:
    """True when ``name`` exists (a link counts, whatever it points to)."""
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return False
        raise
    return True


def fit_name(stem: str, suffix: str, limit: int = NAME_MAX) -> str:
    """``stem + suffix``, with the stem cut (and a short hash of it added) when the name would
    be longer than the file system allows."""
    name = stem + suffix
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    if len(os.fsencode(suffix)) > limit // 2:
        # an "extension" that long (a name with a dot near its start) leaves no room for the
        # stem: cut the whole name instead; the hash still tells suffixes apart
        return fit_name(stem + suffix, "", limit)
    digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:8]
    if len(os.fsencode(suffix)) > limit // 2:
        # an "extension" this long (a name with an early dot) is no extension: the whole
        # name is cut, and the hash is of all of it (so ".1", ".2" ... still differ)
        stem, suffix = name, ""
        digest = hashlib.sha256(raw).hexdigest()[:8]
    keep = max(1, limit - len(os.fsencode(suffix)) - len(digest) - 1)
    cut = os.fsencode(stem)[:keep]
    try:
        os.fsencode(stem).decode("utf-8")
    except UnicodeDecodeError:
        head = os.fsdecode(cut)
    else:
        head = cut.decode("utf-8", "ignore")  # never split a character
    return f"{head}~{digest}{suffix}"


def identity(st: os.stat_result) -> str:
    """What says "the same file, unchanged": device, inode, size and modification time."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def open_input(path: Path, *, follow_symlinks: bool = True, inside: Path | None = None
               ) -> io.BufferedReader:
    """Open a file to import, for reading: never a FIFO or device (no blocking open), and
    not through a link unless ``follow_symlinks`` (a file named on the command line may be
    a link; one dropped into the import folder may not).

    ``inside``: the import folder (it may be a link itself); a file in one of its subfolders
    is opened relative to that subfolder opened without following a link, so a subfolder
    swapped for a link after it was checked is never read through."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    folder_fd: int | None = None
    if inside is not None and path.parent != inside and path.parent.parent == inside:
        top = os.open(inside, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            folder_fd = os.open(path.parent.name, _DIR_FLAGS, dir_fd=top)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise OSError(exc.errno, f"the folder {shown(path.parent.name)} is not a "
                              "real folder (PULSE never reads through links)") from exc
            raise
        finally:
            os.close(top)
    try:
        fd = os.open(path if folder_fd is None else path.name, flags, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise OSError(errno.ELOOP, "symbolic links are not imported") from exc
        raise
    finally:
        if folder_fd is not None:
            os.close(folder_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
