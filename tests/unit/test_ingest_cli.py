"""``pulse-tui import``: summaries, errors file beside the input, exit codes 0 / 1 / 2."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from pulse_tui.cli import main

ROOT = Path(__file__).resolve().parents[2]
TS = 1_764_072_000_000
HEADER = "event_id,site_id,event_type,timestamp_ms,session_id\n"


def run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_clean_import_then_duplicates_only_exit_0(tmp_path: Path, db_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "events.csv"
    f.write_text(HEADER + f"e1,a,t,{TS},s\ne2,a,t,{TS},s\n")
    assert run(["--db", str(db_path), "import", str(f)]) == 0
    out = capsys.readouterr().out
    assert "2 imported, 0 duplicates, 0 rejected" in out
    assert run(["import", str(f), "--db", str(db_path)]) == 0
    assert "0 imported, 2 duplicates, 0 rejected" in capsys.readouterr().out
    assert not (tmp_path / "events.errors.csv").exists()


def test_rejected_rows_exit_1_and_errors_file(tmp_path: Path, db_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ROOT / "sample_data" / "events.csv", tmp_path / "events.csv")
    assert run(["--db", str(db_path), "import", str(tmp_path / "events.csv")]) == 1
    captured = capsys.readouterr()
    assert "386 imported, 1 duplicates, 3 rejected" in captured.out
    assert captured.err.count("\n") == 1 and "rejected" in captured.err
    errors = (tmp_path / "events.errors.csv").read_text().splitlines()
    assert errors[0] == "line,column,value,reason" and len(errors) == 4
    with sqlite3.connect(db_path) as c:
        assert c.execute("SELECT count(*) FROM events").fetchone() == (386,)


def test_failed_file_exit_1_one_line(tmp_path: Path, db_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "events.csv"
    f.write_text("event_id,site_id\ne1,a\n")
    g = tmp_path / "users.csv"
    g.write_text("user_id,name\nu1,Ada\n")
    assert run(["--db", str(db_path), "import", str(f), str(g)]) == 1
    out = capsys.readouterr().out
    assert "events.csv: failed: required columns missing: event_type" in out
    assert "users.csv: 1 imported" in out


def test_type_and_site_options(tmp_path: Path, db_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "data.csv"
    f.write_text(f"event_id,event_type,timestamp,session_id,browser\ne1,t,{TS},s,ff\n")
    assert run(["--db", str(db_path), "import", "--type", "events", "--site", "web",
                str(f)]) == 0
    out = capsys.readouterr().out
    assert "1 imported" in out and "unknown columns ignored: browser" in out
    with sqlite3.connect(db_path) as c:
        assert c.execute("SELECT site_id FROM events").fetchone() == ("web",)


@pytest.mark.parametrize("args", [
    ["import"],
    ["import", "--type", "bogus", "x.csv"],
    ["import", "does-not-exist.csv"],
])
def test_usage_errors_exit_2(tmp_path: Path, db_path: Path, args: list[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text(HEADER)
    assert run(["--db", str(db_path), *args]) == 2


def test_empty_site_is_usage_error(tmp_path: Path, db_path: Path) -> None:
    f = tmp_path / "events.csv"
    f.write_text(HEADER)
    assert run(["--db", str(db_path), "import", "--site", " ", str(f)]) == 2
