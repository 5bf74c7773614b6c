"""Settings: flag > env > config file > default, for each path; config file errors name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulse_tui import config
from pulse_tui.config import ENV_VARS, load_settings
from pulse_tui.errors import UsageError

KEYS = ("db", "import_dir", "export_dir")


def write_config(path: Path, values: dict[str, object]) -> Path:
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f'{key} = "{value}"')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_isolated_home_is_in_effect(tmp_path: Path) -> None:
    # conftest points HOME/XDG at a temp folder: the defaults must land there, not in ~
    home = Path(__import__("os").environ["HOME"])
    assert config.data_dir().is_relative_to(home)
    assert config.config_dir().is_relative_to(home)


def test_defaults_under_platformdirs_data_dir() -> None:
    import platformdirs

    s = load_settings(environ={})
    data = Path(platformdirs.user_data_dir("pulse-tui", appauthor=False))
    assert s.db == data / "pulse.db"
    assert s.import_dir == data / "import"
    assert s.export_dir == data / "exports"
    assert s.settle_seconds == 2.0
    assert s.events_retention_days == 90
    assert s.exports_retention_days == 30
    assert s.rollup_retention_days == 400
    assert s.config_file is None
    assert all(s.sources[k] == "default" for k in KEYS)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("layers", [
    ("default",), ("config",), ("env",), ("flag",),
    ("config", "env"), ("config", "flag"), ("env", "flag"), ("config", "env", "flag"),
])
def test_precedence(tmp_path: Path, key: str, layers: tuple[str, ...]) -> None:
    """The highest layer present wins, for each path on its own (others stay default)."""
    values = {layer: tmp_path / f"from-{layer}" / key for layer in ("config", "env", "flag")}
    cfg = tmp_path / "cfg.toml"
    write_config(cfg, {key: values["config"]} if "config" in layers else {})
    environ = {ENV_VARS[key]: str(values["env"])} if "env" in layers else {}
    flags = {key: values["flag"]} if "flag" in layers else {}
    s = load_settings(config_file=cfg, environ=environ, **flags)
    winner = layers[-1]
    if winner == "default":
        assert getattr(s, key) == getattr(load_settings(environ={}), key)
    else:
        assert getattr(s, key) == values[winner]
    assert s.sources[key] == winner
    for other in KEYS:
        if other != key:
            assert s.sources[other] == "default"


def test_default_config_file_in_user_config_dir_is_read(tmp_path: Path) -> None:
    cfg = write_config(config.default_config_file(), {
        "db": str(tmp_path / "c.db"), "import_dir": str(tmp_path / "in"),
        "export_dir": str(tmp_path / "out"), "settle_seconds": 0.5,
        "events_retention_days": 7, "exports_retention_days": 3,
        "rollup_retention_days": 100, "log_file": str(tmp_path / "x.log"),
    })
    assert cfg.parent.name == "pulse-tui"
    s = load_settings(environ={})
    assert s.db == tmp_path / "c.db"
    assert s.import_dir == tmp_path / "in"
    assert s.export_dir == tmp_path / "out"
    assert s.settle_seconds == 0.5
    assert (s.events_retention_days, s.exports_retention_days, s.rollup_retention_days) == (
        7, 3, 100)
    assert s.log_file == tmp_path / "x.log"
    assert s.config_file == cfg


def test_explicit_config_replaces_default_config(tmp_path: Path) -> None:
    write_config(config.default_config_file(), {"db": str(tmp_path / "default-cfg.db")})
    other = write_config(tmp_path / "other.toml", {"export_dir": str(tmp_path / "ex")})
    s = load_settings(config_file=other, environ={})
    assert s.export_dir == tmp_path / "ex"
    assert s.db != tmp_path / "default-cfg.db"  # the default config file is not read too
    assert s.config_file == other


def test_env_read_from_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setenv("PULSE_DB", str(tmp_path / "env.db"))
    monkeypatch.setenv("PULSE_IMPORT_DIR", str(tmp_path / "envin"))
    monkeypatch.setenv("PULSE_EXPORT_DIR", str(tmp_path / "envout"))
    s = load_settings()
    assert (s.db, s.import_dir, s.export_dir) == (
        tmp_path / "env.db", tmp_path / "envin", tmp_path / "envout")


def test_blank_env_and_flag_are_ignored(tmp_path: Path) -> None:
    s = load_settings(db="  ", environ={"PULSE_DB": ""})
    assert s.db == load_settings(environ={}).db


def test_tilde_is_expanded(tmp_path: Path) -> None:
    import os

    s = load_settings(db="~/x.db", environ={})
    assert s.db == Path(os.environ["HOME"]) / "x.db"


@pytest.mark.parametrize("content, needle", [
    ('db = "unterminated\n', "invalid TOML"),
    ("db = [\n", "invalid TOML"),
    ('colour = "blue"\n', "unknown key 'colour'"),
    ("db = 3\n", "db must be"),
    ('db = ""\n', "db must be"),
    ('settle_seconds = "fast"\n', "settle_seconds"),
    ("settle_seconds = -1\n", "settle_seconds"),
    ("events_retention_days = 1.5\n", "events_retention_days"),
    ("events_retention_days = true\n", "events_retention_days"),
    ('cleanup_enabled = "yes"\n', "cleanup_enabled"),
])
def test_bad_config_file_is_one_line_naming_the_file(tmp_path: Path, content: str,
                                                     needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content, "utf-8")
    with pytest.raises(UsageError) as info:
        load_settings(config_file=cfg, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert str(cfg) in message
    assert needle in message
    assert info.value.exit_code == 2


def test_bad_default_config_file_also_reported(tmp_path: Path) -> None:
    cfg = config.default_config_file()
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("nonsense ==\n")
    with pytest.raises(UsageError) as info:
        load_settings(environ={})
    assert str(cfg) in str(info.value)
    assert "\n" not in str(info.value)


def test_non_utf8_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "latin.toml"
    cfg.write_bytes(b'db = "caf\xe9"\n')
    with pytest.raises(UsageError) as info:
        load_settings(config_file=cfg, environ={})
    assert str(cfg) in str(info.value)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "absent.toml"
    with pytest.raises(UsageError) as info:
        load_settings(config_file=cfg, environ={})
    assert str(cfg) in str(info.value)
    assert "\n" not in str(info.value)


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_settings(config_file=tmp_path, environ={})
    assert str(tmp_path) in str(info.value)
    assert "\n" not in str(info.value)


def test_describe_lists_effective_paths(tmp_path: Path) -> None:
    s = load_settings(db=tmp_path / "d.db", environ={"PULSE_EXPORT_DIR": str(tmp_path / "e")})
    rows = dict(s.describe())
    assert rows["database"] == str(tmp_path / "d.db")
    assert rows["export dir"] == str(tmp_path / "e")
    assert rows["config file"] == str(config.default_config_file())


def test_demo_settings_live_under_data_dir() -> None:
    s = load_settings(environ={}).with_demo()
    assert s.db == config.data_dir() / "demo" / "pulse.db"
    assert s.import_dir == config.data_dir() / "demo" / "import"
    assert s.export_dir == config.data_dir() / "demo" / "exports"
    assert s.demo and not s.cleanup_enabled
