"""The webhook delivery queue: enqueue events, send due deliveries with retries, test pings.

Every request is bounded (SPEC 10): a total deadline of :data:`HTTP_DEADLINE_S` for connecting,
sending and the whole response, and at most :data:`MAX_RESPONSE_BYTES` of the response read
(the rest is never read; the connection is closed). Due deliveries are sent with asyncio, one
task per endpoint (an endpoint's deliveries in order, endpoints side by side), so a slow or
hostile endpoint never delays another's; a sender asked to stop cancels what is in flight and
releases it for the next run at once. Targets that resolve to a link-local address
(169.254.0.0/16, fe80::/10: cloud metadata services) are refused unless
``webhook_allow_link_local`` is set; the check runs on the addresses actually connected to.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import control_conn
from pulse_tui.clock import Clock
from pulse_tui.errors import UsageError
from pulse_tui.notify.models import TEST_EVENT, WEBHOOK_EVENTS, SendResult
from pulse_tui.notify.signing import envelope, new_message_id, sign
from pulse_tui.notify.targets import link_local_reason
from pulse_tui.store import webhooks as store
from pulse_tui.store.tx import write_transaction

log = logging.getLogger("pulse_tui.notify")

# the services' callers pass the Backends (a bare connection: the PULSE file itself)
Target = Backends | sqlite3.Connection

HTTP_DEADLINE_S = 10.0           # connect + send + whole response, per request
MAX_RESPONSE_BYTES = 64 * 1024   # read at most this much of a response
MAX_PARALLEL_ENDPOINTS = 8       # endpoints sent to at the same time
STOP_POLL_S = 0.05               # how often a running sender checks should_stop()
USER_AGENT = "pulse-tui-webhooks/1"
# 4xx answers that a later attempt may get past; every other 4xx is permanent (one attempt)
RETRYABLE_4XX = frozenset({408, 425, 429})

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


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


# ---------------------------------------------------------------- guarded connections
class TargetRefused(Exception):
    """The target resolves to an address webhooks may not be sent to (permanent)."""


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to now (getaddrinfo, off the event loop)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the resolution done here: every address the host
    resolves to is checked before connecting, and the connection goes to a checked address
    (so a DNS answer that changes between a check and the connect cannot slip through)."""

    def __init__(self, *, allow_link_local: bool, resolve: Resolver | None = None) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_link_local = allow_link_local
        self._resolve = resolve or system_resolve

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = list(dict.fromkeys(await self._resolve(host, port)))
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: "
                                        f"{exc.strerror or exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        if not self._allow_link_local:
            for address in addresses:
                reason = link_local_reason(address)
                if reason:
                    raise TargetRefused(reason)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout,
                                                     local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not sent over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, backend: GuardedBackend) -> None:
        super().__init__(retries=0, trust_env=False)
        # httpx (0.28) builds its connection pool without a way to pass a network backend;
        # this is the same pool with ours (httpcore's documented extension point). A public
        # alternative would re-implement httpx's request, response and error mapping. Should
        # a later httpx stop keeping its pool there, refuse to send rather than send unguarded.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version cannot take PULSE's guarded connections; "
                               "install httpx 0.27 or 0.28")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=MAX_PARALLEL_ENDPOINTS * 2, max_keepalive_connections=8,
            keepalive_expiry=5.0, network_backend=backend)


def make_client(*, allow_link_local: bool = False, resolve: Resolver | None = None
                ) -> httpx.AsyncClient:
    """The HTTP client webhooks are sent with (redirects not followed, no proxy from the
    environment: the address check must see the real target)."""
    transport = _GuardedTransport(GuardedBackend(allow_link_local=allow_link_local,
                                                 resolve=resolve))
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                             timeout=httpx.Timeout(HTTP_DEADLINE_S))


# ---------------------------------------------------------------- one request
async def _read_capped(response: httpx.Response) -> int:
    """Read at most MAX_RESPONSE_BYTES of the (raw, still compressed) body; the rest is left
    unread and the connection closed with the response."""
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= MAX_RESPONSE_BYTES:
            break
    return read


def _classify(delivery_id: str, code: int) -> SendResult:
    if 200 <= code < 300:
        return SendResult(delivery_id, True, code, None)
    if 400 <= code < 500 and code not in RETRYABLE_4XX:
        return SendResult(delivery_id, False, code,
                          f"HTTP {code} (permanent: not retried)", permanent=True)
    return SendResult(delivery_id, False, code, f"HTTP {code}")


async def send_once(client: httpx.AsyncClient, delivery_id: str, url: str, body: str,
                    secret: str | None, extra: dict[str, str], *,
                    wall_clock: Callable[[], float] = time.time,
                    deadline_s: float = HTTP_DEADLINE_S) -> SendResult:
    """POST one delivery within the total deadline; never raises for what the endpoint does."""
    url_problem = store.check_url(url)
    if url_problem:
        return SendResult(delivery_id, False, None, f"invalid URL: {url_problem}",
                          permanent=True)
    try:
        headers = _headers(delivery_id, body, secret, extra, int(wall_clock()))
    except ValueError as exc:  # a stored secret that is not valid base64
        return SendResult(delivery_id, False, None, str(exc), permanent=True)
    try:
        async with asyncio.timeout(deadline_s):
            async with client.stream("POST", url, content=body.encode("utf-8"),
                                     headers=headers) as response:
                await _read_capped(response)
                code = response.status_code
    except TimeoutError:
        return SendResult(delivery_id, False, None,
                          f"no complete answer within {deadline_s:g} s")
    except TargetRefused as exc:
        return SendResult(delivery_id, False, None, str(exc), permanent=True)
    except httpx.TimeoutException:
        return SendResult(delivery_id, False, None, "timed out")
    except httpx.ConnectError as exc:
        reason = str(exc).split("] ", 1)[-1].strip().lower() or "no answer"
        parts = urlsplit(url)  # hostname and port only: never user:password@ from the URL
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        return SendResult(delivery_id, False, None, f"could not connect to {host} ({reason})")
    except httpx.HTTPError as exc:
        return SendResult(delivery_id, False, None, f"{type(exc).__name__}: {exc}"[:300])
    except httpx.InvalidURL:  # check_url / the endpoint's problem should have said so
        return SendResult(delivery_id, False, None, "invalid URL: the host name is not valid",
                          permanent=True)
    except UnicodeError:  # an international name that cannot be encoded, or a header value
        return SendResult(delivery_id, False, None, "cannot be sent: the URL's host name or "
                          "a header value is not valid", permanent=True)
    return _classify(delivery_id, code)


# ---------------------------------------------------------------- the queue
@dataclass
class _Tally:
    sent: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def _record(conn: sqlite3.Connection, clock: Clock, policy: RetryPolicy,
            rng: random.Random | None, delivery_id: str, endpoint_id: str, url: str,
            attempts: int, result: SendResult, tally: _Tally) -> None:
    after = clock.now_ms()
    if result.ok:
        store.mark_delivered(conn, delivery_id, result.status_code or 200, after)
        tally.delivered += 1
        log.info("webhook %s to endpoint %s (%s): %s", delivery_id, endpoint_id,
                 _where(url), result.text())
        return
    n = attempts + 1
    give_up = result.permanent or n >= policy.max_attempts
    next_at = None if give_up else after + policy.delay_ms(n, rng)
    store.mark_attempt_failed(conn, delivery_id, status_code=result.status_code,
                              error=result.error or "failed", next_attempt_at=next_at)
    if next_at is None:
        tally.failed += 1
        why = "not retried" if result.permanent else f"gave up after {n} attempts"
        log.warning("webhook %s to endpoint %s (%s) %s: %s", delivery_id, endpoint_id,
                    _where(url), why, result.text())
    else:
        tally.retrying += 1
        log.info("webhook %s to endpoint %s (%s): %s; retry %d in %ds", delivery_id,
                 endpoint_id, _where(url), result.text(), n + 1, (next_at - after) // 1000)


async def _deliver(conn: sqlite3.Connection, clock: Clock,
                   due: list[tuple[str, str, str, int]], *, policy: RetryPolicy,
                   rng: random.Random | None, wall_clock: Callable[[], float],
                   should_stop: Callable[[], bool] | None, allow_link_local: bool,
                   resolve: Resolver | None, deadline_s: float) -> _Tally:
    tally = _Tally()
    by_endpoint: dict[str, list[tuple[str, str, str, int]]] = {}
    for item in due:
        by_endpoint.setdefault(item[1], []).append(item)
    stopping = asyncio.Event()
    gate = asyncio.Semaphore(MAX_PARALLEL_ENDPOINTS)

    def stop_now() -> bool:
        if not stopping.is_set() and should_stop is not None and should_stop():
            stopping.set()
        return stopping.is_set()

    async def one_endpoint(client: httpx.AsyncClient, endpoint_id: str,
                           items: list[tuple[str, str, str, int]]) -> None:
        remaining = list(items)
        try:
            async with gate:
                while remaining and not stop_now():
                    delivery_id, _, body, attempts = remaining[0]
                    target = store.endpoint_for_sending(conn, endpoint_id)
                    if target is None or not target[3]:
                        reason = "endpoint deleted" if target is None else "endpoint inactive"
                        store.mark_attempt_failed(conn, delivery_id, status_code=None,
                                                  error=reason, next_attempt_at=None)
                        remaining.pop(0)
                        tally.sent += 1
                        tally.failed += 1
                        continue
                    url, secret, extra, _, problem = target
                    if problem:
                        result = SendResult(delivery_id, False, None,
                                            f"endpoint is broken: {problem}", permanent=True)
                    elif not isinstance(body, str):  # a row another program queued
                        result = SendResult(delivery_id, False, None,
                                            "the queued payload is not text", permanent=True)
                    else:
                        result = await send_once(client, delivery_id, url, body, secret, extra,
                                                 wall_clock=wall_clock, deadline_s=deadline_s)
                    remaining.pop(0)
                    tally.sent += 1
                    _record(conn, clock, policy, rng, delivery_id, endpoint_id, url, attempts,
                            result, tally)
                    if result.error and result.error.startswith("no complete answer"):
                        break  # this endpoint is stalling: its other deliveries wait a run
        finally:
            if remaining:  # not sent (stopping, cancelled, or after a stall): due again now
                store.release_claims(conn, [r[0] for r in remaining], clock.now_ms())

    async with make_client(allow_link_local=allow_link_local, resolve=resolve) as client:
        tasks = [asyncio.create_task(one_endpoint(client, eid, items))
                 for eid, items in by_endpoint.items()]
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=STOP_POLL_S)
            if pending and stop_now():
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)
                break
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    return tally


def deliver_due(target: Target, clock: Clock, *,
                policy: RetryPolicy = DEFAULT_POLICY, limit: int = 100,
                rng: random.Random | None = None,
                wall_clock: Callable[[], float] = time.time,
                should_stop: Callable[[], bool] | None = None,
                allow_link_local: bool = False, resolve: Resolver | None = None,
                deadline_s: float = HTTP_DEADLINE_S) -> str:
    """Send the pending deliveries that are due; returns a one-line outcome.

    2xx: delivered, never sent again. A permanent failure (invalid URL, headers or secret in
    the endpoint row, a refused address, a 4xx other than 408/425/429) is marked failed after
    this one attempt. Otherwise the attempt is counted and retried after the policy's backoff,
    or marked failed after ``policy.max_attempts``. The queue is the table, so deliveries
    survive restarts. ``wall_clock`` stamps webhook-timestamp (receivers check it against
    their real clock; the business clock may be fixed by PULSE_NOW). When ``should_stop()``
    turns true, requests in flight are abandoned and every delivery not yet recorded is
    released for the next run. Blocks the calling thread (runs its own event loop).
    """
    conn = control_conn(target)
    now = clock.now_ms()
    due = store.claim_due(conn, now, policy.in_flight_ms, limit)
    if not due:
        return "no webhook deliveries due"
    tally = asyncio.run(_deliver(conn, clock, due, policy=policy, rng=rng,
                                 wall_clock=wall_clock, should_stop=should_stop,
                                 allow_link_local=allow_link_local, resolve=resolve,
                                 deadline_s=deadline_s))
    parts = [f"{tally.delivered} delivered"]
    if tally.retrying:
        parts.append(f"{tally.retrying} to retry")
    if tally.failed:
        parts.append(f"{tally.failed} failed")
    return f"{tally.sent} webhook deliveries sent: " + ", ".join(parts)


# ---------------------------------------------------------------- test pings
@dataclass(frozen=True, slots=True)
class PreparedTest:
    """A recorded ``webhook.test`` delivery, ready to send (holds the secret: never logged)."""

    delivery_id: str
    endpoint_id: str
    url: str
    secret: str | None
    headers: dict[str, str]
    body: str
    problem: str | None

    def __repr__(self) -> str:
        return f"PreparedTest({self.delivery_id!r}, endpoint={self.endpoint_id!r})"


def prepare_test(db: Target, endpoint_id: str, *, clock: Clock) -> PreparedTest:
    """Record a ``webhook.test`` delivery for the endpoint (the first half of a test ping)."""
    conn = control_conn(db)
    target = store.endpoint_for_sending(conn, endpoint_id)
    if target is None:
        raise UsageError(f"no webhook endpoint {endpoint_id!r}")
    url, secret, extra, _, problem = target
    now = clock.now_ms()
    delivery_id = new_message_id()
    body = envelope(TEST_EVENT, {"endpoint_id": endpoint_id,
                                 "message": "PULSE test delivery"}, now)
    with write_transaction(conn):
        store.insert_delivery(conn, delivery_id, endpoint_id, TEST_EVENT, body, now)
        # held like a claimed delivery: the worker leaves it alone while it is being sent
        # (and sends it later only if this sender disappears before recording the answer)
        store.release_claims(conn, [delivery_id], now + DEFAULT_POLICY.in_flight_ms)
    return PreparedTest(delivery_id, endpoint_id, url, secret, extra, body, problem)


async def send_prepared(test: PreparedTest, *, allow_link_local: bool = False,
                        resolve: Resolver | None = None,
                        wall_clock: Callable[[], float] = time.time) -> SendResult:
    """Send a prepared test ping (bounded like every delivery); safe to cancel."""
    if test.problem:
        return SendResult(test.delivery_id, False, None, f"endpoint is broken: {test.problem}",
                          permanent=True)
    async with make_client(allow_link_local=allow_link_local, resolve=resolve) as client:
        return await send_once(client, test.delivery_id, test.url, test.body, test.secret,
                               test.headers, wall_clock=wall_clock)


def record_test(target: Target, test: PreparedTest, result: SendResult, *,
                clock: Clock) -> None:
    """Record the outcome of a test ping (no retries)."""
    conn = control_conn(target)
    if result.ok:
        store.mark_delivered(conn, test.delivery_id, result.status_code or 200, clock.now_ms())
    else:
        store.mark_attempt_failed(conn, test.delivery_id, status_code=result.status_code,
                                  error=result.error or "failed", next_attempt_at=None)
    log.info("test webhook to endpoint %s (%s): %s", test.endpoint_id, _where(test.url),
             result.text())


def send_test(target: Target, endpoint_id: str, *, clock: Clock | None = None,
              wall_clock: Callable[[], float] = time.time, allow_link_local: bool = False,
              resolve: Resolver | None = None) -> SendResult:
    """POST a signed ``webhook.test`` ping to the endpoint now (no retries); it is recorded in
    the endpoint's deliveries. Blocks up to the request deadline (call it from a thread)."""
    conn = control_conn(target)
    clock = clock or Clock.from_env()
    test = prepare_test(conn, endpoint_id, clock=clock)
    result = asyncio.run(send_prepared(test, allow_link_local=allow_link_local,
                                       resolve=resolve, wall_clock=wall_clock))
    record_test(conn, test, result, clock=clock)
    return result


# ---------------------------------------------------------------- import / export events
def notify_import_job(target: Target, job_id: str, now_ms: int) -> list[str]:
    """Queue import.completed or import.failed for a finished import job (worker after_import)."""
    conn = control_conn(target)
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
