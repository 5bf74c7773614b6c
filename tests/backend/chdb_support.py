"""chdb in tests: the embedded engine serves one directory per process, so every test of a
process shares one directory (removed at exit) and gets a fresh database in it."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

_DIR: list[Path] = []


def chdb_dir() -> Path:
    pytest.importorskip("chdb")
    if not _DIR:
        _DIR.append(Path(tempfile.mkdtemp(prefix="pulse-chdb-")))
        atexit.register(shutil.rmtree, _DIR[0], True)
    return _DIR[0]


def fresh_chdb_url() -> str:
    """A chdb events store URL on this process's directory with a database of its own."""
    return f"chdb://{chdb_dir()}?database=t{uuid.uuid4().hex[:12]}"
