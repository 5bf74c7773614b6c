"""The shared CSV neutraliser."""

from __future__ import annotations

import pytest

from pulse_tui.csvsafe import neutralise, neutralise_row


@pytest.mark.parametrize("cell", ["=1+2", "+1", "-3", "@SUM(A1)", "\tx", "\rx"])
def test_dangerous_text_gets_an_apostrophe(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "plain", " =x", "'=x", "(none)", -3, 1.5, None])
def test_other_cells_are_unchanged(cell: object) -> None:
    assert neutralise(cell) == cell


def test_row() -> None:
    assert neutralise_row(("=a", 1, "b")) == ["'=a", 1, "b"]
