"""Broken quoting never swallows the rest of a file; CR-only line endings read like LF and CRLF.

Real files in tmp_path, imported into a real SQLite file; the errors file is read back.
"""

from __future__ import annotations

import csv
import gzip
import io
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulse_tui.cli import main
from pulse_tui.clock import Clock
from pulse_tui.ingest import import_file
from pulse_tui.ingest.importer import write_errors_csv
from pulse_tui.ingest.parse import CsvFile, iter_batches, make_row_parser, map_header

HEADER = "event_id,event_type,timestamp_ms,session_id,site_id\n"
TS = 1_764_000_000_000
LIBRARY_WORDS = ("universal-newline", "new-line character", "unexpected end of data",
                 "end-of-stream marker", "Error -3", "field larger than field limit")


def good(i: int) -> str:
    return f"e{i},pageview,{TS + i},s{i // 10},site1\n"


def body(n: int) -> list[str]:
    return [good(i) for i in range(n)]


def write(path: Path, lines: list[str], *, newline: str = "\n") -> Path:
    text = HEADER + "".join(lines)
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def errors(conn: sqlite3.Connection, job_id: str, folder: Path) -> list[list[str]]:
    folder.mkdir(exist_ok=True)
    out = write_errors_csv(conn, job_id, folder, "events.csv")
    if out is None:
        return []
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["line", "column", "value", "reason"]
    return rows[1:]


def event_ids(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT event_id FROM events")}


def run_cli(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_unterminated_quote_on_line_3_of_100k_rows_keeps_the_other_rows(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    lines = body(100_000)
    lines[1] = 'e1,"pageview,1764000000001,s0,site1\n'  # physical line 3
    f = write(tmp_path / "events.csv", lines)
    r = import_file(conn, f, clock=fixed_clock)
    assert r.status == "completed"
    assert (r.processed, r.duplicates, r.failed) == (99_999, 0, 1)
    assert event_ids(conn) == {f"e{i}" for i in range(100_000)} - {"e1"}
    [[line, column, value, reason]] = errors(conn, r.job_id, tmp_path / "out")
    assert line == "3" and column == ""
    assert value == 'e1,"pageview,1764000000001,s0,site1'
    assert "quote opened on line 3" in reason and "unterminated" in reason


@pytest.mark.parametrize("compressed", [False, True])
def test_unterminated_quote_on_the_last_line_is_rejected_and_exits_1(
        tmp_path: Path, db_path: Path, compressed: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    lines = body(50)
    lines[-1] = 'e49,pageview,"1764000000049,s4,site1'  # no newline at the end either
    f = write(tmp_path / "events.csv", lines)
    if compressed:
        gz = tmp_path / "events.csv.gz"
        gz.write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
        f = gz
    assert run_cli(["--db", str(db_path), "import", str(f)]) == 1
    assert "49 imported, 0 duplicates, 1 rejected" in capsys.readouterr().out
    with open(tmp_path / "events.errors.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert [r[0] for r in rows[1:]] == ["51"]
    assert "not closed before the end of the file" in rows[1][3]


def test_a_stray_quote_closed_by_another_further_down_loses_no_row(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    lines = body(1000)
    lines[10] = 'e10,"pageview,1764000000010,s1,site1\n'  # opens on line 12
    lines[20] = 'e20,pageview",1764000000020,s2,site1\n'  # ... closes on line 22
    f = write(tmp_path / "events.csv", lines)
    r = import_file(conn, f, clock=fixed_clock)
    assert (r.processed, r.failed) == (999, 1)
    assert event_ids(conn) == {f"e{i}" for i in range(1000)} - {"e10"}
    [[line, _, _, reason]] = errors(conn, r.job_id, tmp_path / "out")
    assert line == "12" and "line 12" in reason and "line 22" in reason


def test_many_broken_quotes_each_cost_only_their_own_row(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    lines = body(5000)
    broken = {7, 300, 301, 2500, 4999}
    for i in broken:
        lines[i] = f'e{i},"pageview,{TS + i},s1,site1\n'
    f = write(tmp_path / "events.csv", lines)
    r = import_file(conn, f, clock=fixed_clock, batch_size=64)
    assert event_ids(conn) == {f"e{i}" for i in range(5000)} - {f"e{i}" for i in broken}
    assert sorted(int(e[0]) for e in errors(conn, r.job_id, tmp_path / "out")) == sorted(
        i + 2 for i in broken)


def test_quoted_values_with_line_breaks_still_read_as_one_record(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    f = tmp_path / "events.csv"
    f.write_text(HEADER + 'e1,"page\nview, with a comma",1764000000001,s1,site1\n'
                 + 'e2,"x",bad-time,s1,site1\n' + good(3))
    r = import_file(conn, f, clock=fixed_clock)
    assert (r.processed, r.failed) == (2, 1)
    assert conn.execute("SELECT event_type FROM events WHERE event_id='e1'").fetchone() == (
        "page\nview, with a comma",)
    assert [e[0] for e in errors(conn, r.job_id, tmp_path / "out")] == ["4"]


def test_a_rejected_record_that_runs_over_lines_names_them(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    f = tmp_path / "events.csv"
    f.write_text(HEADER + good(1) + 'e2,"a\nb\nc",not-a-time,s1,site1\n' + good(3))
    r = import_file(conn, f, clock=fixed_clock)
    assert (r.processed, r.failed) == (2, 1)
    [[line, column, _, reason]] = errors(conn, r.job_id, tmp_path / "out")
    assert (line, column) == ("3", "timestamp_ms") and "lines 3-5" in reason


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_old_mac_line_endings_read_like_lf_and_crlf(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock, newline: str) -> None:
    lines = body(300)
    lines[5] = 'e5,"multi\nline",1764000000005,s0,site1\n'
    lines[6] = "\n"  # a blank line
    lines[7] = "e7,pageview,not-a-time,s0,site1\n"
    f = write(tmp_path / "events.csv", lines, newline=newline)
    r = import_file(conn, f, clock=fixed_clock, batch_size=50)
    assert r.status == "completed", r.message
    assert (r.processed, r.failed) == (298, 1)
    # the reject's line counts e5's value as two physical lines, whatever ends them
    assert [(e[0], e[1]) for e in errors(conn, r.job_id, tmp_path / "out")] == [
        ("10", "timestamp_ms")]
    assert conn.execute("SELECT event_type FROM events WHERE event_id='e5'").fetchone() == (
        f"multi{newline}line",)


def test_cr_only_file_with_bom_gzip_and_no_final_newline(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    text = "\ufeff" + HEADER + "".join(body(100))
    gz = tmp_path / "events.csv.gz"
    gz.write_bytes(gzip.compress(text.replace("\n", "\r").rstrip("\r").encode()))
    r = import_file(conn, gz, clock=fixed_clock)
    assert (r.status, r.processed, r.failed) == ("completed", 100, 0)


def test_a_crlf_header_over_a_cr_only_body_reads_every_row(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    f = tmp_path / "events.csv"
    f.write_bytes((HEADER.replace("\n", "\r\n") + "".join(body(200)).replace("\n", "\r"))
                  .encode())
    r = import_file(conn, f, clock=fixed_clock)
    assert (r.status, r.processed, r.failed) == ("completed", 200, 0)


def test_messages_are_ours_not_the_csv_modules(tmp_path: Path, conn: sqlite3.Connection,
                                               fixed_clock: Clock) -> None:
    f = tmp_path / "events.csv"
    # a lone CR inside an unquoted value of an LF file, then a header quote never closed
    f.write_bytes((HEADER + "e1,page\rview,1764000000001,s1,site1\n" + good(2)).encode())
    r = import_file(conn, f, clock=fixed_clock)
    assert (r.processed, r.failed) == (1, 1)
    reason = errors(conn, r.job_id, tmp_path / "out")[0][3]
    g = tmp_path / "events2.csv"
    g.write_text('event_id,"event_type,timestamp_ms\n' + good(1))
    r2 = import_file(conn, g, clock=fixed_clock)
    assert r2.status == "failed" and "quote opened on line 1" in (r2.message or "")
    for text in (reason, r2.message or ""):
        assert not any(word in text for word in LIBRARY_WORDS), text


def test_a_line_over_1_mib_fails_the_file_naming_the_line(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock) -> None:
    lines = body(20)
    lines[9] = f"e9,pageview,{TS},s0,site1,{'x' * (1024 * 1024 + 10)}\n"  # line 11
    f = write(tmp_path / "events.csv", lines)
    r = import_file(conn, f, clock=fixed_clock)
    assert r.status == "failed"
    assert r.message == "line 11 is longer than 1 MiB (the limit for one CSV line)"


def test_a_line_of_exactly_1_mib_is_a_line(tmp_path: Path, conn: sqlite3.Connection,
                                           fixed_clock: Clock) -> None:
    row = f"e9,pageview,{TS},s0,"  # site1 after spaces (values are stripped)
    lines = [good(1), row + " " * (1024 * 1024 - len(row) - 5) + "site1\r\n", good(2)]
    f = write(tmp_path / "events.csv", lines)
    r = import_file(conn, f, clock=fixed_clock)
    assert (r.status, r.processed, r.failed) == ("completed", 3, 0)


# ------------------------------------------------------------------ checkpoints stay exact

_line = st.one_of(
    st.integers(0, 99).map(lambda i: good(i).rstrip("\n")),
    st.integers(0, 99).map(lambda i: f'e{i},"page{i},{TS + i},s,site1'),  # opens a quote
    st.integers(0, 99).map(lambda i: f'e{i},view",{TS + i},s,site1'),  # literal quote
    st.integers(0, 99).map(lambda i: f'e{i},"a\nb",{TS + i},s,site1'),  # quoted line break
    st.just(""),
    st.just("e,x,not-a-time,s,site1"),
)


def _read(path: Path, batch: int, at: tuple[int, int] | None = None
          ) -> tuple[list[tuple], list[tuple], list[tuple[int, int]]]:
    """Rows, rejects and (offset, line) after each batch, optionally resuming at ``at``."""
    with CsvFile(path) as src:
        kind, names = src.read_header("events")
        header = map_header(kind, names, site_id=None)
        if at is not None:
            src.seek(*at)
        parse = make_row_parser(header, site_id=None, now_ms=0)
        rows: list[tuple] = []
        rejects: list[tuple] = []
        marks = []
        for b in iter_batches(src, header, parse, batch):
            rows += [(line, r[0]) for line, r in zip(b.lines, b.rows, strict=True)]
            rejects += [(j.line, j.column, j.reason) for j in b.rejects]
            marks.append((b.end_offset, b.end_line, len(rows), len(rejects)))
        return rows, rejects, marks


@given(lines=st.lists(_line, min_size=1, max_size=30), newline=st.sampled_from(["\n", "\r\n", "\r"]),
       batch=st.integers(1, 4), data=st.data())
def test_resuming_at_any_checkpoint_reads_exactly_the_rest(
        tmp_path_factory: pytest.TempPathFactory, lines: list[str], newline: str, batch: int,
        data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("cp") / "events.csv"
    text = HEADER + "\n".join(lines) + "\n"
    path.write_bytes(text.replace("\n", newline).encode())
    rows, rejects, marks = _read(path, batch)
    offset, line, n_rows, n_rejects = data.draw(st.sampled_from(marks))
    rest_rows, rest_rejects, _ = _read(path, batch, (offset, line))
    assert rest_rows == rows[n_rows:]
    assert rest_rejects == rejects[n_rejects:]
    # no line is read twice or left out: every non-blank line starts a row or a reject, or
    # lies inside a record that does
    starts = sorted([r[0] for r in rows] + [j[0] for j in rejects])
    assert len(starts) == len(set(starts))


def test_the_csv_writers_output_with_a_cr_file_reads_back(tmp_path: Path,
                                                          conn: sqlite3.Connection,
                                                          fixed_clock: Clock) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r")
    w.writerow(HEADER.strip().split(","))
    for i in range(50):
        w.writerow([f"e{i}", f'type "{i}", with\rbreak', TS + i, "s", "site1"])
    f = tmp_path / "events.csv"
    f.write_text(buf.getvalue(), newline="")
    r = import_file(conn, f, clock=fixed_clock)
    assert (r.processed, r.failed) == (50, 0)
    assert conn.execute("SELECT event_type FROM events WHERE event_id='e7'").fetchone() == (
        'type "7", with\rbreak',)


# ------------------------------------------------------------------ stray quotes anywhere

@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["none", "open", "inside",
                                                                "before-comma"])),
                min_size=1, max_size=40),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_stray_quotes_cost_exactly_the_rows_they_open(
        tmp_path_factory: pytest.TempPathFactory, marks: list[tuple[int, str]],
        newline: str) -> None:
    """Reference: a quote that opens a value (at the start of a field) breaks that row only;
    a quote inside or at the end of a value is a character of the value."""
    lines, opened, values = [], set(), {}
    for i, (col, where) in enumerate(marks):
        fields = [f"e{i}", f"view{i}", str(TS + i), f"s{i}", "site1"]
        if where != "open" and col == 2:
            col = 3  # a quote inside a timestamp makes it a bad timestamp: not this test's point
        if where == "open":
            fields[col] = '"' + fields[col]
            opened.add(i)
        elif where == "inside":
            fields[col] = fields[col][:1] + '"' + fields[col][1:]
        elif where == "before-comma":
            fields[col] += '"'
        values[i] = fields
        lines.append(",".join(fields))
    path = tmp_path_factory.mktemp("stray") / "events.csv"
    path.write_bytes((HEADER + "\n".join(lines) + "\n").replace("\n", newline).encode())
    with CsvFile(path) as src:
        kind, names = src.read_header("events")
        header = map_header(kind, names, site_id=None)
        parse = make_row_parser(header, site_id=None, now_ms=0)
        rows, rejects = [], []
        for b in iter_batches(src, header, parse, 7):
            rows += b.rows
            rejects += b.rejects
    assert sorted(r.line - 2 for r in rejects) == sorted(opened)
    got = {r[0].replace('"', ""): r for r in rows}
    assert sorted(got, key=lambda e: int(e[1:])) == [
        f"e{i}" for i in range(len(marks)) if i not in opened]
    for i, fields in values.items():  # a quote that opens nothing is kept as it is
        if i not in opened:
            assert got[f"e{i}"][0] == fields[0] and got[f"e{i}"][2] == fields[1]
