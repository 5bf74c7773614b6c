"""Shared fixtures: a real SQLite file in a temporary folder, a fixed clock, settings, polling."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from pulse_tui.clock import Clock, parse_instant
from pulse_tui.config import Settings
from pulse_tui.store.connection import connect

# a small profile in CI, a bigger one when asked for
settings.register_profile("ci", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

FIXED_NOW = "2026-11-25T12:00:00Z"
FIXED_NOW_MS = parse_instant(FIXED_NOW)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                   ) -> None:
    """Never read or write the real user's config, data or log dirs."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local/state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    for var in ("PULSE_DB", "PULSE_IMPORT_DIR", "PULSE_EXPORT_DIR", "PULSE_NOW",
                "PULSE_EVENTS_STORE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fixed_clock() -> Clock:
    return Clock(FIXED_NOW_MS)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "pulse.db"


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    c = connect(db_path)
    yield c
    c.close()


@pytest.fixture
def pulse_settings(tmp_path: Path, db_path: Path) -> Settings:
    s = Settings(
        db=db_path,
        import_dir=tmp_path / "import",
        export_dir=tmp_path / "exports",
        log_file=tmp_path / "pulse-tui.log",
        settle_seconds=0.2,
    )
    for sub in ("events", "users", "cohort_members"):
        (s.import_dir / sub).mkdir(parents=True, exist_ok=True)
    s.export_dir.mkdir(parents=True, exist_ok=True)
    return s


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
               ) -> object:
    """Poll ``predicate`` until it returns a truthy value or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], object], timeout: float = 10.0,
                           interval: float = 0.02) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
