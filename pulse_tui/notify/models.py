"""Frozen dataclasses for webhooks: endpoints (secret masked), deliveries, send results."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

WEBHOOK_EVENTS = ("alert.firing", "alert.resolved", "import.completed", "import.failed",
                  "export.completed")
TEST_EVENT = "webhook.test"
MAX_URL_CHARS = 2048


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A ``webhook_endpoints`` row as shown anywhere: the secret only masked."""

    id: str
    site_id: str
    url: str
    events: tuple[str, ...]
    active: bool
    secret_masked: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold tokens
    created_at: int = 0
    updated_at: int = 0
    problem: str | None = None  # why this row cannot be used (written by another program)

    def __repr__(self) -> str:  # no headers, no path or query (tokens live there too)
        from urllib.parse import urlsplit

        return (f"WebhookEndpoint(id={self.id!r}, site_id={self.site_id!r}, "
                f"host={urlsplit(self.url).hostname!r}, events={self.events!r}, "
                f"active={self.active!r}, secret={self.secret_masked!r})")


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    """What create (and rotate) return: the one time the full secret is handed out."""

    endpoint: WebhookEndpoint
    secret: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"CreatedEndpoint(endpoint={self.endpoint!r}, secret={self.endpoint.secret_masked!r})"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One queued message to one endpoint (``webhook_deliveries``)."""

    id: str
    endpoint_id: str
    event_type: str
    status: str                 # pending | delivered | failed
    attempts: int
    next_attempt_at: int
    last_status_code: int | None
    last_error: str | None
    created_at: int
    delivered_at: int | None


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one HTTP attempt."""

    delivery_id: str
    ok: bool
    status_code: int | None
    error: str | None
    permanent: bool = False  # retrying cannot help (bad URL or secret, most 4xx, refused)

    def text(self) -> str:
        if self.ok:
            return f"delivered (HTTP {self.status_code})"
        if self.status_code is not None:
            return f"failed: HTTP {self.status_code}"
        return f"failed: {self.error}"


def check_url(url: object) -> str | None:
    """None when ``url`` is an acceptable http(s) URL, else the message."""
    if not isinstance(url, str) or not url.strip():
        return "required: an http:// or https:// URL"
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        return f"at most {MAX_URL_CHARS} characters"
    if any(ord(c) < 33 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"must start with http:// or https:// (not {parts.scheme or 'no scheme'})"
    if not parts.hostname:
        return "must name a host"
    import httpx  # the client webhooks are sent with: what it cannot encode is no URL

    try:
        httpx.Request("POST", url)  # builds the Host header as the client will
    except (httpx.InvalidURL, UnicodeError):
        return "the host name is not valid (letters, digits and hyphens, or a valid " \
               "international name)"
    return None
