"""The worker lease: one row per database that says which process imports and runs jobs."""

from __future__ import annotations

import sqlite3

from pulse_tui.models import LeaseInfo
from pulse_tui.store.tx import write_transaction

LEASE_NAME = "worker"
LEASE_TTL_MS = 15_000  # a holder renews every few seconds; a dead one's lease expires after this


def try_acquire(
    conn: sqlite3.Connection,
    holder: str,
    *,
    now_ms: int,
    pid: int | None = None,
    host: str | None = None,
    import_dir: str | None = None,
    ttl_ms: int = LEASE_TTL_MS,
) -> bool:
    """Take or renew the lease if it is free, expired or already ours. True when we hold it."""
    with write_transaction(conn):
        row = conn.execute(
            "SELECT holder, expires_at FROM worker_lease WHERE name = ?", (LEASE_NAME,)
        ).fetchone()
        if row is None or row[0] == holder or row[1] <= now_ms:
            acquired = now_ms if row is None or row[0] != holder else None
            conn.execute(
                """
                INSERT INTO worker_lease (name, holder, pid, host, import_dir, acquired_at,
                                          renewed_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET
                    holder = excluded.holder, pid = excluded.pid, host = excluded.host,
                    import_dir = excluded.import_dir,
                    acquired_at = coalesce(?, worker_lease.acquired_at),
                    renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
                """,
                (LEASE_NAME, holder, pid, host, import_dir, now_ms, now_ms, now_ms + ttl_ms,
                 acquired),
            )
            return True
        return False


def release(conn: sqlite3.Connection, holder: str) -> None:
    conn.execute("DELETE FROM worker_lease WHERE name = ? AND holder = ?", (LEASE_NAME, holder))


def current(conn: sqlite3.Connection, now_ms: int) -> LeaseInfo | None:
    """The live lease, or None when nobody holds it (or the holder's lease expired)."""
    row = conn.execute(
        "SELECT holder, pid, host, renewed_at, expires_at FROM worker_lease "
        "WHERE name = ? AND expires_at > ?",
        (LEASE_NAME, now_ms),
    ).fetchone()
    return LeaseInfo(*row) if row else None
