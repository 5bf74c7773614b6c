"""Plain frozen dataclasses the store returns; no SQL and no Textual here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str | None
    domain: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Event:
    """One row of ``events``; ``seq`` is its rowid (arrival order)."""

    seq: int
    event_id: str
    site_id: str
    event_type: str
    timestamp_ms: int
    session_id: str
    user_id: str | None
    url: str | None
    referrer: str | None
    country: str | None
    device_type: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write (importer, simulator)."""

    event_id: str
    site_id: str
    event_type: str
    timestamp_ms: int
    session_id: str
    user_id: str | None = None
    url: str | None = None
    referrer: str | None = None
    country: str | None = None
    device_type: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds the worker lease of a database."""

    holder: str
    pid: int | None
    host: str | None
    renewed_at: int
    expires_at: int
