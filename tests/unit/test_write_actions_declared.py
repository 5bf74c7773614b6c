"""Every TUI function that writes through the Store is a declared write action (@writes), so a
read-only session hides and refuses it; the few exceptions say why."""

from __future__ import annotations

import ast
from pathlib import Path

TUI = Path(__file__).resolve().parents[2] / "pulse_tui" / "tui"

# functions that write but are not actions a key or the palette reaches, and how a read-only
# session is kept safe there
NOT_ACTIONS = {
    ("screens/retention.py", "_load"): "reads live instead of storing snapshots when read-only",
    ("screens/retention.py", "action_open_cell"): "only writes a name the cell dialog's "
                                                  "@writes start_save produced",
}


def _writes_through_store(fn: ast.AST) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "write":
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name == "store":
                return True
    return False


def _declared(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if getattr(target, "id", None) == "writes":
            return True
    return False


def test_every_write_is_a_declared_write_action() -> None:
    writing, undeclared = [], []
    for path in sorted(TUI.rglob("*.py")):
        rel = str(path.relative_to(TUI))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and _writes_through_store(node):
                writing.append((rel, node.name))
                if not _declared(node) and (rel, node.name) not in NOT_ACTIONS:
                    undeclared.append(f"{rel}:{node.lineno} {node.name}")
    assert len(writing) > 10  # the scan finds the writes (it cannot pass by finding none)
    assert undeclared == [], "declare these with @writes(...) (pulse_tui/tui/guards.py)"
    assert set(NOT_ACTIONS) <= set(writing)  # no stale exception
