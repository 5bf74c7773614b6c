"""CSV cell neutralisation against formula injection (OWASP), shared by every CSV writer."""

from __future__ import annotations

DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: object) -> object:
    """Prefix an apostrophe to text starting with = + - @ tab or CR; other values unchanged.

    Numbers are left alone (a negative number is data, not a formula).
    """
    if isinstance(cell, str) and cell.startswith(DANGEROUS_PREFIXES):
        return "'" + cell
    return cell


def neutralise_row(row: tuple[object, ...] | list[object]) -> list[object]:
    return [neutralise(c) for c in row]
