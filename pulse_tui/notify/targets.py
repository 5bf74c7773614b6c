"""Which addresses webhooks may be sent to: link-local targets (SPEC 10), pure functions."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

SETTING = "webhook_allow_link_local"


def link_local_reason(address: str) -> str | None:
    """Why ``address`` (an IP address) may not be a webhook target, or None: 169.254.0.0/16
    (the cloud metadata range) and fe80::/10, also written as IPv4-mapped IPv6."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return (f"refusing the link-local address {ip} (cloud metadata range); "
                f"set {SETTING} = true to allow it")
    return None


def literal_link_local_reason(url: str) -> str | None:
    """The same for a URL whose host is written as an IP address (names are checked when
    sending, on the addresses they resolve to)."""
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return link_local_reason(host) if host else None
