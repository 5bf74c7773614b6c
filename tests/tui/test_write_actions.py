"""Every write action uses the one write_action decorator: never exclusive, one at a time."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

from conftest import FIXED_NOW_MS, async_wait_until

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.store import cohorts as cohorts_sql
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.cohorts import CohortsScreen
from tests.tui.tui_helpers import press_until

TUI = Path(__file__).resolve().parents[2] / "pulse_tui" / "tui"
# reads that may compute a missing snapshot once (not a key press: never doubled by the operator)
READS_THAT_COMPUTE = {("retention.py", "_load")}


def _writes(fn: ast.AsyncFunctionDef) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "write"
               and isinstance(n.value, ast.Attribute) and n.value.attr == "store"
               or isinstance(n, ast.Attribute) and n.attr == "write"
               and isinstance(n.value, ast.Name) and n.value.id == "store"
               for n in ast.walk(fn))


def test_every_method_that_writes_is_a_write_action() -> None:
    missing, exclusive = [], []
    for path in TUI.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.AsyncFunctionDef) or not _writes(node):
                continue
            names = [ast.unparse(d) for d in node.decorator_list]
            if (path.name, node.name) in READS_THAT_COMPUTE:
                continue
            if not any(n.startswith("write_action(") for n in names):
                missing.append(f"{path.name}:{node.name}")
            if any("exclusive=True" in n for n in names):
                exclusive.append(f"{path.name}:{node.name}")
    assert missing == [] and exclusive == []


async def test_duplicate_pressed_again_while_the_first_write_waits_makes_one_copy(
        pulse_settings: Settings, conn: sqlite3.Connection, db_path: Path) -> None:
    conn.execute("INSERT INTO sites (id, name, created_at) VALUES ('acme', 'acme', 0)")
    cohorts_sql.create_cohort(conn, Clock(FIXED_NOW_MS), site_id="acme", name="VIPs",
                              kind="static")
    app = make_app(pulse_settings, clock=Clock(FIXED_NOW_MS), worker=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await press_until(pilot, CohortsScreen, "3", timeout=5)
        screen = app.screen
        await async_wait_until(lambda: len(screen.rows) == 1, timeout=10)
        blocker = sqlite3.connect(db_path, timeout=10, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the copy waits
        try:
            await pilot.press("c")
            await async_wait_until(lambda: [w for w in app.workers
                                            if w.name == "action_duplicate" and w.is_running],
                                   timeout=10)
            await pilot.press("c")  # impatient: the first copy has not landed yet
            await pilot.pause()
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        await async_wait_until(lambda: len(screen.rows) >= 2, timeout=15)
        await async_wait_until(lambda: not [w for w in app.workers
                                            if w.name == "action_duplicate" and w.is_running],
                               timeout=15)
    names = sorted(r[0] for r in conn.execute("SELECT name FROM cohorts"))
    assert names == ["VIPs", "VIPs (copy)"]


def test_the_app_reaches_data_only_through_read_and_write() -> None:
    # Store.run (the raw connection) exists for tests and diagnostics; no pane or app code uses it
    offenders = [f"{p.name}:{n.lineno}" for p in TUI.rglob("*.py")
                 for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                 if isinstance(n, ast.Attribute) and n.attr == "run"
                 and isinstance(n.value, ast.Attribute) and n.value.attr == "store"
                 or isinstance(n, ast.Attribute) and n.attr == "run"
                 and isinstance(n.value, ast.Name) and n.value.id == "store"]
    assert offenders == []
