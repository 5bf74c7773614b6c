"""Settings: command-line flags > environment > TOML config file > defaults (platformdirs)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from pulse_tui.errors import UsageError

APP_NAME = "pulse-tui"

ENV_VARS = {"db": "PULSE_DB", "import_dir": "PULSE_IMPORT_DIR", "export_dir": "PULSE_EXPORT_DIR"}

PATH_KEYS = ("db", "import_dir", "export_dir", "log_file")
INT_KEYS = (
    "events_retention_days",
    "exports_retention_days",
    "rollup_retention_days",
)
FLOAT_KEYS = ("settle_seconds",)
BOOL_KEYS = ("cleanup_enabled", "webhook_allow_link_local", "ascii")
KNOWN_KEYS = PATH_KEYS + INT_KEYS + FLOAT_KEYS + BOOL_KEYS

IMPORT_TYPES = ("events", "users", "cohort_members")


# bounds of the numeric settings: beyond them a value is a typo (and overflowed SQLite)
MAX_DAYS = 36_500
MAX_SECONDS = 3_600


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    return config_dir() / "config.toml"


@dataclass(frozen=True)
class Settings:
    """Everything the app, the CLI and the worker need to know about where things live."""

    db: Path
    import_dir: Path
    export_dir: Path
    log_file: Path
    settle_seconds: float = 2.0
    events_retention_days: int = 90
    exports_retention_days: int = 30
    rollup_retention_days: int = 400
    cleanup_enabled: bool = True
    webhook_allow_link_local: bool = False  # 169.254.0.0/16 and fe80::/10 targets (SPEC 10)
    ascii: bool = False  # draw with ASCII only (automatic on TERM=linux / vt100-like)
    config_file: Path | None = None
    demo: bool = False
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def with_demo(self) -> Settings:
        """The demo's own database and folders under ``<data dir>/demo/`` (no cleanup)."""
        base = data_dir() / "demo"
        return replace(
            self,
            db=base / "pulse.db",
            import_dir=base / "import",
            export_dir=base / "exports",
            cleanup_enabled=False,
            demo=True,
        )

    def describe(self) -> list[tuple[str, str]]:
        """(name, value) pairs for --help and the help screen."""
        rows = [
            ("database", str(self.db)),
            ("import dir", str(self.import_dir)),
            ("export dir", str(self.export_dir)),
            ("log file", str(self.log_file)),
            ("config file", str(self.config_file or default_config_file())),
        ]
        return rows


def _defaults() -> dict[str, Any]:
    base = data_dir()
    return {
        "db": base / "pulse.db",
        "import_dir": base / "import",
        "export_dir": base / "exports",
        "log_file": log_dir() / "pulse-tui.log",
        "settle_seconds": 2.0,
        "events_retention_days": 90,
        "exports_retention_days": 30,
        "rollup_retention_days": 400,
        "cleanup_enabled": True,
        "webhook_allow_link_local": False,
        "ascii": False,
    }


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse and type-check the TOML config; any problem is one line naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"config file {path}: cannot read ({exc.strerror or exc})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"config file {path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path}: invalid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in KNOWN_KEYS:
            known = ", ".join(KNOWN_KEYS)
            raise UsageError(f"config file {path}: unknown key {key!r} (known: {known})")
        if key in PATH_KEYS:
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"config file {path}: {key} must be a non-empty string path")
            values[key] = Path(value).expanduser()
        elif key in INT_KEYS:
            if (isinstance(value, bool) or not isinstance(value, int) or value < 0
                    or value > MAX_DAYS):
                raise UsageError(f"config file {path}: {key} must be a whole number of days "
                                 f"from 0 to {MAX_DAYS}")
            values[key] = value
        elif key in FLOAT_KEYS:
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not 0 <= value <= MAX_SECONDS):  # also refuses nan and inf
                raise UsageError(f"config file {path}: {key} must be a number of seconds "
                                 f"from 0 to {MAX_SECONDS}")
            values[key] = float(value)
        elif key in BOOL_KEYS:
            if not isinstance(value, bool):
                raise UsageError(f"config file {path}: {key} must be true or false")
            values[key] = value
    return values


def load_settings(
    *,
    db: str | Path | None = None,
    import_dir: str | Path | None = None,
    export_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Resolve settings with precedence flag > env > config file > default."""
    env = os.environ if environ is None else environ
    values = _defaults()
    sources = {key: "default" for key in values}

    explicit_config = config_file is not None
    cfg_path = Path(config_file).expanduser() if explicit_config else default_config_file()
    if explicit_config or cfg_path.exists():
        if explicit_config and not cfg_path.exists():
            raise UsageError(f"config file {cfg_path}: does not exist")
        for key, value in read_config_file(cfg_path).items():
            values[key] = value
            sources[key] = "config"
    else:
        cfg_path = None  # type: ignore[assignment]

    for key, var in ENV_VARS.items():
        raw = env.get(var, "").strip()
        if raw:
            values[key] = Path(raw).expanduser()
            sources[key] = "env"

    flags = {"db": db, "import_dir": import_dir, "export_dir": export_dir}
    for key, value in flags.items():
        if value is not None and str(value).strip():
            values[key] = Path(value).expanduser()
            sources[key] = "flag"

    return Settings(config_file=cfg_path, sources=sources, **values)
