"""The one place that knows which implementation holds the events (add a backend: one line)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.sqlite import open_sqlite
from pulse_tui.errors import UsageError

# events_store name -> opener(database path, migrate=...); control data is always in SQLite
BACKENDS: dict[str, Callable[..., Backends]] = {
    "sqlite": open_sqlite,
}


def open_backends(db_path: Path, events_store: str = "sqlite", *,
                  migrate: bool = True) -> Backends:
    """The events backend and the control store for one PULSE database (``migrate=False``:
    never upgrade an existing file's schema)."""
    opener = BACKENDS.get(events_store.split(":", 1)[0])
    if opener is None:
        raise UsageError(f"unknown events store {events_store!r} "
                         f"(known: {', '.join(sorted(BACKENDS))})")
    return opener(Path(db_path), migrate=migrate)
