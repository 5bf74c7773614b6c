"""Showing text from the data literally: control characters made visible, never markup."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def visible(value: object, *, none: str = "") -> str:
    """``value`` as one line of plain text with control characters shown as escapes.

    The result is still plain text: put it in a ``rich.text.Text`` (never a markup string).
    """
    if value is None:
        return none
    return _CONTROL.sub(_escape, str(value))
