"""SQL for webhooks: endpoint CRUD with validation, the delivery queue (webhook_deliveries)."""

from __future__ import annotations

import json
import re
import secrets as _secrets
import sqlite3
from collections.abc import Sequence
from typing import Any

from pulse_tui.errors import UsageError, ValidationError
from pulse_tui.notify.models import MAX_URL_CHARS as MAX_URL_CHARS
from pulse_tui.notify.models import (
    WEBHOOK_EVENTS,
    CreatedEndpoint,
    WebhookDelivery,
    WebhookEndpoint,
)
from pulse_tui.notify.models import check_url as check_url
from pulse_tui.notify.signing import generate_secret, mask_secret, secret_key
from pulse_tui.notify.targets import literal_link_local_reason
from pulse_tui.store.alerts import rules_using_endpoint
from pulse_tui.store.tx import write_transaction

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
RESERVED_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type",
                    "content-length", "host", "transfer-encoding", "connection"}

_ENDPOINT_COLUMNS = "id, site_id, url, events, active, secret, headers, created_at, updated_at"


# ---------------------------------------------------------------- validation
def _check_events(events: object, errors: dict[str, str]) -> tuple[str, ...]:
    if isinstance(events, str):
        try:
            events = json.loads(events)
        except RecursionError:
            errors["events"] = "nested too deeply"
            return ()
        except ValueError:
            events = [e.strip() for e in events.split(",") if e.strip()]
    if not isinstance(events, (list, tuple)) or not events:
        errors["events"] = f"choose at least one of {', '.join(WEBHOOK_EVENTS)}"
        return ()
    bad = [e for e in events if e not in WEBHOOK_EVENTS]
    if bad:
        errors["events"] = f"unknown event {bad[0]!r} (allowed: {', '.join(WEBHOOK_EVENTS)})"
        return ()
    return tuple(e for e in WEBHOOK_EVENTS if e in events)


def _check_headers(headers: object, errors: dict[str, str]) -> dict[str, str]:
    if headers is None or headers == "":
        return {}
    if isinstance(headers, str):
        try:
            headers = json.loads(headers)
        except RecursionError:
            errors["headers"] = "nested too deeply"
            return {}
        except ValueError as exc:
            errors["headers"] = f"not valid JSON ({getattr(exc, 'msg', exc)})"
            return {}
    if not isinstance(headers, dict):
        errors["headers"] = 'must be a JSON object {"Header-Name": "value"}'
        return {}
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            errors["headers"] = f"{name!r} is not a valid header name"
        elif name.lower() in RESERVED_HEADERS:
            errors["headers"] = f"{name} is set by PULSE and cannot be overridden"
        elif not isinstance(value, str):
            errors["headers"] = f"the value of {name} must be text"
        elif any(c in value for c in "\r\n\0"):
            errors["headers"] = f"the value of {name} must not contain line breaks"
        elif not value.isascii():  # HTTP header values are sent as ASCII
            errors["headers"] = f"the value of {name} must be plain ASCII text"
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------- endpoints
def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _stored_events(raw: object) -> tuple[tuple[str, ...], str | None]:
    """(events, problem) of a stored ``events`` column; any other program may have written it."""
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except RecursionError:
        return (), "events: nested too deeply"
    except ValueError as exc:
        return (), f"events: not valid JSON ({getattr(exc, 'msg', exc)})"
    if not isinstance(data, list) or not all(isinstance(e, str) for e in data):
        return (), "events: must be a JSON list of event names"
    unknown = [e for e in data if e not in WEBHOOK_EVENTS]
    if unknown:
        return (), f"events: unknown event {unknown[0]!r}"
    if not data:
        return (), "events: subscribes to no event"
    return tuple(e for e in WEBHOOK_EVENTS if e in data), None


def _stored_headers(raw: object) -> tuple[dict[str, str], str | None]:
    errors: dict[str, str] = {}
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        headers = _check_headers(raw, errors)
    except RecursionError:
        return {}, "headers: nested too deeply"
    return headers, (f"headers: {errors['headers']}" if errors else None)


def _stored_secret(secret: object) -> str | None:
    if secret is None or secret == "":
        return None
    if not isinstance(secret, str):
        return "secret: not text"
    try:
        secret_key(secret)
    except ValueError as exc:
        return f"secret: {exc}"
    return None


def _endpoint(row: Sequence[Any]) -> WebhookEndpoint:
    """A stored row as an endpoint; never raises. What another program wrote that makes the
    endpoint unusable is in ``problem`` (shown as broken; nothing is delivered to it)."""
    eid, site_id, url, events, active, secret, headers, created_at, updated_at = row
    ev, events_problem = _stored_events(events)
    hd, headers_problem = _stored_headers(headers)
    url_problem = check_url(url)
    problems = [p for p in (None if url_problem is None else f"url: {url_problem}",
                            events_problem, headers_problem, _stored_secret(secret)) if p]
    return WebhookEndpoint(id=_text(eid), site_id=_text(site_id), url=_text(url), events=ev,
                           active=bool(active if active is not None else 1),
                           secret_masked=mask_secret(secret if isinstance(secret, str) else None),
                           headers=hd,
                           created_at=created_at if isinstance(created_at, int) else 0,
                           updated_at=updated_at if isinstance(updated_at, int) else 0,
                           problem="; ".join(problems) or None)


def get_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> WebhookEndpoint | None:
    row = conn.execute(f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?",
                       (endpoint_id,)).fetchone()
    return _endpoint(row) if row else None


def list_endpoints(conn: sqlite3.Connection, site_id: str | None = None) -> list[WebhookEndpoint]:
    sql = f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
    params: list[object] = []
    if site_id:
        sql += " WHERE site_id = ?"
        params.append(site_id)
    return [_endpoint(r) for r in conn.execute(sql + " ORDER BY url, id", params)]


def create_endpoint(conn: sqlite3.Connection, *, site_id: str, url: str, events: object,
                    headers: object = None, active: bool = True, now_ms: int,
                    allow_link_local: bool = False) -> CreatedEndpoint:
    """Validate and insert an endpoint with a new secret; the only place (with
    :func:`rotate_secret`) the full secret is returned. A URL whose host is a link-local
    address is refused unless ``allow_link_local`` (the ``webhook_allow_link_local``
    setting)."""
    errors: dict[str, str] = {}
    if not isinstance(site_id, str) or not site_id:
        errors["site_id"] = "required"
    elif not conn.execute("SELECT 1 FROM sites WHERE id = ?", (site_id,)).fetchone():
        errors["site_id"] = f"unknown site {site_id!r}"
    url_error = check_url(url) or (None if allow_link_local else literal_link_local_reason(url))
    if url_error:
        errors["url"] = url_error
    ev = _check_events(events, errors)
    hd = _check_headers(headers, errors)
    if errors:
        raise ValidationError(errors)
    endpoint_id = "whe_" + _secrets.token_hex(8)
    secret = generate_secret()
    with write_transaction(conn):
        conn.execute(
            f"INSERT INTO webhook_endpoints ({_ENDPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (endpoint_id, site_id, url.strip(), json.dumps(list(ev)), 1 if active else 0, secret,
             json.dumps(hd, ensure_ascii=False), now_ms, now_ms))
    endpoint = get_endpoint(conn, endpoint_id)
    assert endpoint is not None
    return CreatedEndpoint(endpoint, secret)


_UNSET: Any = object()


def update_endpoint(conn: sqlite3.Connection, endpoint_id: str, *, url: str = _UNSET,
                    events: object = _UNSET, headers: object = _UNSET, active: bool = _UNSET,
                    now_ms: int, allow_link_local: bool = False) -> WebhookEndpoint:
    """Change the given fields (validated like create); the secret is kept."""
    errors: dict[str, str] = {}
    sets: dict[str, object] = {}
    if url is not _UNSET:
        url_error = check_url(url) or (None if allow_link_local
                                       else literal_link_local_reason(url))
        if url_error:
            errors["url"] = url_error
        else:
            sets["url"] = url.strip()
    if events is not _UNSET:
        ev = _check_events(events, errors)
        sets["events"] = json.dumps(list(ev))
    if headers is not _UNSET:
        sets["headers"] = json.dumps(_check_headers(headers, errors), ensure_ascii=False)
    if active is not _UNSET:
        sets["active"] = 1 if active else 0
    if errors:
        raise ValidationError(errors)
    sets["updated_at"] = now_ms
    with write_transaction(conn):
        assignments = ", ".join(f"{k} = ?" for k in sets)  # our own column names
        cur = conn.execute(f"UPDATE webhook_endpoints SET {assignments} WHERE id = ?",
                           (*sets.values(), endpoint_id))
        if cur.rowcount == 0:
            raise UsageError(f"no webhook endpoint {endpoint_id!r}")
    endpoint = get_endpoint(conn, endpoint_id)
    assert endpoint is not None
    return endpoint


def rotate_secret(conn: sqlite3.Connection, endpoint_id: str, *, now_ms: int) -> CreatedEndpoint:
    """A new secret for the endpoint, returned in full this once. Pending deliveries are
    signed with the new one when sent."""
    secret = generate_secret()
    with write_transaction(conn):
        cur = conn.execute("UPDATE webhook_endpoints SET secret = ?, updated_at = ? WHERE id = ?",
                           (secret, now_ms, endpoint_id))
        if cur.rowcount == 0:
            raise UsageError(f"no webhook endpoint {endpoint_id!r}")
    endpoint = get_endpoint(conn, endpoint_id)
    assert endpoint is not None
    return CreatedEndpoint(endpoint, secret)


def delete_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> bool:
    """Delete an endpoint and its deliveries; refused while alert rules notify it."""
    with write_transaction(conn):
        users = rules_using_endpoint(conn, endpoint_id)
        if users:
            raise UsageError(f"endpoint is used by alert rule(s) {', '.join(users)}; "
                             "change or delete them first")
        conn.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (endpoint_id,))
        cur = conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
    return cur.rowcount > 0


def endpoint_for_sending(conn: sqlite3.Connection, endpoint_id: str
                         ) -> tuple[str, str | None, dict[str, str], bool, str | None] | None:
    """(url, secret, headers, active, problem) for the sender only; never shown or logged.
    ``problem`` says why the row cannot be sent to (invalid URL, headers or secret)."""
    row = conn.execute("SELECT url, secret, headers, active FROM webhook_endpoints WHERE id = ?",
                       (endpoint_id,)).fetchone()
    if row is None:
        return None
    url, secret, headers, active = row
    hd, headers_problem = _stored_headers(headers)
    url_problem = check_url(url)
    problems = [p for p in (None if url_problem is None else f"invalid URL: {url_problem}",
                            headers_problem, _stored_secret(secret)) if p]
    return (url if isinstance(url, str) else _text(url),
            secret if isinstance(secret, str) and secret else None, hd,
            bool(active if active is not None else 1), "; ".join(problems) or None)


def subscribed_endpoints(conn: sqlite3.Connection, site_id: str, event_type: str,
                         endpoint_ids: Sequence[str] | None = None) -> list[str]:
    """Active endpoints of the site subscribed to ``event_type`` (optionally among the ids)."""
    sql = ("SELECT id, events FROM webhook_endpoints WHERE site_id = ? "
           "AND coalesce(active, 1) != 0")
    params: list[object] = [site_id]
    if endpoint_ids is not None:
        if not endpoint_ids:
            return []
        sql += f" AND id IN ({', '.join('?' * len(endpoint_ids))})"
        params.extend(endpoint_ids)
    out = []
    for eid, events in conn.execute(sql + " ORDER BY id", params):
        subscribed, problem = _stored_events(events)
        if problem is None and event_type in subscribed:  # a broken row receives nothing
            out.append(eid)
    return out


# ---------------------------------------------------------------- deliveries
_DELIVERY_COLUMNS = ("id, endpoint_id, event_type, status, attempts, next_attempt_at, "
                     "last_status_code, last_error, created_at, delivered_at")


def insert_delivery(conn: sqlite3.Connection, delivery_id: str, endpoint_id: str,
                    event_type: str, body: str, now_ms: int, status: str = "pending") -> None:
    conn.execute(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, status, attempts, "
        "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
        (delivery_id, endpoint_id, event_type, body, status, now_ms, now_ms))


def claim_due(conn: sqlite3.Connection, now_ms: int, lease_ms: int, limit: int
              ) -> list[tuple[str, str, str, int]]:
    """Take up to ``limit`` due pending deliveries: (id, endpoint_id, body, attempts). Their
    next_attempt_at moves ``lease_ms`` ahead, so a second sender does not take them too and a
    sender killed mid-flight has them retried later."""
    with write_transaction(conn):
        rows = conn.execute(
            "SELECT id, endpoint_id, payload, attempts FROM webhook_deliveries "
            "WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, created_at LIMIT ?", (now_ms, limit)).fetchall()
        conn.executemany(
            "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'",
            [(now_ms + lease_ms, r[0]) for r in rows])
    # another program may have written any type: the sender checks the payload, and a
    # count that is not a number counts as no attempt yet
    return [(r[0], r[1], r[2], r[3] if isinstance(r[3], int) and not isinstance(r[3], bool)
             else 0) for r in rows]


def release_claims(conn: sqlite3.Connection, delivery_ids: Sequence[str], now_ms: int) -> None:
    """Make claimed but unsent deliveries due again (a sender stopping early)."""
    with write_transaction(conn):
        conn.executemany(
            "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'",
            [(now_ms, d) for d in delivery_ids])


def mark_delivered(conn: sqlite3.Connection, delivery_id: str, status_code: int,
                   now_ms: int) -> None:
    with write_transaction(conn):
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, "
            "last_status_code = ?, last_error = NULL, delivered_at = ? "
            "WHERE id = ? AND status = 'pending'", (status_code, now_ms, delivery_id))


def mark_attempt_failed(conn: sqlite3.Connection, delivery_id: str, *, status_code: int | None,
                        error: str, next_attempt_at: int | None) -> None:
    """One failed attempt: retry at ``next_attempt_at``, or give up (``failed``) when None."""
    with write_transaction(conn):
        conn.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = ?, "
            "last_error = ?, status = CASE WHEN ? IS NULL THEN 'failed' ELSE status END, "
            "next_attempt_at = coalesce(?, next_attempt_at) "
            "WHERE id = ? AND status = 'pending'",
            (status_code, error[:500], next_attempt_at, next_attempt_at, delivery_id))


def recent_deliveries(conn: sqlite3.Connection, endpoint_id: str, limit: int = 20
                      ) -> list[WebhookDelivery]:
    """The endpoint's latest deliveries, newest first, with status codes and errors."""
    return [WebhookDelivery(*r) for r in conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = ? "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?", (endpoint_id, limit))]


def get_delivery(conn: sqlite3.Connection, delivery_id: str) -> WebhookDelivery | None:
    row = conn.execute(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?",
                       (delivery_id,)).fetchone()
    return WebhookDelivery(*row) if row else None


def delivery_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """{status: count} over the whole queue (pending, delivered, failed)."""
    return dict(conn.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY status"))


def job_row(conn: sqlite3.Connection, table: str, job_id: str) -> dict[str, Any] | None:
    """An import_jobs or export_jobs row as a dict (for import/export notifications)."""
    if table not in ("import_jobs", "export_jobs"):
        raise UsageError(f"not a job table: {table}")
    cur = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (job_id,))
    row = cur.fetchone()
    if row is None:
        return None
    return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


def prune_deliveries(conn: sqlite3.Connection, older_than_ms: int) -> int:
    """Delete finished (delivered or failed) deliveries created before the cutoff; pending
    ones are kept whatever their age. Returns how many went (for retention cleanup)."""
    with write_transaction(conn):
        cur = conn.execute("DELETE FROM webhook_deliveries WHERE status != 'pending' "
                           "AND created_at < ?", (older_than_ms,))
    return cur.rowcount
