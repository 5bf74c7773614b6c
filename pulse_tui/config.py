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
EVENTS_STORE_ENV = "PULSE_EVENTS_STORE"

PATH_KEYS = ("db", "import_dir", "export_dir", "log_file")
INT_KEYS = (
    "events_retention_days",
    "exports_retention_days",
    "rollup_retention_days",
)
FLOAT_KEYS = ("settle_seconds",)
BOOL_KEYS = ("cleanup_enabled", "webhook_allow_link_local", "ascii")
STR_KEYS = ("events_store", "clickhouse_cluster")
SECRET_KEYS = ("serve_token",)  # never shown by describe(), repr() or the logs
KNOWN_KEYS = PATH_KEYS + INT_KEYS + FLOAT_KEYS + BOOL_KEYS + STR_KEYS + SECRET_KEYS


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
    events_store: str = "sqlite"  # sqlite | clickhouse[s]://user:pw@host:port/db | chdb:///dir
    clickhouse_cluster: str | None = None  # ON CLUSTER name for the ClickHouse DDL
    webhook_allow_link_local: bool = False  # 169.254.0.0/16 and fe80::/10 targets (SPEC 10)
    ascii: bool = False  # draw with ASCII only (automatic on TERM=linux / vt100-like)
    config_file: Path | None = None
    serve_token: str | None = field(default=None, repr=False)
    demo: bool = False
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def with_demo(self) -> Settings:
        """The demo's own database and folders under ``<data dir>/demo/`` (no cleanup); with
        a ClickHouse events store, a database and folders of its own per store under it
        (``demo/events-<hash>/``), since a file records which store holds its events."""
        base = data_dir() / "demo"
        if self.events_store != "sqlite":
            import hashlib

            digest = hashlib.sha1(events_store_identity(self.events_store).encode())
            base = base / f"events-{digest.hexdigest()[:10]}"
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
        if self.events_store != "sqlite":  # the password never shows
            rows.insert(1, ("events store", redact_url(self.events_store)))
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
        elif key in STR_KEYS:
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"config file {path}: {key} must be a non-empty string")
            values[key] = value.strip()
            if key == "events_store":
                check_events_store(values[key], f"config file {path}: events_store")
        elif key in BOOL_KEYS:
            if not isinstance(value, bool):
                raise UsageError(f"config file {path}: {key} must be true or false")
            values[key] = value
        elif key in SECRET_KEYS:
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"config file {path}: {key} must be a non-empty string")
            values[key] = value.strip()
    return values


def load_settings(
    *,
    db: str | Path | None = None,
    import_dir: str | Path | None = None,
    export_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    events_store: str | None = None,
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

    raw_store = env.get(EVENTS_STORE_ENV, "").strip()
    if raw_store:
        values["events_store"] = check_events_store(raw_store, EVENTS_STORE_ENV)
        sources["events_store"] = "env"
    if events_store is not None and events_store.strip():
        values["events_store"] = check_events_store(events_store.strip(), "--events-store")
        sources["events_store"] = "flag"

    flags = {"db": db, "import_dir": import_dir, "export_dir": export_dir}
    for key, value in flags.items():
        if value is not None and str(value).strip():
            values[key] = Path(value).expanduser()
            sources[key] = "flag"

    return Settings(config_file=cfg_path, sources=sources, **values)


# ------------------------------------------------------------------ the events store URL
EVENTS_STORE_SCHEMES = ("sqlite", "clickhouse", "clickhouses", "chdb")


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``: the only form that is ever shown or
    logged (``--help``, the header, messages). Anything unparsable is shown as its scheme."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:
        return f"{url.split(':', 1)[0]}://(unparsable)"


def events_store_identity(value: str) -> str:
    """What names an events store for good, to record in the PULSE file (never a user or a
    password): ``sqlite``; ``chdb:///real/dir`` (plus ``?database=NAME`` when not the default
    one); ``clickhouse[s]://host:port/database`` with the default port filled in."""
    import os
    from urllib.parse import parse_qs, unquote, urlsplit

    if value == "sqlite":
        return value
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        database = parse_qs(parts.query).get("database", ["pulse"])[0]
        where = os.path.realpath(unquote(parts.path))
        return f"chdb://{where}" + ("" if database == "pulse" else f"?database={database}")
    port = parts.port or (8443 if scheme == "clickhouses" else 8123)
    database = unquote(parts.path.strip("/")) or "pulse"
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}/{database}"


def check_events_store(value: str, where: str) -> str:
    """``value`` when it names a known events store, else a UsageError in our words (the
    password never appears in it)."""
    from urllib.parse import urlsplit

    scheme = value.split(":", 1)[0].lower() if ":" in value else value.lower()
    if value == "sqlite":
        return value
    if scheme not in EVENTS_STORE_SCHEMES or scheme == "sqlite":
        raise UsageError(f"{where}: {redact_url(value)!r} is not an events store (use sqlite, "
                         "clickhouse://user:password@host:8123/database, clickhouses://... "
                         "or chdb:///absolute/dir)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UsageError(f"{where}: {redact_url(value)!r} is not a valid URL") from exc
    if scheme == "chdb":
        if not parts.path.startswith("/") or parts.netloc:
            raise UsageError(f"{where}: chdb needs an absolute directory: chdb:///absolute/dir")
    elif not parts.hostname:
        raise UsageError(f"{where}: {redact_url(value)!r} names no host")
    return value
