"""Plain consoles: every drawn glyph (borders, blocks, braille, arrows, states) as ASCII.

The Linux console's fonts lack braille, rounded corners and most block characters, and a
vt100 has none of them. Instead of teaching each widget (ours and Textual's: borders, select
arrows, tree guides, scrollbars, toasts) a second alphabet, the app adds one line filter that
replaces each drawing character by an ASCII one of the same width as it is written to the
terminal. Letters, digits and text from the data outside these ranges are left alone.
"""

from __future__ import annotations

import re
import unicodedata

from rich.cells import cell_len
from rich.segment import Segment
from textual.color import Color
from textual.filter import LineFilter

# terminals that cannot draw Unicode box and block characters
PLAIN_TERM = re.compile(r"^(linux|vt\d+.*|ansi|dumb|cons25|pcansi)$")

_SPECIFIC = {
    # states, arrows and marks
    "▲": "^", "▼": "v", "△": "^", "▽": "v", "▶": ">", "◀": "<", "►": ">", "◄": "<",
    "↑": "^", "↓": "v", "→": ">", "←": "<", "↔": "-", "⇒": ">", "›": ">", "‹": "<",
    "»": ">", "«": "<", "●": "*", "○": "o", "◌": "o", "◉": "*", "■": "#", "□": "o",
    "✖": "x", "✕": "x", "✗": "x", "✓": "v", "✔": "v", "×": "x", "⊘": "/", "⏸": "=",
    "⚠": "!", "★": "*", "☆": "*", "◆": "*", "◇": "o", "•": "*", "·": ".", "…": "~",
    "≥": ">", "≤": "<", "≠": "#", "±": "+", "−": "-", "–": "-", "—": "-", "‒": "-",
    "“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'", "\u00a0": " ",
    "⏎": "<", "⌫": "<", "⇥": ">", "🔎": ">",
    # double lines (the focused panel) stay apart from single ones
    "═": "=", "╔": "#", "╗": "#", "╚": "#", "╝": "#",
    # shades and blocks: the retention ramp keeps its order (light -> full)
    "░": ".", "▒": ":", "▓": "+", "█": "#",
    "▁": "_", "▂": ".", "▃": "-", "▄": "=", "▅": "+", "▆": "*", "▇": "#",
    "▀": "#", "▐": "#", "▌": "#", "▉": "#", "▊": "#", "▋": "#", "▍": "|", "▎": "|", "▏": "|",
    "▔": "-", "▕": "|",
    "▖": ".", "▗": ".", "▘": "'", "▝": "'", "▙": "#", "▚": "#", "▛": "#", "▜": "#", "▞": "#",
    "▟": "#",
}

_HORIZONTAL = set("─━┄┅┈┉╌╍╴╶╸╺╼╾")
_VERTICAL = set("│┃┆┇┊┋╎╏║╵╷╹╻╽╿")


def _fallback(char: str) -> str | None:
    """The ASCII stand-in for one drawing character, or None to leave it as it is."""
    if char in _SPECIFIC:
        return _SPECIFIC[char]
    code = ord(char)
    if 0x2800 <= code <= 0x28FF:  # braille: any dot is a point of the line
        return " " if code == 0x2800 else "*"
    if 0x2500 <= code <= 0x257F:  # box drawing
        if char in _HORIZONTAL:
            return "-"
        if char in _VERTICAL:
            return "|"
        return "+"
    if 0x2580 <= code <= 0x259F or 0x25A0 <= code <= 0x25FF:  # blocks, geometric shapes
        return "#"
    if 0x2190 <= code <= 0x21FF:  # arrows
        return ">"
    if 0x2000 <= code <= 0x206F:  # punctuation: spaces, dashes, quotes
        name = unicodedata.name(char, "")
        return " " if "SPACE" in name else "-" if "DASH" in name else "'"
    return None


def _table() -> dict[int, str]:
    table: dict[int, str] = {}
    ranges = [(0x2000, 0x206F), (0x2190, 0x21FF), (0x2500, 0x25FF), (0x2800, 0x28FF),
              (0x2200, 0x22FF), (0x2300, 0x23FF), (0x2700, 0x27BF), (0x2600, 0x26FF)]
    for start, end in ranges:
        for code in range(start, end + 1):
            char = chr(code)
            out = _fallback(char)
            if out is not None and cell_len(char) >= 1:  # zero-width marks stay as they are
                # the same width on screen as the glyph it replaces
                table[code] = out * max(1, cell_len(char))
    for char, out in _SPECIFIC.items():
        table[ord(char)] = out * max(1, cell_len(char))
    return table


ASCII_TABLE = _table()


def to_ascii(text: str) -> str:
    """``text`` with every drawing character replaced by its ASCII stand-in."""
    return text.translate(ASCII_TABLE)


def term_is_plain(term: str | None) -> bool:
    """True for TERM values whose consoles lack Unicode drawing characters."""
    return bool(term) and bool(PLAIN_TERM.match(term or ""))


class AsciiFilter(LineFilter):
    """Replaces drawing characters by ASCII as lines are written to the terminal."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        table = ASCII_TABLE
        return [Segment(text.translate(table), style, control) if not control else
                Segment(text, style, control) for text, style, control in segments]
