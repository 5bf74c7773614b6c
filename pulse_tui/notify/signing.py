"""Standard Webhooks signing: secrets (generate, mask, key bytes), envelopes and signatures."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import Any

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def generate_secret(nbytes: int = SECRET_BYTES) -> str:
    """``whsec_`` + base64 of ``nbytes`` (24..32 here) random bytes."""
    if not 24 <= nbytes <= 64:
        raise ValueError("secrets hold 24 to 64 random bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def mask_secret(secret: str | None) -> str:
    """``whsec_…AbCd``: enough to tell secrets apart, never enough to use one."""
    if not secret:
        return "(none)"
    prefix = SECRET_PREFIX if secret.startswith(SECRET_PREFIX) else ""
    body = secret[len(prefix):]
    tail = body[-4:] if len(body) >= 12 else ""
    return f"{prefix}…{tail}"


def secret_key(secret: str) -> bytes:
    """The HMAC key: base64-decoded after ``whsec_``; a secret without it is raw UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        body = secret[len(SECRET_PREFIX):]
        try:
            return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("the webhook secret is not valid base64 after whsec_") from exc
    return secret.encode("utf-8")


def sign(msg_id: str, timestamp_s: int, body: str, secret: str) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp_s}.{body}".encode(),
                   hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def iso_ms(ms: int) -> str:
    """``2026-11-25T12:00:00.000Z``"""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def envelope(event_type: str, data: dict[str, Any], at_ms: int) -> str:
    """The body, serialised once: ``{"type", "timestamp", "data"}`` (compact, ASCII JSON)."""
    return json.dumps({"type": event_type, "timestamp": iso_ms(at_ms), "data": data},
                      separators=(",", ":"), ensure_ascii=True, sort_keys=False)


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(16)
