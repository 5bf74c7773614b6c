"""Import parser/validator: encodings, line numbers, timestamps, bad rows (pure, no database)."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulse_tui.ingest.parse import (
    FileRejected,
    Reject,
    base_name,
    kind_from_header,
    kind_from_path,
    member_id_for,
    parse_text,
    parse_timestamp,
    read_all,
)

NOW = 1_795_000_000_000
TS = 1_764_072_000_000  # 2025-11-25T12:00:00Z
EV_HEADER = "event_id,site_id,event_type,timestamp_ms,session_id,user_id,url\n"


def events(body: str | bytes, **kw: object) -> tuple[list[tuple], list[Reject]]:
    data = (EV_HEADER.encode() + body) if isinstance(body, bytes) else EV_HEADER + body
    _, rows, rejects = parse_text(data, "events", now_ms=NOW, **kw)  # type: ignore[arg-type]
    return rows, rejects


def test_bom_crlf_case_insensitive_header_and_timestamp_alias() -> None:
    data = ("\ufeff Event_ID , SITE_ID,Event_Type,Timestamp,session_id\r\n"
            f"e1,acme,page_view,{TS},s1\r\n").encode()
    header, rows, rejects = parse_text(data, "events", now_ms=NOW)
    assert rejects == []
    assert rows == [("e1", "acme", "page_view", TS, "s1", None, None, None, None, None, NOW)]
    assert header.unknown == []


def test_bom_before_quoted_header_field() -> None:
    data = b'\xef\xbb\xbf"event_id",site_id,event_type,timestamp_ms,session_id\n' \
           + f"e1,a,t,{TS},s\n".encode()
    _, rows, rejects = parse_text(data, "events")
    assert len(rows) == 1 and rejects == []


def test_quoted_commas_quotes_and_newlines_keep_line_numbers() -> None:
    body = (f'e1,a,t,{TS},s,u,"/x,y ""quoted"""\n'
            f'e2,a,t,{TS},s,u,"line one\nline two\r\nline three"\n'
            f"e3,a,,{TS},s,u,/after\n")
    rows, rejects = events(body)
    assert rows[0][6] == '/x,y "quoted"'
    assert rows[1][6] == "line one\nline two\r\nline three"
    # e3 starts on physical line 6: header 1, e1 2, e2 3..5
    assert rejects == [Reject(6, "event_type", "", "missing required value")]


def test_crlf_line_numbers_and_blank_lines_skipped() -> None:
    body = f"e1,a,t,{TS},s\r\n\r\n   \r\ne2,a,t,bad,s\r\n"
    rows, rejects = events(body)
    assert [r[0] for r in rows] == ["e1"]
    assert rejects[0].line == 5 and rejects[0].column == "timestamp_ms"


@pytest.mark.parametrize(("value", "word"), [
    ("1764072000", "seconds"),
    ("1764072000.5", "seconds"),
    ("1764072000000000", "microseconds"),
    ("1764072000000000000", "nanoseconds"),
])
def test_timestamp_unit_mistakes_are_named(value: str, word: str) -> None:
    rows, rejects = events(f"e1,a,t,{value},s\n")
    assert rows == []
    assert rejects[0].column == "timestamp_ms" and rejects[0].value == value
    assert word in rejects[0].reason and "PULSE uses milliseconds" in rejects[0].reason


def test_seconds_reason_text() -> None:
    assert parse_timestamp("1764072000") == "looks like seconds; PULSE uses milliseconds"


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-11-25T12:00:00Z", TS),
    ("2025-11-25T12:00:00", TS),  # no offset = UTC
    ("2025-11-25 12:00:00.250", TS + 250),
    ("2025-11-25T14:00:00+02:00", TS),
    ("2025-11-25T07:00:00-05:00", TS),
    ("2025-11-25", TS - 12 * 3_600_000),
    (str(TS), TS),
])
def test_iso_and_ms_timestamps(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected
    rows, rejects = events(f"e1,a,t,{text},s\n")
    assert rejects == [] and rows[0][3] == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-45T99:00:00Z", "12:00", "1.7e12",
                                  "99999999999", "4102444800001", "-5", "1999-12-31T23:59:59Z"])
def test_bad_timestamps_rejected(text: str) -> None:
    rows, rejects = events(f"e1,a,t,{text},s\n")
    assert rows == [] and len(rejects) == 1
    assert rejects[0].column == "timestamp_ms"


def test_range_bounds_inclusive() -> None:
    assert parse_timestamp("2000-01-01T00:00:00Z") == 946_684_800_000
    assert parse_timestamp("2100-01-01T00:00:00Z") == 4_102_444_800_000
    assert "outside" in str(parse_timestamp("2100-01-01T00:00:00.001Z"))


def test_missing_required_column_fails_file_naming_it() -> None:
    with pytest.raises(FileRejected, match="session_id"):
        parse_text(f"event_id,site_id,event_type,timestamp_ms\ne1,a,t,{TS}\n", "events")
    with pytest.raises(FileRejected, match="timestamp"):
        parse_text("event_id,site_id,event_type,session_id\n", "events")
    with pytest.raises(FileRejected, match="site_id"):
        parse_text("event_id,event_type,timestamp_ms,session_id\n", "events")
    with pytest.raises(FileRejected, match="cohort_id"):
        parse_text("user_id\nu1\n", "cohort_members")


def test_site_option_replaces_site_column() -> None:
    _, rows, rejects = parse_text(f"event_id,event_type,timestamp_ms,session_id\ne1,t,{TS},s\n",
                                  "events", site_id="web")
    assert rejects == [] and rows[0][1] == "web"


def test_unknown_columns_reported_once_not_per_row() -> None:
    data = "event_id,site_id,event_type,timestamp_ms,session_id,Browser,extra\n" + \
        "".join(f"e{i},a,t,{TS},s,ff,x\n" for i in range(5))
    header, rows, rejects = parse_text(data, "events")
    assert header.unknown == ["Browser", "extra"]
    assert len(rows) == 5 and rejects == []


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "events.csv"
    empty.write_bytes(b"")
    with pytest.raises(FileRejected, match="empty"):
        read_all(empty)
    only = tmp_path / "events2.csv"
    only.write_text(EV_HEADER)
    _, rows, rejects = read_all(only)
    assert rows == [] and rejects == []


def test_non_utf8_bytes_reject_only_that_row() -> None:
    body = f"e1,a,t,{TS},s\n".encode() + f"e2,a,caf\xe9,{TS},s\n".encode("latin-1") + \
        f"e3,a,t,{TS},s\n".encode()
    rows, rejects = events(body)
    assert [r[0] for r in rows] == ["e1", "e3"]
    assert rejects == [Reject(3, "event_type", "caf\\xe9", "bytes that are not UTF-8")]


def test_non_utf8_header_fails_file() -> None:
    with pytest.raises(FileRejected, match="UTF-8"):
        parse_text(b"event_id,\xff\xfe\n", "events")


def test_nul_byte_rejected_and_other_control_chars_kept() -> None:
    rows, rejects = events(f"e1,a,t,{TS},s,u,/a\x00b\ne2,a,t,{TS},s,u,/a\x1b[31mb\x07\n")
    assert rejects == [Reject(2, "url", "/a\\x00b", "NUL byte in value")]
    assert rows[0][6] == "/a\x1b[31mb\x07"


def test_long_id_long_text_and_huge_field() -> None:
    long_id = "x" * 257
    body = (f"{long_id},a,t,{TS},s\n"
            f"e2,a,t,{TS},s,u,{'y' * 8193}\n"
            f"e3,a,t,{TS},s,u,{'z' * 300_000}\n"
            f"e4,a,t,{TS},s,u,{'é' * 4096}\n"  # 8192 bytes: allowed
            f"{'i' * 256},a,t,{TS},s\n")
    rows, rejects = events(body)
    assert [(r.line, r.column) for r in rejects] == [(2, "event_id"), (3, "url"), (4, "url")]
    assert "256" in rejects[0].reason and "8 KiB" in rejects[1].reason
    assert len(rejects[2].value or "") < 1000  # stored values are truncated
    assert [r[0] for r in rows] == ["e4", "i" * 256]


def test_too_many_fields_rejected_fewer_fields_are_nulls() -> None:
    rows, rejects = events(f"e1,a,t,{TS},s,u,/x,extra\ne2,a,t,{TS},s\n")
    assert rejects[0].line == 2 and "more fields" in rejects[0].reason
    assert rows == [("e2", "a", "t", TS, "s", None, None, None, None, None, NOW)]


def test_values_stripped_and_empty_is_null() -> None:
    rows, rejects = events(f"  e1 , a ,  t , {TS} , s ,  , \n")
    assert rejects == []
    assert rows[0][:7] == ("e1", "a", "t", TS, "s", None, None)


def test_missing_required_value_names_column() -> None:
    rows, rejects = events(f"e1,a,t,{TS},\n")
    assert rejects == [Reject(2, "session_id", "", "missing required value")]


def test_users_defaults_and_bad_timestamps() -> None:
    _, rows, rejects = parse_text(
        "user_id,name,created_at,updated_at\nu1,Ada,,\nu2,Bob,2025-11-25T12:00:00Z,1764072000\n",
        "users", now_ms=NOW)
    assert rows == [("u1", None, "Ada", None, None, None, NOW, NOW)]
    assert rejects[0].column == "updated_at" and "seconds" in rejects[0].reason


def test_cohort_members_defaults() -> None:
    _, rows, rejects = parse_text("cohort_id,user_id,is_active\nc1,u1,\nc1,u2,false\nc1,u3,maybe\n",
                                  "cohort_members", now_ms=NOW)
    assert rows[0] == (member_id_for("c1", "u1"), "c1", None, "u1", None, None, 1)
    assert rows[1][6] == 0
    assert rejects[0].column == "is_active"
    assert member_id_for("c1", "u1") == member_id_for("c1", "u1") != member_id_for("c1", "u2")


def test_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(("\ufeff" + EV_HEADER + f"e1,a,t,{TS},s\r\ne2,a,t,{TS},s\r\n").encode())
    header, rows, rejects = read_all(path)
    assert header.kind == "events" and len(rows) == 2 and rejects == []
    assert base_name(path) == "events"


def test_kind_detection(tmp_path: Path) -> None:
    assert kind_from_path(tmp_path / "events" / "x.csv") == "events"
    assert kind_from_path(tmp_path / "users" / "export.csv") == "users"
    assert kind_from_path(tmp_path / "cohort_members_2026.csv") == "cohort_members"
    assert kind_from_path(tmp_path / "events-nov.csv.gz") == "events"
    assert kind_from_path(tmp_path / "data.csv") is None
    assert kind_from_header(["Event_ID", "x"]) == "events"
    assert kind_from_header(["cohort_id", "user_id"]) == "cohort_members"
    assert kind_from_header(["user_id", "email"]) == "users"
    assert kind_from_header(["a", "b"]) is None
    plain = tmp_path / "data.csv"
    plain.write_text("user_id,email\nu1,a@b.c\n")
    header, rows, _ = read_all(plain)
    assert header.kind == "users" and rows[0][0] == "u1"


def test_unknown_type_fails_file(tmp_path: Path) -> None:
    plain = tmp_path / "data.csv"
    plain.write_text("a,b\n1,2\n")
    with pytest.raises(FileRejected, match="--type"):
        read_all(plain)


# ------------------------------------------------------------------------- property

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)


@given(st.lists(st.tuples(_text, _text, _text, st.booleans()), min_size=1, max_size=15))
def test_any_rows_the_csv_writer_emits_read_back_identically(
        rows: list[tuple[str, str, str, bool]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["user_id", "name", "email", "company", "updated_at"])
    line = 2
    bad_lines = []
    for i, (name, email, company, bad) in enumerate(rows):
        start = buf.tell()
        writer.writerow([f"u{i}", name, email, company, "nope" if bad else ""])
        if bad:
            bad_lines.append(line)
        line += buf.getvalue()[start:].count("\n")
    _, got, rejects = parse_text(buf.getvalue().encode("utf-8"), "users", now_ms=NOW)
    good = [r for r in rows if not r[3]]
    assert [r.line for r in rejects] == bad_lines  # where each bad record starts
    assert len(got) == len(good)
    for row, (name, email, company, _) in zip(got, good, strict=True):
        assert row[2:5] == tuple(v.strip() or None for v in (name, email, company))
