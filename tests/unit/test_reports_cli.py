"""``pulse-tui report``: formats, keys and order, CSV neutralising, exit 2 cases."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pulse_tui.cli import main
from pulse_tui.clock import day_start_ms
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch

NOW = "2026-11-25T12:00:00Z"
T0 = day_start_ms(date(2026, 11, 24)) + 1000


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(conn: sqlite3.Connection, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PULSE_NOW", NOW)
    events = [
        NewEvent("e1", "s1", "pageview", T0, "a", "u1", "=HYPERLINK(\"x\")", None, "US", "mobile"),
        NewEvent("e2", "s1", "signup", T0 + 5, "a", "u1", "/signup", "-x", "US", "mobile"),
        NewEvent("e3", "s1", "pageview", T0 + 86_400_000, "b", "u2", "/", "@r", None, None),
        NewEvent("e4", "s1", "pageview", T0 + 9, "c", None, "/", "", "DE", "desktop"),
    ]
    write_batch(conn, events, 0)
    return db_path


def test_json_keys_and_order(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = {
        "daily": ["day", "events", "users", "sessions"],
        "breakdown": ["event_type", "events", "users"],
        "top-urls": ["value", "events", "users"],
        "top-referrers": ["value", "events", "users"],
        "top-countries": ["value", "events", "users"],
        "top-devices": ["value", "events", "users"],
        "funnel": ["step", "event_type", "users"],
    }
    for name, keys in expected.items():
        extra = ["--steps", "pageview,signup"] if name == "funnel" else []
        code, out, err = run(["report", name, "--db", str(db), "--format", "json", *extra],
                             capsys)
        assert code == 0, err
        data = json.loads(out)
        assert isinstance(data, list) and data, name
        assert all(list(row) == keys for row in data), name
    code, out, _ = run(["report", "daily", "--db", str(db), "--format", "json"], capsys)
    data = json.loads(out)
    assert len(data) == 30 and data[0]["day"] == "2026-10-27" and data[-1]["day"] == "2026-11-25"
    assert data[-2] == {"day": "2026-11-24", "events": 3, "users": 1, "sessions": 2}
    code, out, _ = run(["report", "top-referrers", "--db", str(db), "--format", "json",
                        "--from", "2026-11-24", "--to", "2026-11-24", "--limit", "1"], capsys)
    assert json.loads(out) == [{"value": "(none)", "events": 2, "users": 1}]
    code, out, _ = run(["report", "funnel", "--db", str(db), "--format", "json",
                        "--steps", "pageview,signup", "--site", "s1"], capsys)
    assert json.loads(out) == [{"step": 1, "event_type": "pageview", "users": 2},
                               {"step": 2, "event_type": "signup", "users": 1}]


def test_csv_header_and_neutralising(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["report", "top-urls", "--db", str(db), "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["value", "events", "users"]
    assert rows[1] == ["/", "2", "1"]
    assert ["'=HYPERLINK(\"x\")", "1", "1"] in rows
    code, out, _ = run(["report", "top-referrers", "--db", str(db), "--format", "csv"], capsys)
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[1:] == [["(none)", "2", "1"], ["'-x", "1", "1"], ["'@r", "1", "1"]]


def test_table_is_aligned(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["report", "breakdown", "--db", str(db)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["event_type", "events", "users"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["pageview", "3", "2"] and lines[3].split() == ["signup", "1", "1"]
    assert len({line.index("events") + len("events") for line in lines[:1]} | {
        len(line.rstrip()) - len(line.rstrip().split()[-1]) - 2 for line in lines[2:]}) >= 1
    widths = {len(line) for line in lines[:4]}
    assert len(widths) == 1  # right-aligned numbers end in the same column
    code, out, _ = run(["report", "breakdown", "--db", str(db), "--from", "2020-01-01",
                        "--to", "2020-01-02"], capsys)
    assert "(no rows)" in out


@pytest.mark.parametrize("args, fragment", [
    (["report", "nope"], "unknown report"),
    (["report", "daily", "--from", "2026-13-01"], "--from"),
    (["report", "daily", "--to", "tomorrow"], "--to"),
    (["report", "daily", "--from", "2026-11-20", "--to", "2026-11-01"], "after"),
    (["report", "daily", "--site", "nope"], "unknown site"),
    (["report", "daily", "--format", "xml"], "--format"),
    (["report", "top-urls", "--limit", "0"], "--limit"),
    (["report", "funnel"], "--steps"),
    (["report", "funnel", "--steps", "a,,b"], "--steps"),
])
def test_usage_errors_exit_2_with_one_line(db: Path, capsys: pytest.CaptureFixture[str],
                                           args: list[str], fragment: str) -> None:
    code, out, err = run([*args, "--db", str(db)], capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_site_required_when_several_and_no_site(db: Path, conn: sqlite3.Connection,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    write_batch(conn, [NewEvent("z1", "s2", "pageview", T0, "z", None)], 0)
    code, _, err = run(["report", "daily", "--db", str(db)], capsys)
    assert code == 2 and "--site" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(["report", "daily", "--db", str(db), "--site", "s2", "--format",
                        "json", "--from", "2026-11-24", "--to", "2026-11-24"], capsys)
    assert code == 0 and json.loads(out)[0]["events"] == 1
    empty = tmp_path / "empty.db"
    code, _, err = run(["report", "daily", "--db", str(empty)], capsys)
    assert code == 2 and "no site" in err and len(err.strip().splitlines()) == 1


def test_entry_point_in_a_subprocess(db: Path) -> None:
    env = {**os.environ, "PULSE_NOW": NOW}
    proc = subprocess.run(
        [sys.executable, "-m", "pulse_tui", "report", "daily", "--db", str(db), "--format",
         "csv", "--from", "2026-11-24"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["day,events,users,sessions", "2026-11-24,3,1,2",
                                        "2026-11-25,1,1,1"]
    proc = subprocess.run([sys.executable, "-m", "pulse_tui", "report", "daily", "--db",
                           str(db), "--from", "x"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
