"""The types the panes, the CLI and the exports read live in pulse_tui.models (no SQL there), and
the failures the UI must tell apart arrive as PULSE errors, never as sqlite3 exceptions."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

from pulse_tui import models
from pulse_tui.clock import Clock
from pulse_tui.errors import CohortNotFound, NameTaken, PulseError, RowVanished
from pulse_tui.exports import ExportNotFound, get_export
from pulse_tui.store import cohorts, retention

CLOCK = Clock(1_750_000_000_000)


def test_the_models_module_holds_no_sql_and_imports_no_database_driver() -> None:
    tree = ast.parse(Path(models.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.split(".")[0] in ("sqlite3", "aiosqlite")}
    assert not {m for m in imported if m.startswith("pulse_tui.store")}


def test_the_store_modules_return_the_neutral_types() -> None:
    assert retention.RetentionGrid is models.RetentionGrid
    assert cohorts.Cohort is models.Cohort


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.execute("INSERT INTO sites (id, name, created_at) VALUES ('s1', 's1', 0)")
    return conn


def test_a_cohort_id_already_taken_is_name_taken_and_saves_nothing(db: sqlite3.Connection) -> None:
    cohorts.create_cohort(db, CLOCK, site_id="s1", name="VIPs", kind="static", cohort_id="vip")
    with pytest.raises(NameTaken) as info:
        cohorts.create_cohort(db, CLOCK, site_id="s1", name="other", kind="static",
                              cohort_id="vip")
    assert isinstance(info.value, PulseError) and not isinstance(info.value, sqlite3.Error)
    assert "'vip'" in str(info.value)
    assert db.execute("SELECT name FROM cohorts").fetchall() == [("VIPs",)]


def test_rows_that_vanished_are_one_pulse_error(db: sqlite3.Connection) -> None:
    with pytest.raises(RowVanished):
        cohorts.get_cohort(db, "gone")
    with pytest.raises(RowVanished):
        get_export(db, "gone")
    assert issubclass(CohortNotFound, RowVanished) and issubclass(ExportNotFound, RowVanished)
