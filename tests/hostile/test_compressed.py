"""Bounded memory on compressed input: one line at most 1 MiB, a .csv.gz at most 100 times its
size or 10 GiB (whichever is larger); past either the file fails with that reason."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from pulse_tui.clock import Clock
from pulse_tui.ingest import import_file
from pulse_tui.ingest import parse as parse_mod

ROOT = Path(__file__).resolve().parents[2]
HEADER = b"event_id,event_type,timestamp_ms,session_id,site_id\n"
TS = 1_764_000_000_000
RSS_BOUND_MB = 300


def gzip_stream(path: Path, head: bytes, filler: bytes, total: int, *, level: int = 6) -> Path:
    """``head`` then ``filler`` repeated up to ``total`` bytes, gzip-compressed in chunks."""
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container
    with open(path, "wb") as fh:
        fh.write(comp.compress(head))
        chunk = filler * max(1, (1 << 20) // len(filler))
        written = 0
        while written < total:
            piece = chunk[: total - written]
            fh.write(comp.compress(piece))
            written += len(piece)
        fh.write(comp.flush())
    return path


def _import_in_child(db: Path, path: Path) -> dict:
    """Run ``pulse-tui import`` in a fresh process; its exit code, output and peak RSS (MB).

    The peak is measured by a small parent of its own, so other children of the test process
    do not count."""
    script = textwrap.dedent(f"""
        import json, resource, subprocess, sys
        p = subprocess.run([sys.executable, "-m", "pulse_tui", "--db", {str(db)!r}, "import",
                            {str(path)!r}], capture_output=True, text=True)
        print(json.dumps({{"rc": p.returncode, "out": p.stdout + p.stderr,
                          "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_gzip_of_1_gib_of_zeros_without_a_newline_fails_in_flat_memory(
        tmp_path: Path) -> None:
    bomb = gzip_stream(tmp_path / "events.csv.gz", HEADER, b"\0", 1 << 30, level=9)
    assert bomb.stat().st_size < 2 << 20  # about 1 MB on disk
    got = _import_in_child(tmp_path / "pulse.db", bomb)
    assert got["rc"] == 1
    assert "line 2 is longer than 1 MiB (the limit for one CSV line)" in got["out"]
    assert "Traceback" not in got["out"]
    assert got["rss_mb"] < RSS_BOUND_MB, got
    conn = sqlite3.connect(tmp_path / "pulse.db")
    assert conn.execute("SELECT status, message FROM import_jobs").fetchone() == (
        "failed", "line 2 is longer than 1 MiB (the limit for one CSV line)")


def test_a_long_line_in_a_plain_file_also_fails_in_flat_memory(tmp_path: Path) -> None:
    big = tmp_path / "events.csv"
    with open(big, "wb") as fh:
        fh.write(HEADER + f"e1,pageview,{TS},s1,site1\n".encode())
        for _ in range(400):  # a 400 MiB line
            fh.write(b"x" * (1 << 20))
    got = _import_in_child(tmp_path / "pulse.db", big)
    assert got["rc"] == 1 and "line 3 is longer than 1 MiB" in got["out"]
    assert got["rss_mb"] < RSS_BOUND_MB, got


def test_rows_with_long_values_stay_in_flat_memory(tmp_path: Path) -> None:
    """40,000 valid users rows with an 8 KiB name (320 MB expanded from a 0.5 MB .gz): the
    batches are bounded in bytes, not only in rows."""
    rows = b"".join(b"u%d,%s,\n" % (i, b"n" * 8000) for i in range(10))
    gz = gzip_stream(tmp_path / "users.csv.gz", b"user_id,name,updated_at\n", rows,
                     4000 * len(rows))
    got = _import_in_child(tmp_path / "pulse.db", gz)
    assert got["rc"] == 0, got
    assert "10 imported, 39,990 duplicates, 0 rejected" in got["out"]
    assert got["rss_mb"] < 150, got


def test_expansion_past_100_times_the_compressed_size_fails_the_file(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the floor is 10 GiB; lowered here so that the ratio rule is what stops the file
    monkeypatch.setattr(parse_mod, "MIN_EXPANSION_LIMIT", 256 << 10)
    row = f"e1,pageview,{TS},s1,site1\n".encode()
    gz = gzip_stream(tmp_path / "events.csv.gz", HEADER, row, 16 << 20, level=9)
    limit = max(100 * gz.stat().st_size, 256 << 10)
    assert limit < 16 << 20
    r = import_file(conn, gz, clock=fixed_clock)
    assert r.status == "failed"
    assert r.message is not None and r.message.startswith("events.csv.gz expands to more than ")
    assert "(the limit is 100 times its size or 256 KiB, whichever is larger)" in r.message
    # what came before the limit is imported (once: every row is the same event)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)


def test_the_10_gib_floor_lets_a_small_file_expand_more_than_100_times(
        tmp_path: Path, conn: sqlite3.Connection, fixed_clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_mod, "MIN_EXPANSION_LIMIT", 8 << 20)
    rows = b"".join(f"e{i % 50},pageview,{TS + i % 50},s1,site1\n".encode()
                    for i in range(50))
    gz = gzip_stream(tmp_path / "events.csv.gz", HEADER, rows, 4 << 20, level=9)
    assert 100 * gz.stat().st_size < 4 << 20 < 8 << 20  # over 100x, under the floor
    r = import_file(conn, gz, clock=fixed_clock)
    assert r.status == "completed" and r.processed == 50


def test_the_limits_are_the_specs() -> None:
    assert parse_mod.MAX_LINE_BYTES == 1024 * 1024
    assert parse_mod.EXPANSION_RATIO == 100
    assert parse_mod.MIN_EXPANSION_LIMIT == 10 * 1024 ** 3


@pytest.mark.parametrize("damage", ["cut", "garbled", "not-gzip"])
def test_damaged_gzip_messages_are_ours(tmp_path: Path, conn: sqlite3.Connection,
                                        fixed_clock: Clock, damage: str) -> None:
    data = gzip.compress(HEADER + b"".join(
        f"e{i},pageview,{TS + i},s{i},site1\n".encode() for i in range(20_000)))
    if damage == "cut":
        data = data[: len(data) // 2]
    elif damage == "garbled":
        data = data[:200] + bytes(b ^ 0x5A for b in data[200:400]) + data[400:]
    else:
        data = b"event_id,event_type\n"
    gz = tmp_path / "events.csv.gz"
    gz.write_bytes(data)
    r = import_file(conn, gz, clock=fixed_clock, batch_size=500)
    assert r.status == "failed"
    assert r.message is not None and r.message.startswith("cannot read events.csv.gz: ")
    for words in ("end-of-stream", "Error -3", "invalid", "Not a gzipped", "CRC", "magic"):
        assert words not in r.message, r.message
