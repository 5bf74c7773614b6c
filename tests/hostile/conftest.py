"""Fixtures for the hostile import folder tests: the worker fixtures, a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulse_tui.config import Settings
from tests.worker.conftest import (  # noqa: F401 - fixtures and helpers shared with tests/worker
    HEADER,
    Recorder,
    event_rows,
    make_worker,
    query,
    scalar,
    write_events,
)

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``python -m pulse_tui worker`` on the test's database and import folder; its log (the
    headless worker logs to stderr) goes to a file, so a long run never blocks on a pipe."""

    def __init__(self, settings: Settings, tmp_path: Path, *, batch_rows: int = 500) -> None:
        self.settings = settings
        n = len(list(tmp_path.glob("worker-*.log")))
        self.log_path = tmp_path / f"worker-{n}.log"
        config = tmp_path / "config.toml"
        config.write_text(f"settle_seconds = {settings.settle_seconds}\n")
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PULSE_IMPORT_BATCH_ROWS": str(batch_rows)}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulse_tui", "worker", "--db", str(settings.db),
             "--import-dir", str(settings.import_dir), "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=self._log, env=env, cwd=ROOT)

    def log(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait, and the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def worker_process(pulse_settings: Settings, tmp_path: Path
                   ) -> Iterator[type[WorkerProcess]]:
    """A factory of worker processes; any still running at the end are stopped."""
    started: list[WorkerProcess] = []

    def spawn(settings: Settings | None = None, **kwargs: object) -> WorkerProcess:
        proc = WorkerProcess(settings or pulse_settings, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield spawn  # type: ignore[misc]
    for proc in started:
        proc.stop()
