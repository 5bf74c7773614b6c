"""Responsive table columns: fixed widths, flexible ones share the rest, some only when wide."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, Static

from pulse_tui.textsafe import visible


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int = 0          # 0: flexible, shares what the fixed columns leave
    min_total: int = 0      # shown only when the table is at least this wide
    justify: str = "left"


def fit_columns(columns: Sequence[Column], total: int) -> list[tuple[Column, int]]:
    """The columns shown at ``total`` cells wide, with their widths."""
    shown = [c for c in columns if total >= c.min_total]
    fixed = sum(c.width for c in shown if c.width)
    flexible = [c for c in shown if not c.width]
    spare = max(10 * len(flexible), total - fixed - 2)
    each = spare // len(flexible) if flexible else 0
    return [(c, c.width or each) for c in shown]


def cut_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut in the middle (ids differ at the end:
    ``acme-blog-u00042`` -> ``acme-…u00042``)."""
    if len(text) <= width or width < 5:
        return text
    tail = (width - 1) * 3 // 5
    return text[:width - 1 - tail] + "…" + text[len(text) - tail:]


def short_url(url: str, width: int) -> str:
    """The whole URL when it fits, else only its path, query and fragment (the site column
    already tells the host; the event detail shows the whole URL)."""
    if len(url) <= width:
        return url
    scheme, sep, rest = url.partition("://")
    if sep and "/" in rest and scheme.isalpha():
        return rest[rest.index("/"):]
    return url


def cell(value: object, width: int, *, style: str = "", justify: str = "left",
         none: str = "–", cut: str = "end") -> Text:
    """Literal text cut to ``width`` - 1 with an ellipsis, plus a one-space gap.

    ``cut``: "end" (default), "middle" (ids: keep the distinguishing tail) or "url" (a URL
    that does not fit loses its scheme and host, then its end)."""
    if isinstance(value, Text):
        text = value.copy()
    else:
        plain = visible(value, none=none)
        if value is not None and cut == "middle":
            plain = cut_middle(plain, width - 1)
        elif value is not None and cut == "url":
            plain = short_url(plain, width - 1)
        text = Text(plain, style=style, no_wrap=True)
    text.no_wrap = True
    text.truncate(max(1, width - 1), overflow="ellipsis")
    if justify == "right":
        text.pad_left(max(0, width - 1 - text.cell_len))
    text.append(" ")
    text.justify = "left"  # padded by hand: Rich would strip the gap when right-justifying
    return text


class NavTable(DataTable):
    """A DataTable where Home/End go to the first/last row (row cursor) and every table
    can say, in one line under its header, what to do when it has no rows."""

    BINDINGS = [
        Binding("home", "first_row", "First row", show=False),
        Binding("end", "last_row", "Last row", show=False),
        Binding("ctrl+home", "first_row", "First row", show=False),
        Binding("ctrl+end", "last_row", "Last row", show=False),
    ]

    _empty_note: Static | None = None

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def show_empty(self, message: str | Text | None) -> None:
        """Show ``message`` under the header while the table has no rows (None hides it)."""
        if self._empty_note is None:
            if not message or self.parent is None:
                return
            self._empty_note = Static(classes="empty-note")
            self.parent.mount(self._empty_note, after=self)
        note = self._empty_note
        note.update(message if isinstance(message, Text) else Text(message or ""))
        note.display = bool(message)
        self.set_class(bool(message), "-empty")

    @property
    def empty_message(self) -> str:
        """The empty-state line now shown ('' when the table has rows or says nothing)."""
        note = self._empty_note
        return str(note.render()) if note is not None and note.display else ""


class FittedTable(NavTable):
    """A DataTable whose columns follow its width; rows are given as {key: value}."""

    def __init__(self, columns: Sequence[Column], **kwargs: object) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        self.empty_text = str(kwargs.pop("empty", "") or "")
        super().__init__(cell_padding=0, **kwargs)  # type: ignore[arg-type]
        self.spec = list(columns)
        self.fitted: list[tuple[Column, int]] = []
        self._rows: list[tuple[str, dict[str, object], dict[str, str]]] = []

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        fitted = fit_columns(self.spec, self.size.width or 80)
        if [(c.key, w) for c, w in fitted] == [(c.key, w) for c, w in self.fitted]:
            return
        self.fitted = fitted
        keep = self.cursor_row
        self.clear(columns=True)
        for column, width in fitted:
            label = Text(column.label, justify="right" if column.justify == "right" else "left")
            self.add_column(cell(label, width, justify=column.justify), key=column.key,
                            width=width)
        self._add_rows()
        if self.row_count:
            self.move_cursor(row=min(keep, self.row_count - 1))

    def set_rows(self, rows: Sequence[tuple[str, dict[str, object]]],
                 styles: Sequence[dict[str, str]] | None = None) -> None:
        """Replace every row: (row key, {column key: value}); keeps the cursor row."""
        keep = self.cursor_row
        self._rows = [(key, values, (styles[i] if styles else {}))
                      for i, (key, values) in enumerate(rows)]
        if not self.fitted:
            self._relayout()
            self.show_empty(None if self._rows else self.empty_text or None)
            return
        self.clear()
        self._add_rows()
        if self.row_count:
            self.move_cursor(row=min(keep, self.row_count - 1))
        self.show_empty(None if self._rows else self.empty_text or None)

    def _add_rows(self) -> None:
        for key, values, styles in self._rows:
            self.add_row(*(cell(values.get(c.key), w, style=styles.get(c.key, ""),
                                justify=c.justify) for c, w in self.fitted), key=key)

    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
