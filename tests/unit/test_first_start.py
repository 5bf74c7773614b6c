"""First start (issue 16, item 10): the demo says what it is doing while it builds, `--demo --help`
shows the demo's own paths, `report --help` names every report, and a member import into a
cohort that does not exist says how to create it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import FIXED_NOW_MS

from pulse_tui.demo import build_history, sample_data_dir

# SPEC 3 / 8: every report name `pulse-tui report NAME` accepts
REPORT_NAMES = ["daily", "breakdown", "top-urls", "top-referrers", "top-countries",
                "top-devices", "funnel", "cohorts", "retention"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pulse_tui", *args], env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_demo_help_prints_the_demo_paths_not_the_normal_ones() -> None:
    data_home = Path(os.environ["XDG_DATA_HOME"])
    demo = _cli("--demo", "--help")
    assert demo.returncode == 0, demo.stderr
    assert "Effective paths (demo)" in demo.stdout
    assert str(data_home / "pulse-tui" / "demo" / "pulse.db") in demo.stdout
    assert str(data_home / "pulse-tui" / "demo" / "import") in demo.stdout
    normal = _cli("--help")
    assert str(data_home / "pulse-tui" / "pulse.db") in normal.stdout
    assert "/demo/" not in normal.stdout
    # --help never builds the demo
    assert not (data_home / "pulse-tui" / "demo" / "pulse.db").exists()


def test_report_help_lists_every_report_name() -> None:
    out = _cli("report", "--help")
    assert out.returncode == 0, out.stderr
    flat = " ".join(out.stdout.split())
    for name in REPORT_NAMES:
        assert name in flat, f"report --help does not name {name!r}"


def test_demo_build_reports_progress_step_by_step(conn: sqlite3.Connection) -> None:
    heard: list[tuple[str, int, int]] = []
    build_history(conn, FIXED_NOW_MS, days=2, progress=lambda *a: heard.append(a))
    steps = {total for _, _, total in heard}
    assert len(steps) == 1
    total = steps.pop()
    done = [d for _, d, _ in heard]
    assert done == sorted(done) and done[0] == 0 and done[-1] == total
    whats = [w for w, _, _ in heard]
    assert any("generating day 1 of 2" in w for w in whats)
    assert any("rollups" in w for w in whats)
    assert all(len(w) <= 60 for w in whats)  # one line beside a bar at 80 columns


def test_member_import_into_an_unknown_cohort_says_how_to_create_it(tmp_path: Path) -> None:
    samples = sample_data_dir()
    assert samples is not None
    members = tmp_path / "cohort_members.csv"
    shutil.copyfile(samples / "cohort_members.csv", members)
    out = _cli("--db", str(tmp_path / "fresh.db"), "import", str(members),
               env={"PULSE_NOW": str(FIXED_NOW_MS)})
    # the rejected rows' reason reaches the operator: on screen or in the errors file
    reasons = out.stdout + out.stderr
    errors_file = tmp_path / "cohort_members.errors.csv"
    assert errors_file.exists()
    reasons += errors_file.read_text(encoding="utf-8")
    assert "unknown cohort 'beta-testers'" in reasons
    assert "create it first as a static cohort" in reasons
