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
    width: int = 0          # 0: flexible (long descriptions), shares what the others leave
    min_total: int = 0      # shown only when the table is at least this wide
    justify: str = "left"
    keep: int = 1           # importance: when room is short, lower keep shrinks first
    grow: bool = False      # widens to its content (names, numbers) up to max_width
    max_width: int = 40
    min_width: int = 0      # never narrower than this (default: the label, at least 6)


FLEX_MIN = 10


def fit_columns(columns: Sequence[Column], total: int,
                natural: dict[str, int] | None = None) -> list[tuple[Column, int]]:
    """The columns shown at ``total`` cells wide, with their widths.

    ``natural``: the widest value of each column (with its one-cell gap). Flexible columns
    (descriptions) give up room first, down to FLEX_MIN each; then the others in order of
    ``keep``, down to their floor; names and numbers (high keep) last."""
    natural = natural or {}
    shown = [c for c in columns if total >= c.min_total]
    want: dict[str, int] = {}
    for c in shown:
        if c.width:
            want[c.key] = max(c.width, min(c.max_width, natural.get(c.key, 0))) if c.grow \
                else c.width
    flexible = [c for c in shown if not c.width]
    room = total - 2 - sum(want.values())
    deficit = FLEX_MIN * len(flexible) - room
    if deficit > 0:
        for c in sorted((c for c in shown if c.width), key=lambda c: c.keep):
            floor = c.min_width or max(len(c.label) + 1, min(c.width, 6))
            cut = min(deficit, want[c.key] - floor)
            if cut > 0:
                want[c.key] -= cut
                deficit -= cut
            if deficit <= 0:
                break
        room = total - 2 - sum(want.values())
    each = max(FLEX_MIN, room // len(flexible)) if flexible else 0
    return [(c, want.get(c.key) or each) for c in shown]


def cut_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut in the middle (ids differ at the end:
    ``acme-blog-u00042`` -> ``acme-…u00042``)."""
    if len(text) <= width or width < 5:
        return text
    tail = (width - 1) * 3 // 5
    return text[:width - 1 - tail] + "…" + text[len(text) - tail:]


def distinct_labels(names: Sequence[str], width: int) -> list[str]:
    """Each name in at most ``width`` cells such that different rows never read the same:
    cut at the end; where two cuts collide, cut in the middle (the ends differ); where they
    still collide (or the names are equal), end with the row's number among them."""
    def end_cut(text: str, room: int) -> str:
        return text if len(text) <= room else text[:max(1, room - 1)] + "…"

    shown = [end_cut(n, width) for n in names]
    for attempt in range(len(names) + 2):
        seen: dict[str, list[int]] = {}
        for i, label in enumerate(shown):
            seen.setdefault(label, []).append(i)
        clashes = [group for group in seen.values() if len(group) > 1]
        if not clashes:
            break
        for group in clashes:
            for k, i in enumerate(group, start=1):
                if attempt == 0:
                    shown[i] = cut_middle(names[i], width)
                else:  # the row's number: unique among the rows
                    tag = f" #{k if attempt == 1 else i + 1}"
                    shown[i] = end_cut(names[i], width - len(tag)) + tag
    return shown


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
    """A DataTable whose columns follow its width and its values; rows are given as
    {key: value}; ``i`` shows the selected row in full."""

    BINDINGS = [Binding("i", "row_details", "Row in full", show=False)]

    def __init__(self, columns: Sequence[Column], **kwargs: object) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        self.empty_text = str(kwargs.pop("empty", "") or "")
        self.detail_title = str(kwargs.pop("detail_title", "") or "")
        super().__init__(cell_padding=0, **kwargs)  # type: ignore[arg-type]
        self.spec = list(columns)
        self.fitted: list[tuple[Column, int]] = []
        self.loaded = False  # True once the pane has given it rows (maybe none)
        self._rows: list[tuple[str, dict[str, object], dict[str, str]]] = []

    def on_resize(self) -> None:
        self._relayout()

    def _natural(self) -> dict[str, int]:
        widths: dict[str, int] = {}
        for _, values, _ in self._rows:
            for key, value in values.items():
                length = value.cell_len if isinstance(value, Text) else \
                    len(visible(value, none="–"))
                if length + 1 > widths.get(key, 0):
                    widths[key] = length + 1
        return widths

    def _relayout(self) -> None:
        fitted = fit_columns(self.spec, self.size.width or 80, self._natural())
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
        self.loaded = True
        self._rows = [(key, values, (styles[i] if styles else {}))
                      for i, (key, values) in enumerate(rows)]
        before = self.fitted
        self._relayout()  # the values may need other widths
        if not before or self.fitted is not before:
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

    def action_row_details(self) -> None:
        """Every column of the selected row in full, also the ones cut or hidden here."""
        from pulse_tui.tui.screens.detail import DetailScreen

        key = self.selected_key()
        row = next((values for k, values, _ in self._rows if k == key), None)
        if row is None:
            return
        fields = [(c.label, row.get(c.key)) for c in self.spec if c.key in row]
        self.app.push_screen(DetailScreen(self.detail_title or "Row", fields))

    def choices(self) -> list[tuple[str, str]]:
        """(row key, a line naming the row) for pickers: its name and state."""
        out = []
        for key, values, _ in self._rows:
            name = next((values[k] for k in ("name", "file", "url", "label") if values.get(k)),
                        key)
            extra = next((values[k] for k in ("status", "state") if values.get(k)), None)
            label = visible(name) + (f"  ({visible(extra)})" if extra else "")
            out.append((key, label))
        return out

    def select_key(self, key: str) -> bool:
        """Move the cursor to the row with ``key``; False when there is none."""
        for index, (row_key, _, _) in enumerate(self._rows):
            if row_key == key:
                self.move_cursor(row=index)
                return True
        return False

    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
