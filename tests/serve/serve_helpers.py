"""Start ``pulse-tui serve`` as a real process on a free loopback port; find its children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conftest import wait_until

from pulse_tui.config import Settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), zombies left out."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        if state != "Z":
            parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    port: int
    log_file: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def write_config(settings: Settings, **extra: str) -> Path:
    """A config file beside the database that sends the log where the test reads it."""
    path = settings.db.parent / "config.toml"
    lines = [f'log_file = "{settings.log_file}"']
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def serve_argv(settings: Settings, *args: str) -> list[str]:
    config = settings.db.parent / "config.toml"
    if not config.exists():
        write_config(settings)
    return [sys.executable, "-m", "pulse_tui", "--db", str(settings.db),
            "--import-dir", str(settings.import_dir), "--export-dir", str(settings.export_dir),
            "--config", str(config), "serve", *args]


def _pump(stream, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)


@contextmanager
def running_serve(settings: Settings, *args: str, env: dict[str, str] | None = None,
                  port: int | None = None) -> Iterator[ServeProcess]:
    """``pulse-tui serve`` on a free loopback port, ready (it printed where to go); stopped
    with SIGTERM afterwards, and killed if it does not stop."""
    port = port or free_port()
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.Popen(serve_argv(settings, "--port", str(port), *args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env)
    served = ServeProcess(proc, port, settings.log_file)
    for stream, sink in ((proc.stdout, served.stdout), (proc.stderr, served.stderr)):
        threading.Thread(target=_pump, args=(stream, sink), daemon=True).start()
    try:
        wait_until(lambda: "stops it" in served.output() or proc.poll() is not None,
                   timeout=30)
        assert proc.poll() is None, f"serve exited early: {served.output()}"
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                for child in children_of(proc.pid):
                    os.kill(child, signal.SIGKILL)
                proc.kill()
                proc.wait()
