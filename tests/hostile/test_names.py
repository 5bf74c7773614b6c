"""Issue 14.2: any file name the file system allows is imported or failed with a reason, never
crashes the worker (nor again on every restart), and is shown escaped."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from pulse_tui.config import Settings
from pulse_tui.safefs import NAME_MAX, fit_name
from pulse_tui.worker import inbox
from tests.conftest import wait_until
from tests.hostile.conftest import HEADER, event_rows, query, scalar

ROWS = 40  # good rows per file; each file also has one rejected row


def _names() -> list[bytes]:
    """Names as bytes (what the file system stores), all in the events/ inbox."""
    return [
        b"e" * 245 + b".csv",  # 249 bytes: its errors file name would be 256
        b"f" * 251 + b".csv",  # 255 bytes: the longest name there is
        "é".encode() * 125 + b".csv",  # 254 bytes of two-byte characters
        b"latin1-\xe9t\xe9.csv",  # not UTF-8
        b"\xff\xfe.csv.gz.csv",
        b"new\nline.csv",
        b"esc-\x1b[31mred\x1b[0m-\x07.csv",
        b"[bold red]markup[blink] $(rm -rf x).csv",
        b"-dash.csv",
    ]


def _write(folder: Path, raw: bytes, prefix: str) -> None:
    body = (HEADER + event_rows(0, ROWS, prefix=prefix)
            + f"{prefix}bad,click,not-a-time,s1,site1,u1\n").encode()
    tmp = os.path.join(os.fsencode(folder), b".incoming.part")
    with open(tmp, "wb") as fh:
        fh.write(body)
    os.rename(tmp, os.path.join(os.fsencode(folder), raw))


def _listing(folder: Path) -> set[bytes]:
    return set(os.listdir(os.fsencode(folder)))


def test_odd_names_are_imported_moved_and_logged_escaped_across_restarts(
        worker_process, pulse_settings: Settings) -> None:
    names = _names()
    inbox_dir = pulse_settings.import_dir / "events"
    for i, raw in enumerate(names):
        _write(inbox_dir, raw, f"n{i}-")
    proc = worker_process()
    wait_until(lambda: not _listing(inbox_dir) or not proc.alive(), timeout=60)
    assert proc.alive(), proc.log()
    wait_until(lambda: scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs WHERE "
                              "result_path IS NOT NULL") == len(names), timeout=30)
    assert proc.stop() == 0, proc.log()

    processed = _listing(pulse_settings.import_dir / "processed")
    for raw in names:
        assert raw in processed  # moved under its own name
    errors = [n for n in processed if n.endswith(b".errors.csv")]
    assert len(errors) == len(names)
    assert all(len(n) <= NAME_MAX for n in processed)
    rows = query(pulse_settings.db, "SELECT status, processed_records, failed_records, file_name "
                 "FROM import_jobs")
    assert sorted(r[:3] for r in rows) == [("completed", ROWS, 1)] * len(names)
    assert all(isinstance(r[3], str) for r in rows)  # the Jobs pane reads text
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == ROWS * len(names)
    log = proc.log()
    assert "\x1b" not in log and "\x07" not in log
    assert "esc-\\e[31mred\\e[0m-\\x07.csv" in log
    assert "latin1-\\xe9t\\xe9.csv" in log

    # a restart neither crashes nor imports anything again
    again = worker_process()
    wait_until(lambda: "worker running" in again.log() or not again.alive(), timeout=30)
    assert again.alive(), again.log()
    assert again.stop() == 0, again.log()
    assert scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs") == len(names)
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == ROWS * len(names)


_name_bytes = st.one_of(st.binary(min_size=1, max_size=40),
                        st.binary(min_size=NAME_MAX - 20, max_size=NAME_MAX)).filter(
    lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b".."))


@given(_name_bytes, st.integers(min_value=0, max_value=10_000))
@example(b"a." + b"b" * 253, 1)  # an early dot: the "extension" alone is 254 bytes
def test_derived_names_fit_the_file_system(raw: bytes, n: int) -> None:
    """The errors file and collision names made from any name stay within NAME_MAX bytes and
    differ from the name itself (reference: the plain rules where they fit)."""
    name = os.fsdecode(raw)
    errors = inbox.errors_name(name)
    assert len(os.fsencode(errors)) <= NAME_MAX
    assert errors.endswith(".errors.csv") and errors != name
    base = name
    for ext in (".gz", ".csv"):  # the plain rule: <name without .gz and .csv>.errors.csv
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
    plain = base + ".errors.csv"
    if len(os.fsencode(plain)) <= NAME_MAX:
        assert errors == plain
    else:
        assert os.fsencode(errors)[:100] == os.fsencode(base)[:100]
    stem, ext = inbox.split_ext(name)
    collided = fit_name(stem, f".{n}{ext}")
    assert len(os.fsencode(collided)) <= NAME_MAX and collided != name


def test_unique_destination_for_a_255_byte_name_that_is_taken(tmp_path: Path) -> None:
    name = "g" * 251 + ".csv"
    (tmp_path / name).write_text("x")
    dest = inbox.unique_destination(tmp_path, name)
    assert dest.name != name and len(os.fsencode(dest.name)) <= NAME_MAX
    assert dest.name.endswith(".1.csv")
    assert not dest.exists()


async def test_jobs_pane_shows_an_odd_name_escaped(pulse_settings: Settings) -> None:
    from textual.widgets import DataTable

    from pulse_tui.tui.app import make_app
    from pulse_tui.tui.screens.jobs import JobsScreen
    from tests.conftest import async_wait_until
    from tests.tui.tui_helpers import press_until

    app = make_app(pulse_settings, worker=True)
    async with app.run_test(size=(160, 30)) as pilot:
        await press_until(pilot, JobsScreen, "6", timeout=5)
        _write(pulse_settings.import_dir / "events", b"\xff\x1b[2J[b]x.csv", "p")
        table = app.screen.query_one("#imports-table", DataTable)

        def completed_row() -> bool:
            return table.row_count == 1 and table.get_row_at(0)[0].plain.strip() == "completed"

        await async_wait_until(completed_row, timeout=20)
        keys = [str(key.value) for key in table.columns]
        row = dict(zip(keys, (cell.plain.strip() for cell in table.get_row_at(0)), strict=True))
        assert row["file"] == "\\xff\\e[2J[b]x.csv"
        assert (row["ok"], row["bad"]) == (str(ROWS), "1")
    assert os.fsencode("\udcff\x1b[2J[b]x.csv") in _listing(
        pulse_settings.import_dir / "processed")


def test_the_watcher_survives_a_name_that_is_not_utf8(make_worker,
                                                      pulse_settings: Settings) -> None:
    """watchfiles raises on a path it cannot decode; the worker watches again at once (and
    rescans for what that batch of changes held) instead of falling back to slow rescans."""
    inbox_dir = pulse_settings.import_dir / "events"
    worker, _ = make_worker(rescan_interval=3600)  # only the watcher notices new files in time
    wait_until(lambda: worker.state.state == "running", timeout=20)

    def imported(n: int) -> bool:
        return scalar(pulse_settings.db, "SELECT count(*) FROM import_jobs WHERE "
                      "result_path IS NOT NULL") == n

    # the watcher is up once this one is imported (touched until then: the watcher starts
    # a moment after the worker says it runs)
    _write(inbox_dir, b"first.csv", "a-")
    touched = [time.monotonic()]

    def first_imported() -> bool:
        if imported(1):
            return True
        if time.monotonic() - touched[0] > 1.0 and (inbox_dir / "first.csv").exists():
            os.utime(inbox_dir / "first.csv")
            touched[0] = time.monotonic()
        return False

    wait_until(first_imported, timeout=20)
    _write(inbox_dir, b"bad-\xff\xfe.csv", "b-")
    wait_until(lambda: imported(2), timeout=20)
    _write(inbox_dir, b"after.csv", "c-")
    wait_until(lambda: imported(3), timeout=20)
    assert b"bad-\xff\xfe.csv" in _listing(pulse_settings.import_dir / "processed")
    assert scalar(pulse_settings.db, "SELECT count(*) FROM events") == 3 * ROWS


def test_a_fifo_or_socket_named_like_an_input_is_failed_with_a_reason(
        make_worker, pulse_settings: Settings) -> None:
    """Not a regular file: never opened (a FIFO would block the worker), moved to failed/ as
    itself with the reason, said once; regular files beside it import as usual."""
    import socket

    inbox_dir = pulse_settings.import_dir / "events"
    os.mkfifo(inbox_dir / "pipe.csv")
    os.mkfifo(pulse_settings.import_dir / "events_pipe.csv")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox_dir / "sock.csv"))
    sock.close()
    (inbox_dir / "folder.csv").mkdir()  # a folder is left alone
    _write(inbox_dir, b"good.csv", "g-")
    worker, _ = make_worker()
    failed = pulse_settings.import_dir / "failed"
    wait_until(lambda: failed.is_dir() and {"pipe.csv", "events_pipe.csv", "sock.csv"}
               <= {p.name for p in failed.iterdir()}, timeout=20)
    wait_until(lambda: scalar(pulse_settings.db, "SELECT count(*) FROM events") == ROWS)
    rows = query(pulse_settings.db, "SELECT file_name, status, message FROM import_jobs "
                 "WHERE file_name != 'good.csv' ORDER BY file_name")
    assert [r[:2] for r in rows] == [("events_pipe.csv", "failed"), ("pipe.csv", "failed"),
                                     ("sock.csv", "failed")]
    assert all(r[2] == "not a regular file (a pipe, socket or device); not imported"
               for r in rows)
    assert (inbox_dir / "folder.csv").is_dir()
    assert worker.state.state == "running"
