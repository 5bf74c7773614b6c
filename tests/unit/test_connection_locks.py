"""Opening a connection never releases the locks other connections of this process hold.

Closing any file descriptor of a database drops every POSIX lock the process holds on it. A
plain open()/close() of the file while another thread's connection is live drops that
connection's shared lock; another process closing its own connection then takes an exclusive
lock, believes it is the last connection, checkpoints and deletes the WAL under the live one
("disk I/O error", "database disk image is malformed"). connect() must only touch the file
through SQLite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pulse_tui.store.connection import connect

OTHER_PROCESS_READS_AND_CLOSES = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=5)
conn.execute("SELECT count(*) FROM pulse_meta").fetchone()
conn.close()
"""


def test_opening_a_connection_keeps_the_wal_of_a_live_one(db_path: Path) -> None:
    live = connect(db_path)
    live.execute("PRAGMA wal_autocheckpoint = 0")
    live.execute("INSERT INTO pulse_meta (key, value) VALUES ('probe', 'kept')")
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    try:
        connect(db_path).close()  # another thread of this process opening its connection
        subprocess.run([sys.executable, "-c", OTHER_PROCESS_READS_AND_CLOSES, str(db_path)],
                       check=True, timeout=30)
        # the other process must have seen that we are still connected: WAL left alone
        assert wal.exists() and wal.stat().st_size > 0
        assert live.execute("SELECT value FROM pulse_meta WHERE key = 'probe'").fetchone() == (
            "kept",)
        live.execute("INSERT INTO pulse_meta (key, value) VALUES ('after', 'ok')")
        assert live.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        live.close()
