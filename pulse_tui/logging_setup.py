"""Logging: to a file while the TUI owns the screen, to stderr for the headless worker."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: Path | None, *, debug: bool = False, stderr: bool = False) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if stderr:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    elif log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError:
            handler = logging.NullHandler()
    else:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    for noisy in ("httpx", "httpcore", "watchfiles", "asyncio", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
