"""Usage errors are one line on stderr with exit code 2, like every other error."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [
    ["report", "daily", "--bogus"],
    ["simulate", "--rate", "-1"],
    ["no-such-command"],
    ["import"],
])
def test_usage_errors_are_one_line(args: list[str], tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "pulse_tui", *args, "--db",
                          str(tmp_path / "p.db")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("pulse-tui") and "--help" in lines[0]
    assert "Traceback" not in out.stderr
