"""Architecture rules: only pulse_tui/tui imports Textual; SQL stays out of the TUI."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pulse_tui"
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.+\b(FROM|INTO|SET|WHERE)\b")


def _modules(outside_tui: bool) -> list[Path]:
    tui = PACKAGE / "tui"
    return [p for p in PACKAGE.rglob("*.py") if (tui in p.parents) != outside_tui]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_outside_the_tui_imports_textual() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in _modules(outside_tui=True)
                 if any(n == "textual" or n.startswith(("textual.", "textual_plotext"))
                        for n in _imports(p))]
    assert offenders == []


def test_the_cli_worker_and_store_load_without_textual() -> None:
    code = ("import sys; import pulse_tui.cli, pulse_tui.worker.service, pulse_tui.store.reports,"
            " pulse_tui.ingest, pulse_tui.exports, pulse_tui.alerts.engine;"
            " print([m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "[]"



def test_no_command_module_imports_the_cli_package_back() -> None:
    """pulse_tui.cli adds the commands; a module under it imports only its siblings (an import
    of the package itself, or a name from it, would be the old cycle)."""
    offenders = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in ("pulse_tui.cli", "pulse_tui") \
                    and (node.module == "pulse_tui.cli"
                         or any(alias.name == "cli" for alias in node.names)):
                offenders.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(a.name == "pulse_tui.cli"
                                                      for a in node.names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []

def test_widgets_and_screens_hold_no_sql() -> None:
    offenders = []
    for path in _modules(outside_tui=False):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and SQL_WORDS.search(node.value):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


SQL_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|PRAGMA|WITH)\b")
# the store layer: pulse_tui/store and the criteria compiler (it emits the cohort SQL); the
# worker's hook runner rolls back a transaction a failed hook left open; backend/clickhouse is
# the data layer of the ClickHouse events store (its SQL is ClickHouse's, not SQLite's)
SQL_ALLOWED = ("store", "cohorts/compiler.py", "backend/clickhouse/")


def test_sql_statements_live_in_the_store_layer_only() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(SQL_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and SQL_STATEMENT.search(node.value):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
