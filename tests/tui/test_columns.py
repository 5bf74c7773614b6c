"""Table cells: literal text cut to the column, ids cut in the middle, URLs that lose the host."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pulse_tui.tui.widgets.columns import Column, cell, cut_middle, fit_columns, short_url


def test_cut_middle_keeps_the_distinguishing_tail() -> None:
    assert cut_middle("acme-blog-u000042", 13) == "acme-…u000042"
    assert cut_middle("short", 13) == "short"
    assert cut_middle("abcdefghij", 4) == "abcdefghij"  # too narrow to help: cut at the end


def test_short_url_drops_scheme_and_host_only_when_needed() -> None:
    url = "https://blog.acme.example/posts/sqlite?x=1#top"
    assert short_url(url, 80) == url
    assert short_url(url, 20) == "/posts/sqlite?x=1#top"
    assert short_url("https://blog.acme.example", 10) == "https://blog.acme.example"
    assert short_url("not a url at all, just long text", 10) == "not a url at all, just long text"


@given(st.text(max_size=60), st.integers(2, 40), st.sampled_from(["end", "middle", "url"]))
def test_cell_never_exceeds_its_column_and_stays_literal(value: str, width: int,
                                                         cut: str) -> None:
    text = cell(value, width, cut=cut)
    assert text.cell_len <= width
    assert text.plain.endswith(" ")  # the gap to the next column
    assert not text.spans  # data never becomes markup


def test_cell_shows_missing_values_as_a_dash() -> None:
    assert cell(None, 8, cut="middle").plain == "– "


def test_fit_columns_shares_the_rest_between_flexible_columns() -> None:
    cols = [Column("a", "A", 10), Column("b", "B"), Column("c", "C"), Column("d", "D", 5, 100)]
    assert [(c.key, w) for c, w in fit_columns(cols, 80)] == [("a", 10), ("b", 34), ("c", 34)]
    assert [c.key for c, _ in fit_columns(cols, 120)] == ["a", "b", "c", "d"]
