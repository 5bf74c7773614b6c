"""One write transaction helper for every store module."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("pulse_tui.store")


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE .. COMMIT (ROLLBACK on any error), or join the caller's open one.

    The error that stopped the transaction is the one raised: a ROLLBACK that fails too (SQLite
    may already have rolled back after a full disk or I/O error) is only logged.
    """
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        rollback_quietly(conn)
        raise


def rollback_quietly(conn: sqlite3.Connection) -> None:
    """ROLLBACK when a transaction is open, never raising: called while another error is
    on its way up, which must not be masked ("cannot rollback - no transaction is active")."""
    try:
        if conn.in_transaction:  # SQLite may have rolled back already
            conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.debug("rollback after an error failed too: %s", exc)
