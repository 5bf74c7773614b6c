"""The serve token in the config file, and the pure parts of the serve module."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulse_tui.config import load_settings
from pulse_tui.errors import UsageError
from pulse_tui.serve.server import is_loopback, token_matches


def test_serve_token_from_the_config_file_is_never_shown(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('serve_token = "  s3cret-token  "\n', encoding="utf-8")
    settings = load_settings(config_file=config, environ={})
    assert settings.serve_token == "s3cret-token"
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.describe())


@pytest.mark.parametrize("value", ["1234", '""', "true"])
def test_a_bad_serve_token_in_the_config_is_one_clear_line(tmp_path: Path, value: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"serve_token = {value}\n", encoding="utf-8")
    with pytest.raises(UsageError, match="serve_token must be a non-empty string"):
        load_settings(config_file=config, environ={})


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.5", False), ("example.com", False), ("", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_token_comparison() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc")
    assert not token_matches("", "abc")
    assert not token_matches(None, "abc")
    assert not token_matches("abcd", "abc")
    assert token_matches("jeton-é", "jeton-é")
