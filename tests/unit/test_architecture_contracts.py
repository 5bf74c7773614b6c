"""The import-linter contracts in pyproject.toml hold, and they do fail on an import that breaks them.

Each failing case copies the package into a temporary folder, adds one offending module and runs
``lint-imports`` there (the same command .ci/run runs), so the proof is the contract's own output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config",
                           str(cwd / "pyproject.toml")], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "pulse_tui", tmp_path / "pulse_tui",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold_on_the_code_as_it_is(tree: Path) -> None:
    out = _lint(tree)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(("module", "source", "contract"), [
    ("pulse_tui/store/offender.py", "import textual\n", "Nothing outside pulse_tui.tui imports"),
    ("pulse_tui/tui/offender.py", "import sqlite3\n", "The TUI reaches data only through"),
    ("pulse_tui/tui/offender.py", "from pulse_tui.store import reports\n",
     "The TUI reaches data only through"),
    ("pulse_tui/store/offender.py", "from pulse_tui.alerts import engine\n", "Layers:"),
    ("pulse_tui/models.py", "", "Layers:"),
])
def test_an_import_that_breaks_a_contract_fails_lint_imports(tree: Path, module: str, source: str,
                                                             contract: str) -> None:
    if module == "pulse_tui/models.py":
        # the pure domain may not reach up into the store
        path = tree / "pulse_tui" / "models.py"
        path.write_text(path.read_text(encoding="utf-8") + "\nfrom pulse_tui.store import tx\n",
                        encoding="utf-8")
    else:
        (tree / module).write_text(f'"""offender"""\n{source}', encoding="utf-8")
    out = _lint(tree)
    assert out.returncode != 0
    broken = out.stdout[out.stdout.index("Broken contracts"):]
    assert contract in broken, out.stdout
    culprit = module.removesuffix(".py").replace("/", ".")
    assert culprit in broken, out.stdout



@pytest.mark.parametrize(("module", "line", "contract"), [
    # the shared module never reaches a command (pulse_tui.cli adds them), commands never
    # reach each other, and only the CLI uses click
    ("pulse_tui/cli/common.py", "from pulse_tui.cli import report", "CLI: each command"),
    ("pulse_tui/cli/report.py", "from pulse_tui.cli import serve", "CLI: each command"),
    ("pulse_tui/worker/service.py", "import click", "Only the CLI uses click"),
    ("pulse_tui/ingest/importer.py", "import click", "Only the CLI uses click"),
    # a backend implementation never calls a service (the services take the backends), and
    # the wiring sits under the services
    ("pulse_tui/backend/sqlite/control.py", "from pulse_tui.alerts import engine", "Layers:"),
    ("pulse_tui/backend/clickhouse/backend.py", "from pulse_tui.exports import runner",
     "Layers:"),
    ("pulse_tui/backend/wiring.py", "from pulse_tui.notify import delivery", "Layers:"),
])
def test_an_import_added_to_a_module_that_breaks_a_contract_fails(tree: Path, module: str,
                                                                  line: str,
                                                                  contract: str) -> None:
    path = tree / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")
    out = _lint(tree)
    assert out.returncode != 0
    broken = out.stdout[out.stdout.index("Broken contracts"):]
    assert contract in broken, out.stdout
    assert module.removesuffix(".py").replace("/", ".") in broken, out.stdout

def test_ci_runs_ruff_and_the_contracts_before_the_tests_and_stops_on_failure() -> None:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert "set -euo pipefail" in lines
    steps = [ln.split()[0] for ln in lines if ln.split()[0] in ("ruff", "lint-imports", "pytest")]
    assert steps == ["ruff", "lint-imports", "pytest"]
    assert "ruff check pulse_tui tests bench" in lines


def test_ruff_with_the_project_config_fails_on_a_style_error(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "bad.py").write_text("import os\n", encoding="utf-8")  # F401, unused import
    ruff = Path(sys.executable).with_name("ruff")
    out = subprocess.run([str(ruff), "check", "--no-cache", "bad.py"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "F401" in out.stdout
