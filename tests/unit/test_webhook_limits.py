"""Webhook limits against real slow and hostile HTTP endpoints on 127.0.0.1 (SPEC 10): a total
deadline per request, a cap on the response read, endpoints that never delay each other,
permanent failures after one attempt, link-local targets refused, and a worker that stops
within seconds whatever an endpoint does."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import wait_until

from pulse_tui.clock import Clock, parse_instant
from pulse_tui.config import Settings, load_settings
from pulse_tui.errors import ValidationError
from pulse_tui.notify import delivery
from pulse_tui.notify.delivery import RetryPolicy
from pulse_tui.store import webhooks as hooks
from pulse_tui.store.events import ensure_sites
from tests.hostile_http import HostileServer

NOW = parse_instant("2026-11-25T12:00:00Z")
SITE = "site-a"
POLICY = RetryPolicy(base_ms=1_000, factor=2, jitter=0, max_attempts=8)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    ensure_sites(conn, [SITE], NOW)
    return conn


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer(trickle_s=0.25, trickle_for_s=20.0) as srv:
        yield srv


def endpoint(db: sqlite3.Connection, url: str) -> str:
    return hooks.create_endpoint(db, site_id=SITE, url=url, events=["alert.firing"],
                                 now_ms=NOW).endpoint.id


def queue(db: sqlite3.Connection, endpoint_id: str) -> str:
    [msg] = delivery.enqueue_event(db, SITE, "alert.firing", {"n": 1}, NOW,
                                   endpoint_ids=[endpoint_id])
    return msg


def state(db: sqlite3.Connection, delivery_id: str) -> tuple:
    d = hooks.get_delivery(db, delivery_id)
    assert d is not None
    return d.status, d.attempts, d.last_status_code, d.last_error


# ---------------------------------------------------------------- deadline and cap
def test_trickling_endpoint_hits_the_total_deadline(db: sqlite3.Connection,
                                                    server: HostileServer) -> None:
    """One byte every 0.25 s never trips a per-read timeout; the total deadline ends it."""
    msg = queue(db, endpoint(db, server.url("/trickle")))
    out = delivery.deliver_due(db, Clock(NOW), policy=POLICY, deadline_s=1.5)
    assert "1 to retry" in out
    status, attempts, code, error = state(db, msg)
    assert (status, attempts, code) == ("pending", 1, None)
    assert error == "no complete answer within 1.5 s"
    [hit] = server.hits_for("/trickle")
    # the server was still trickling when the client gave up (it would go on for 20 s)
    wait_until(lambda: hit.finished is not None, timeout=10)
    assert hit.client_gone and hit.sent_bytes < 20 / 0.25


def test_default_deadline_and_cap_are_the_spec_values() -> None:
    assert delivery.HTTP_DEADLINE_S == 10.0
    assert delivery.MAX_RESPONSE_BYTES == 64 * 1024


def test_endless_body_is_read_only_up_to_the_cap(db: sqlite3.Connection) -> None:
    with HostileServer(endless_cap=400 * 1024 * 1024) as srv:
        msg = queue(db, endpoint(db, srv.url("/endless")))
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        out = delivery.deliver_due(db, Clock(NOW), policy=POLICY)
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert "1 delivered" in out  # a 200 is a delivery; the rest of the body is ignored
        assert state(db, msg)[:3] == ("delivered", 1, 200)
        [hit] = srv.hits_for("/endless")
        wait_until(lambda: hit.finished is not None, timeout=20)
        # the client stopped reading: the server could only fill the socket buffers
        assert hit.client_gone and hit.sent_bytes < 64 * 1024 * 1024
        assert peak_after - peak_before < 64 * 1024


def test_slow_endpoint_never_delays_a_healthy_one(db: sqlite3.Connection,
                                                  server: HostileServer) -> None:
    slow = queue(db, endpoint(db, server.url("/trickle")))  # queued first: sent first
    healthy = [queue(db, endpoint(db, server.url("/ok"))) for _ in range(3)]
    out = delivery.deliver_due(db, Clock(NOW), policy=POLICY, deadline_s=4)
    assert "3 delivered" in out and "1 to retry" in out
    assert all(state(db, h)[:3] == ("delivered", 1, 200) for h in healthy)
    [trickle] = server.hits_for("/trickle")
    ok_hits = server.hits_for("/ok")
    assert len(ok_hits) == 3
    # every healthy request was answered while the slow one was still being trickled
    wait_until(lambda: trickle.finished is not None, timeout=10)
    assert trickle.finished is not None
    assert all(h.finished is not None and h.finished < trickle.finished for h in ok_hits)
    assert state(db, slow)[:2] == ("pending", 1)


def test_a_stalling_endpoint_keeps_its_other_deliveries_for_the_next_run(
        db: sqlite3.Connection, server: HostileServer) -> None:
    ep = endpoint(db, server.url("/trickle"))
    first, second = queue(db, ep), queue(db, ep)
    delivery.deliver_due(db, Clock(NOW), policy=POLICY, deadline_s=1)
    assert state(db, first)[:2] == ("pending", 1)
    d = hooks.get_delivery(db, second)
    assert d is not None and (d.status, d.attempts, d.next_attempt_at) == ("pending", 0, NOW)
    assert len(server.hits_for("/trickle")) == 1


def test_stop_abandons_a_request_in_flight_and_releases_it(db: sqlite3.Connection,
                                                           server: HostileServer) -> None:
    msg = queue(db, endpoint(db, server.url("/trickle")))
    out = delivery.deliver_due(db, Clock(NOW), policy=POLICY,
                               should_stop=lambda: bool(server.hits_for("/trickle")))
    assert "0 delivered" in out
    d = hooks.get_delivery(db, msg)
    # not counted as an attempt, due again at once for the next sender
    assert d is not None and (d.status, d.attempts, d.next_attempt_at) == ("pending", 0, NOW)
    [hit] = server.hits_for("/trickle")
    wait_until(lambda: hit.finished is not None, timeout=10)
    assert hit.client_gone


# ---------------------------------------------------------------- permanent failures
@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 410, 413, 422])
def test_permanent_4xx_is_not_retried(db: sqlite3.Connection, server: HostileServer,
                                      code: int) -> None:
    msg = queue(db, endpoint(db, server.url(f"/status/{code}")))
    assert "1 failed" in delivery.deliver_due(db, Clock(NOW), policy=POLICY)
    status, attempts, status_code, error = state(db, msg)
    assert (status, attempts, status_code) == ("failed", 1, code)
    assert error == f"HTTP {code} (permanent: not retried)"
    assert delivery.deliver_due(db, Clock(NOW + 10**9), policy=POLICY) == (
        "no webhook deliveries due")
    assert len(server.hits) == 1


@pytest.mark.parametrize("code", [408, 425, 429, 500])
def test_retryable_answers_are_retried(db: sqlite3.Connection, server: HostileServer,
                                       code: int) -> None:
    msg = queue(db, endpoint(db, server.url(f"/status/{code}")))
    assert "1 to retry" in delivery.deliver_due(db, Clock(NOW), policy=POLICY)
    assert state(db, msg)[:3] == ("pending", 1, code)


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("url", "ftp://files.example.com/x", "invalid URL: must start with http:// or https://"),
    ("url", "http://exa mple.com/", "invalid URL: must not contain spaces"),
    ("secret", "whsec_***not base64***", "secret: the webhook secret is not valid base64"),
    ("headers", "{not json", "headers: not valid JSON"),
    # host names urllib accepts but the HTTP client cannot encode (IDNA)
    ("url", "http://\u2603.example.com/hook", "invalid URL: the host name"),
    ("url", "http://xn--a.example.com/hook", "invalid URL: the host name"),
    ("url", "http://a\u200b.example.com/hook", "invalid URL: the host name"),
    ("headers", '{"X-Team": "\u00e9quipe"}', "headers: the value of X-Team must be plain ASCII"),
])
def test_foreign_endpoint_row_fails_once_with_the_reason(
        db: sqlite3.Connection, server: HostileServer, column: str, value: str,
        reason: str) -> None:
    ep = endpoint(db, server.url("/ok"))
    msg = queue(db, ep)
    db.execute(f"UPDATE webhook_endpoints SET {column} = ? WHERE id = ?", (value, ep))
    db.commit()
    assert "1 failed" in delivery.deliver_due(db, Clock(NOW), policy=POLICY)
    status, attempts, _, error = state(db, msg)
    assert (status, attempts) == ("failed", 1)
    assert error and reason in error
    assert server.hits == []  # nothing was sent to a row that cannot be used
    [listed] = hooks.list_endpoints(db, SITE)
    assert listed.problem and reason.removeprefix("invalid URL: ") in listed.problem


@pytest.mark.parametrize("url", ["http://\u2603.example.com/hook", "http://xn--a.example.com/"])
def test_a_host_name_the_client_cannot_encode_is_refused_when_saved(
        db: sqlite3.Connection, url: str) -> None:
    with pytest.raises(ValidationError, match="the host name"):
        endpoint(db, url)


# ---------------------------------------------------------------- link-local targets
@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirects_are_never_followed_to_link_local_or_in_a_loop(
        db: sqlite3.Connection, server: HostileServer, code: int) -> None:
    asked: list[str] = []
    resolve = _resolver({"127.0.0.1": ["127.0.0.1"]}, asked)
    meta = server.url(f"/redirect/{code}/http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data")
    loop = f"/redirect/{code}/" + quote(server.url(f"/redirect/{code}/x"), safe="")
    msgs = [queue(db, endpoint(db, meta)), queue(db, endpoint(db, server.url(loop)))]
    out = delivery.deliver_due(db, Clock(NOW), policy=POLICY, resolve=resolve)
    assert "2 to retry" in out
    for msg in msgs:
        assert state(db, msg)[:4] == ("pending", 1, code, f"HTTP {code}")
    assert set(asked) == {"127.0.0.1"}  # the Location was never looked up, let alone sent to
    assert len(server.hits) == 2


@pytest.mark.parametrize(("address", "refused"), [
    ("169.254.169.254", True), ("169.254.0.1", True), ("fe80::1", True),
    ("fe80::1%eth0", True), ("::ffff:169.254.169.254", True),
    ("127.0.0.1", False), ("10.0.0.1", False), ("169.253.255.255", False),
    ("169.255.0.0", False), ("2001:db8::1", False), ("::1", False),
])
def test_link_local_addresses(address: str, refused: bool) -> None:
    assert (delivery.link_local_reason(address) is not None) is refused


def _resolver(answers: dict[str, Sequence[str]], asked: list[str]):  # noqa: ANN202
    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return answers[host]
    return resolve


def test_name_resolving_to_link_local_is_refused_at_delivery(db: sqlite3.Connection) -> None:
    """The URL names an innocent host; its address, looked up when sending, is the metadata
    service: refused after one attempt, and no connection is made."""
    asked: list[str] = []
    resolve = _resolver({"hooks.example.test": ["169.254.169.254"]}, asked)
    msg = queue(db, endpoint(db, "http://hooks.example.test:9/hook"))
    assert "1 failed" in delivery.deliver_due(db, Clock(NOW), policy=POLICY, resolve=resolve)
    status, attempts, _, error = state(db, msg)
    assert (status, attempts) == ("failed", 1)
    assert error and "link-local address 169.254.169.254" in error
    assert "webhook_allow_link_local" in error
    assert asked == ["hooks.example.test"]


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data",
                                 "https://[fe80::1]:8080/hook",
                                 "http://[::ffff:169.254.1.1]/x"])
def test_literal_link_local_url_is_refused_when_saved(db: sqlite3.Connection, url: str) -> None:
    with pytest.raises(ValidationError, match="link-local") as caught:
        hooks.create_endpoint(db, site_id=SITE, url=url, events=["alert.firing"], now_ms=NOW)
    assert "url" in caught.value.errors
    ok = hooks.create_endpoint(db, site_id=SITE, url="https://hooks.example.test/x",
                               events=["alert.firing"], now_ms=NOW).endpoint
    with pytest.raises(ValidationError, match="webhook_allow_link_local"):
        hooks.update_endpoint(db, ok.id, url=url, now_ms=NOW + 1)
    # the setting allows it
    hooks.update_endpoint(db, ok.id, url=url, now_ms=NOW + 2, allow_link_local=True)


def test_literal_link_local_url_is_refused_when_sending(db: sqlite3.Connection) -> None:
    """Saved while the setting was on (or written by another program), sent with it off."""
    asked: list[str] = []
    resolve = _resolver({"169.254.169.254": ["169.254.169.254"], "fe80::1": ["fe80::1"]},
                        asked)
    ids = []
    for url in ("http://169.254.169.254/latest/meta-data", "http://[fe80::1]:8080/hook"):
        ids.append(hooks.create_endpoint(db, site_id=SITE, url=url, events=["alert.firing"],
                                         now_ms=NOW, allow_link_local=True).endpoint.id)
    v4, v6 = (queue(db, i) for i in ids)
    delivery.deliver_due(db, Clock(NOW), policy=POLICY, resolve=resolve)
    for msg in (v4, v6):
        status, attempts, _, error = state(db, msg)
        assert (status, attempts) == ("failed", 1) and error and "link-local" in error


def test_mixed_answer_with_a_link_local_address_is_refused(db: sqlite3.Connection,
                                                           server: HostileServer) -> None:
    resolve = _resolver({"hooks.example.test": ["127.0.0.1", "169.254.169.254"]}, [])
    msg = queue(db, endpoint(db, f"http://hooks.example.test:{server.port}/ok"))
    delivery.deliver_due(db, Clock(NOW), policy=POLICY, resolve=resolve)
    assert state(db, msg)[:2] == ("failed", 1)
    assert server.hits == []


def test_connection_goes_to_the_checked_address(db: sqlite3.Connection,
                                                server: HostileServer) -> None:
    """With the setting on, a name is sent to the address the resolver gave (here our
    server), and the Host header still names the URL's host."""
    resolve = _resolver({"hooks.example.test": ["127.0.0.1"]}, [])
    msg = queue(db, endpoint(db, f"http://hooks.example.test:{server.port}/ok"))
    assert "1 delivered" in delivery.deliver_due(db, Clock(NOW), policy=POLICY,
                                                 resolve=resolve)
    assert state(db, msg)[0] == "delivered"
    assert server.hits[0].headers["host"] == f"hooks.example.test:{server.port}"


def test_link_local_allowed_by_the_setting(db: sqlite3.Connection, tmp_path: Path,
                                           server: HostileServer) -> None:
    config = tmp_path / "pulse.toml"
    config.write_text("webhook_allow_link_local = true\n")
    settings = load_settings(config_file=config, environ={})
    assert settings.webhook_allow_link_local is True
    assert load_settings(environ={}).webhook_allow_link_local is False
    # off by default: a name the resolver answers with 169.254.x is refused, never connected
    resolve = _resolver({"meta.example.test": ["169.254.10.10"]}, [])
    msg = queue(db, endpoint(db, f"http://meta.example.test:{server.port}/ok"))
    refused = delivery.deliver_due(db, Clock(NOW), policy=POLICY, resolve=resolve)
    assert "1 failed" in refused and state(db, msg)[:2] == ("failed", 1)
    with pytest.raises(Exception, match="must be true or false"):
        bad = tmp_path / "bad.toml"
        bad.write_text('webhook_allow_link_local = "yes"\n')
        load_settings(config_file=bad, environ={})


def test_allowed_link_local_target_is_connected(db: sqlite3.Connection,
                                                server: HostileServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``allow_link_local`` the check lets 169.254.x through to the connect step; the
    connect is redirected to our server so no packet goes to a real 169.254 address."""
    connected: list[str] = []
    inner_connect = delivery.httpcore.AnyIOBackend.connect_tcp

    async def connect_tcp(self, host, port, **kw):  # noqa: ANN001, ANN202
        connected.append(host)
        return await inner_connect(self, "127.0.0.1", server.port, **kw)

    monkeypatch.setattr(delivery.httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    resolve = _resolver({"meta.example.test": ["169.254.10.10"]}, [])
    msg = queue(db, endpoint(db, "http://meta.example.test:80/ok"))
    out = delivery.deliver_due(db, Clock(NOW), policy=POLICY, resolve=resolve,
                               allow_link_local=True)
    assert "1 delivered" in out and state(db, msg)[0] == "delivered"
    assert connected == ["169.254.10.10"]


# ---------------------------------------------------------------- shutdown
def test_worker_sigterm_exits_within_seconds_while_an_endpoint_trickles(
        pulse_settings: Settings, tmp_path: Path) -> None:
    """Before: the worker logged "worker stopped" and kept running until the endpoint
    finished (65 s). Now a stop abandons the request in flight."""
    with HostileServer(trickle_s=0.5, trickle_for_s=60.0, lifetime_s=120) as srv:
        conn = sqlite3.connect(pulse_settings.db)
        from pulse_tui.store.connection import connect

        db = connect(pulse_settings.db)
        ensure_sites(db, [SITE], NOW)
        msg = queue(db, endpoint(db, srv.url("/trickle")))
        config = tmp_path / "config.toml"
        config.write_text("settle_seconds = 0.2\n")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PULSE_NOW": str(NOW)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "pulse_tui", "worker", "--db", str(pulse_settings.db),
             "--import-dir", str(pulse_settings.import_dir), "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        try:
            wait_until(lambda: srv.hits_for("/trickle") or proc.poll() is not None,
                       timeout=60)
            assert proc.poll() is None, proc.communicate()[1].decode()
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=90)
            elapsed = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert b"worker stopped" in err
        assert elapsed < 15, f"worker took {elapsed:.1f} s to exit after SIGTERM"
        # the abandoned delivery was released, not counted: the next worker sends it again
        row = conn.execute("SELECT status, attempts FROM webhook_deliveries WHERE id = ?",
                           (msg,)).fetchone()
        assert row == ("pending", 0)
        conn.close()
        db.close()


def test_a_foreign_delivery_row_never_stalls_the_queue(db: sqlite3.Connection,
                                                       server: HostileServer) -> None:
    ep = endpoint(db, server.url("/ok"))
    good = queue(db, ep)
    db.execute("INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, status, "
               "attempts, next_attempt_at, created_at) VALUES ('foreign', ?, 'alert.firing', "
               "x'00ff', 'pending', 'none', ?, ?)", (ep, NOW - 1, NOW - 1))
    db.commit()
    out = delivery.deliver_due(db, Clock(NOW), policy=POLICY)
    assert "1 delivered" in out and "1 failed" in out
    assert state(db, good)[0] == "delivered"
    status, _, _, error = state(db, "foreign")
    assert status == "failed" and error == "the queued payload is not text"
    assert len(server.hits) == 1
