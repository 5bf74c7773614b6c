"""The webhook delivery queue: enqueue events, send due deliveries with retries, test pings."""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from pulse_tui.clock import Clock
from pulse_tui.errors import UsageError
from pulse_tui.notify.models import TEST_EVENT, WEBHOOK_EVENTS, SendResult
from pulse_tui.notify.signing import envelope, new_message_id, sign
from pulse_tui.store import webhooks as store
from pulse_tui.store.tx import write_transaction

log = logging.getLogger("pulse_tui.notify")

HTTP_TIMEOUT_S = 5.0
USER_AGENT = "pulse-tui-webhooks/1"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits base * factor**(n-1), capped, +-jitter."""

    base_ms: int = 30_000
    factor: float = 2.0
    max_delay_ms: int = 6 * 3_600_000
    max_attempts: int = 8
    jitter: float = 0.2           # fraction of the delay, drawn uniformly in [-j, +j]
    in_flight_ms: int = 120_000   # how long a claimed delivery is held before someone retries

    def delay_ms(self, attempts: int, rng: random.Random | None = None) -> int:
        """Delay after ``attempts`` failed attempts (1 = the first failure)."""
        delay = min(self.max_delay_ms, self.base_ms * self.factor ** max(0, attempts - 1))
        if self.jitter:
            delay *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(1, int(delay))


DEFAULT_POLICY = RetryPolicy()


def enqueue_event(conn: sqlite3.Connection, site_id: str, event_type: str,
                  data: dict[str, Any], now_ms: int, *,
                  endpoint_ids: Sequence[str] | None = None) -> list[str]:
    """One pending delivery per active endpoint of the site subscribed to ``event_type``
    (restricted to ``endpoint_ids`` when given). The body is serialised once and stored
    exactly as it will be signed. Joins the caller's transaction when one is open.
    Returns the delivery (webhook-id) ids."""
    if event_type not in WEBHOOK_EVENTS:
        raise UsageError(f"unknown webhook event {event_type!r}")
    body = envelope(event_type, data, now_ms)
    ids: list[str] = []
    with write_transaction(conn):
        for endpoint_id in store.subscribed_endpoints(conn, site_id, event_type, endpoint_ids):
            delivery_id = new_message_id()
            store.insert_delivery(conn, delivery_id, endpoint_id, event_type, body, now_ms)
            ids.append(delivery_id)
    if ids:
        log.info("queued %s for %d endpoint(s) of site %s", event_type, len(ids), site_id)
    return ids


def _headers(delivery_id: str, body: str, secret: str | None, extra: dict[str, str],
             timestamp_s: int) -> dict[str, str]:
    headers = dict(extra)
    headers.update({
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp_s),
    })
    if secret:
        headers["webhook-signature"] = sign(delivery_id, timestamp_s, body, secret)
    return headers


def _where(url: str) -> str:
    """Host only, for logs: paths and queries of webhook URLs often hold tokens."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _post(client: httpx.Client, delivery_id: str, url: str, body: str, secret: str | None,
          extra: dict[str, str], wall_clock: Callable[[], float]) -> SendResult:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        return SendResult(delivery_id, False, None, f"refusing to send to a {scheme!r} URL")
    try:
        headers = _headers(delivery_id, body, secret, extra, int(wall_clock()))
    except ValueError as exc:  # a stored secret that is not valid base64
        return SendResult(delivery_id, False, None, str(exc))
    try:
        response = client.post(url, content=body.encode("utf-8"), headers=headers,
                               timeout=HTTP_TIMEOUT_S, follow_redirects=False)
    except httpx.TimeoutException:
        return SendResult(delivery_id, False, None, "timed out")
    except httpx.ConnectError as exc:
        reason = str(exc).split("] ", 1)[-1].strip().lower() or "no answer"
        parts = urlsplit(url)  # hostname and port only: never user:password@ from the URL
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        return SendResult(delivery_id, False, None, f"could not connect to {host} ({reason})")
    except httpx.HTTPError as exc:
        return SendResult(delivery_id, False, None, f"{type(exc).__name__}: {exc}"[:300])
    ok = 200 <= response.status_code < 300
    return SendResult(delivery_id, ok, response.status_code,
                      None if ok else f"HTTP {response.status_code}")


def deliver_due(conn: sqlite3.Connection, clock: Clock, client: httpx.Client | None = None, *,
                policy: RetryPolicy = DEFAULT_POLICY, limit: int = 100,
                rng: random.Random | None = None,
                wall_clock: Callable[[], float] = time.time,
                should_stop: Callable[[], bool] | None = None) -> str:
    """Send the pending deliveries that are due; returns a one-line outcome.

    2xx: delivered, never sent again. Otherwise the attempt is counted and retried after the
    policy's backoff, or marked failed after ``policy.max_attempts``. The queue is the table,
    so deliveries survive restarts. ``wall_clock`` stamps webhook-timestamp (receivers check it
    against their real clock; the business clock may be fixed by PULSE_NOW). When
    ``should_stop()`` turns true the deliveries not yet sent are released for the next run.
    """
    now = clock.now_ms()
    due = store.claim_due(conn, now, policy.in_flight_ms, limit)
    if not due:
        return "no webhook deliveries due"
    own_client = client is None
    if client is None:
        client = httpx.Client(timeout=HTTP_TIMEOUT_S, follow_redirects=False)
    delivered = retrying = failed = 0
    sent = 0
    try:
        for delivery_id, endpoint_id, body, attempts in due:
            if should_stop is not None and should_stop():
                store.release_claims(conn, [d[0] for d in due[sent:]], clock.now_ms())
                break
            sent += 1
            target = store.endpoint_for_sending(conn, endpoint_id)
            if target is None or not target[3]:
                reason = "endpoint deleted" if target is None else "endpoint inactive"
                store.mark_attempt_failed(conn, delivery_id, status_code=None, error=reason,
                                          next_attempt_at=None)
                failed += 1
                continue
            url, secret, extra, _ = target
            result = _post(client, delivery_id, url, body, secret, extra, wall_clock)
            after = clock.now_ms()
            if result.ok:
                store.mark_delivered(conn, delivery_id, result.status_code or 200, after)
                delivered += 1
                log.info("webhook %s to endpoint %s (%s): %s", delivery_id, endpoint_id,
                         _where(url), result.text())
                continue
            n = attempts + 1
            next_at = None if n >= policy.max_attempts else after + policy.delay_ms(n, rng)
            store.mark_attempt_failed(conn, delivery_id, status_code=result.status_code,
                                      error=result.error or "failed", next_attempt_at=next_at)
            if next_at is None:
                failed += 1
                log.warning("webhook %s to endpoint %s (%s) gave up after %d attempts: %s",
                            delivery_id, endpoint_id, _where(url), n, result.text())
            else:
                retrying += 1
                log.info("webhook %s to endpoint %s (%s): %s; retry %d in %ds", delivery_id,
                         endpoint_id, _where(url), result.text(), n + 1,
                         (next_at - after) // 1000)
    finally:
        if own_client:
            client.close()
    parts = [f"{delivered} delivered"]
    if retrying:
        parts.append(f"{retrying} to retry")
    if failed:
        parts.append(f"{failed} failed")
    return f"{sent} webhook deliveries sent: " + ", ".join(parts)


def send_test(conn: sqlite3.Connection, endpoint_id: str, *, clock: Clock | None = None,
              client: httpx.Client | None = None,
              wall_clock: Callable[[], float] = time.time) -> SendResult:
    """POST a signed ``webhook.test`` ping to the endpoint now (no retries); it is recorded in
    the endpoint's deliveries. Blocks up to the HTTP timeout: call it from a worker thread."""
    clock = clock or Clock.from_env()
    target = store.endpoint_for_sending(conn, endpoint_id)
    if target is None:
        raise UsageError(f"no webhook endpoint {endpoint_id!r}")
    url, secret, extra, _ = target
    now = clock.now_ms()
    delivery_id = new_message_id()
    body = envelope(TEST_EVENT, {"endpoint_id": endpoint_id,
                                 "message": "PULSE test delivery"}, now)
    with write_transaction(conn):
        store.insert_delivery(conn, delivery_id, endpoint_id, TEST_EVENT, body, now)
    own_client = client is None
    if client is None:
        client = httpx.Client(timeout=HTTP_TIMEOUT_S, follow_redirects=False)
    try:
        result = _post(client, delivery_id, url, body, secret, extra, wall_clock)
    finally:
        if own_client:
            client.close()
    if result.ok:
        store.mark_delivered(conn, delivery_id, result.status_code or 200, clock.now_ms())
    else:
        store.mark_attempt_failed(conn, delivery_id, status_code=result.status_code,
                                  error=result.error or "failed", next_attempt_at=None)
    log.info("test webhook to endpoint %s (%s): %s", endpoint_id, _where(url), result.text())
    return result


# ---------------------------------------------------------------- import / export events
def notify_import_job(conn: sqlite3.Connection, job_id: str, now_ms: int) -> list[str]:
    """Queue import.completed or import.failed for a finished import job (worker after_import)."""
    job = store.job_row(conn, "import_jobs", job_id)
    if job is None or job.get("status") not in ("completed", "failed"):
        return []
    event_type = "import.completed" if job["status"] == "completed" else "import.failed"
    data = {
        "job_id": job["id"], "site_id": job["site_id"], "type": job["type"],
        "status": job["status"], "file_name": job["file_name"],
        "total_records": job.get("total_records"),
        "processed_records": job.get("processed_records"),
        "failed_records": job.get("failed_records"),
        "duplicate_records": job.get("duplicate_records"),
        "message": job.get("message"),
        "completed_at": job.get("completed_at"),
    }
    return enqueue_event(conn, job["site_id"] or "", event_type, data, now_ms)


def notify_export_completed(conn: sqlite3.Connection, export_id: str, now_ms: int, *,
                            file_url: str | None = None, rows: int | None = None) -> list[str]:
    """Queue export.completed for an export run that finished."""
    job = store.job_row(conn, "export_jobs", export_id)
    if job is None:
        return []
    data = {"export_id": job["id"], "site_id": job["site_id"], "name": job["name"],
            "type": job["type"], "format": job["format"],
            "file_url": file_url or job.get("file_url"), "rows": rows}
    return enqueue_event(conn, job["site_id"], "export.completed", data, now_ms)
