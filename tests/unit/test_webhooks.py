"""Webhooks end to end against a real HTTP server on 127.0.0.1: signing (verified with the
standardwebhooks package), alert notifications, retries, restarts, secrets never leaking."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from pulse_tui.alerts import engine
from pulse_tui.clock import Clock, parse_instant
from pulse_tui.errors import UsageError, ValidationError
from pulse_tui.models import NewEvent
from pulse_tui.notify import delivery
from pulse_tui.notify.delivery import RetryPolicy
from pulse_tui.notify.signing import mask_secret, secret_key, sign
from pulse_tui.simulate import write_batch
from pulse_tui.store import alerts as rules
from pulse_tui.store import webhooks as hooks
from pulse_tui.store.events import ensure_sites

NOW = parse_instant("2026-11-25T12:00:00Z")
MIN = 60_000
SITE = "site-a"
FAST = RetryPolicy(base_ms=1_000, factor=2, jitter=0, max_attempts=3)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server: records each POST and answers with the next scripted status."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            rec = box["r"]
            with rec.lock:
                rec.requests.append(Received(self.path, dict(self.headers.items()), body))
                status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield box["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def db(conn: sqlite3.Connection) -> sqlite3.Connection:
    ensure_sites(conn, [SITE, "site-b"], NOW)
    return conn


_n = 0


def add_events(conn: sqlite3.Connection, times: list[int]) -> None:
    global _n
    evs = []
    for t in times:
        _n += 1
        evs.append(NewEvent(f"w{_n}", SITE, "pageview", t, f"s{_n}", f"u{_n}"))
    write_batch(conn, evs, NOW)


def endpoint(db: sqlite3.Connection, url: str, events: list[str] | None = None,
             **kw: object) -> hooks.CreatedEndpoint:
    return hooks.create_endpoint(db, site_id=SITE, url=url,
                                 events=events or ["alert.firing", "alert.resolved"],
                                 now_ms=NOW, **kw)  # type: ignore[arg-type]


def verify(secret: str, req: Received) -> dict[str, object]:
    return Webhook(secret).verify(req.body, req.headers)


# ---------------------------------------------------------------- alerts -> webhooks
def test_rule_fires_once_resolves_once_signed(db: sqlite3.Connection,
                                              receiver: Receiver) -> None:
    created = endpoint(db, receiver.url, headers={"X-Team": "ops"})
    rule = rules.create_rule(
        db, site_id=SITE, name="spike", now_ms=NOW, notification_type="webhook",
        notification_config={"endpoint_id": created.endpoint.id},
        condition={"metric": "events", "window_minutes": 5, "comparison": "gte",
                   "threshold": 3})
    add_events(db, [NOW - 2 * MIN] * 3)
    for step in range(3):  # firing for three evaluations and three delivery runs
        clock = Clock(NOW + step * MIN // 4)
        engine.evaluate_all(db, clock)
        delivery.deliver_due(db, clock, policy=FAST)
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    payload = verify(created.secret, req)
    assert payload["type"] == "alert.firing"
    assert payload["timestamp"] == "2026-11-25T12:00:00.000Z"
    data = payload["data"]
    assert isinstance(data, dict)
    assert (data["rule_id"], data["value"], data["threshold"]) == (rule.rule_id, 3.0, 3.0)
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Team"] == "ops"
    assert req.headers["webhook-id"].startswith("msg_")
    # the body sent is exactly the stored one
    stored = db.execute("SELECT payload FROM webhook_deliveries").fetchone()[0]
    assert req.body == stored.encode()
    # the window slides past the events: one alert.resolved
    for step in range(2):
        clock = Clock(NOW + 4 * MIN + step * MIN)
        engine.evaluate_all(db, clock)
        delivery.deliver_due(db, clock, policy=FAST)
    assert [verify(created.secret, r)["type"] for r in receiver.requests] == [
        "alert.firing", "alert.resolved"]
    listed = hooks.recent_deliveries(db, created.endpoint.id)
    assert [(d.event_type, d.status, d.last_status_code) for d in listed] == [
        ("alert.resolved", "delivered", 200), ("alert.firing", "delivered", 200)]


def test_muted_rule_sends_nothing_but_changes_state(db: sqlite3.Connection,
                                                    receiver: Receiver) -> None:
    created = endpoint(db, receiver.url)
    rule = rules.create_rule(
        db, site_id=SITE, name="quiet", now_ms=NOW, status="muted",
        notification_type="webhook", notification_config={"endpoint_id": created.endpoint.id},
        condition={"metric": "events", "window_minutes": 5, "comparison": "gt", "threshold": 0})
    add_events(db, [NOW - MIN])
    engine.evaluate_all(db, Clock(NOW))
    assert "no webhook deliveries due" == delivery.deliver_due(db, Clock(NOW), policy=FAST)
    fresh = rules.get_rule(db, rule.rule_id)
    assert fresh and fresh.state == "firing" and receiver.requests == []


def test_endpoint_not_subscribed_or_other_site_gets_nothing(db: sqlite3.Connection,
                                                            receiver: Receiver) -> None:
    endpoint(db, receiver.url, events=["import.completed"])
    hooks.create_endpoint(db, site_id="site-b", url=receiver.url, events=["alert.firing"],
                          now_ms=NOW)
    wanted = endpoint(db, receiver.url + "?yes", events=["alert.firing"])
    ids = delivery.enqueue_event(db, SITE, "alert.firing", {"x": 1}, NOW)
    assert len(ids) == 1
    delivery.deliver_due(db, Clock(NOW))
    assert [r.path for r in receiver.requests] == ["/hook?yes"]
    assert verify(wanted.secret, receiver.requests[0])["data"] == {"x": 1}


# ---------------------------------------------------------------- queue
def test_500_then_200_is_retried_and_delivered_once(db: sqlite3.Connection,
                                                    receiver: Receiver) -> None:
    created = endpoint(db, receiver.url)
    receiver.statuses[:] = [500]
    [msg] = delivery.enqueue_event(db, SITE, "alert.firing", {"n": 1}, NOW)
    out = delivery.deliver_due(db, Clock(NOW), policy=FAST)
    assert "1 to retry" in out
    d = hooks.get_delivery(db, msg)
    assert d and (d.status, d.attempts, d.last_status_code) == ("pending", 1, 500)
    assert d.next_attempt_at == NOW + 1_000
    # not due yet: nothing sent
    assert delivery.deliver_due(db, Clock(NOW + 999), policy=FAST) == "no webhook deliveries due"
    assert "1 delivered" in delivery.deliver_due(db, Clock(NOW + 1_000), policy=FAST)
    # delivered: never sent again
    for later in (2_000, 60_000, 10 * 3_600_000):
        assert delivery.deliver_due(db, Clock(NOW + later), policy=FAST) == (
            "no webhook deliveries due")
    assert len(receiver.requests) == 2
    # same message id and body on the retry, both signatures valid
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers[
        "webhook-id"] == msg
    for r in receiver.requests:
        verify(created.secret, r)
    d = hooks.get_delivery(db, msg)
    assert d and (d.status, d.attempts, d.last_status_code) == ("delivered", 2, 200)


def test_gives_up_after_max_attempts_with_backoff(db: sqlite3.Connection,
                                                  receiver: Receiver) -> None:
    endpoint(db, receiver.url)
    receiver.statuses[:] = [500, 502, 503, 200]
    [msg] = delivery.enqueue_event(db, SITE, "alert.firing", {}, NOW)
    t = NOW
    delays = []
    for _ in range(3):
        delivery.deliver_due(db, Clock(t), policy=FAST)
        d = hooks.get_delivery(db, msg)
        assert d
        if d.status == "pending":
            delays.append(d.next_attempt_at - t)
            t = d.next_attempt_at
    assert delays == [1_000, 2_000]
    d = hooks.get_delivery(db, msg)
    assert d and (d.status, d.attempts, d.last_status_code) == ("failed", 3, 503)
    assert delivery.deliver_due(db, Clock(t + 10**9), policy=FAST) == "no webhook deliveries due"
    assert len(receiver.requests) == 3


def test_backoff_policy_grows_with_jitter_and_cap() -> None:
    import random
    p = RetryPolicy(base_ms=1_000, factor=2, max_delay_ms=5_000, jitter=0.2)
    rng = random.Random(1)
    for n, expect in ((1, 1_000), (2, 2_000), (3, 4_000), (6, 5_000)):
        d = p.delay_ms(n, rng)
        assert expect * 0.8 <= d <= expect * 1.2


def test_unreachable_endpoint_is_retried(db: sqlite3.Connection) -> None:
    endpoint(db, "http://127.0.0.1:9/nothing-listens")
    [msg] = delivery.enqueue_event(db, SITE, "alert.firing", {}, NOW)
    assert "1 to retry" in delivery.deliver_due(db, Clock(NOW), policy=FAST)
    d = hooks.get_delivery(db, msg)
    assert d and d.status == "pending" and d.last_status_code is None and d.last_error


def test_redirect_is_not_followed(db: sqlite3.Connection, receiver: Receiver) -> None:
    endpoint(db, receiver.url)
    receiver.statuses[:] = [302]
    [msg] = delivery.enqueue_event(db, SITE, "alert.firing", {}, NOW)
    delivery.deliver_due(db, Clock(NOW), policy=FAST)
    d = hooks.get_delivery(db, msg)
    assert d and d.status == "pending" and d.last_status_code == 302
    assert len(receiver.requests) == 1


def test_pending_deliveries_survive_a_restart(db_path: Path, receiver: Receiver) -> None:
    from pulse_tui.store.connection import connect
    first = connect(db_path)
    ensure_sites(first, [SITE], NOW)
    created = endpoint(first, receiver.url)
    ids = delivery.enqueue_event(first, SITE, "alert.firing", {"from": "before"}, NOW)
    first.close()
    code = (
        "from pulse_tui.store.connection import connect\n"
        "from pulse_tui.clock import Clock\n"
        "from pulse_tui.notify.delivery import deliver_due\n"
        f"print(deliver_due(connect({str(db_path)!r}), Clock.from_env()))\n"
    )
    env = dict(os.environ, PULSE_NOW=str(NOW + 1))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    assert "1 delivered" in out.stdout
    assert [r.headers["webhook-id"] for r in receiver.requests] == ids
    assert verify(created.secret, receiver.requests[0])["data"] == {"from": "before"}
    fresh = connect(db_path)
    d = hooks.get_delivery(fresh, ids[0])
    assert d and d.status == "delivered"
    assert delivery.deliver_due(fresh, Clock(NOW + 10**7)) == "no webhook deliveries due"
    fresh.close()
    assert len(receiver.requests) == 1


def test_send_test_pings_and_records(db: sqlite3.Connection, receiver: Receiver) -> None:
    created = endpoint(db, receiver.url)
    result = delivery.send_test(db, created.endpoint.id, clock=Clock(NOW))
    assert result.ok and result.status_code == 200
    assert verify(created.secret, receiver.requests[0])["type"] == "webhook.test"
    [d] = hooks.recent_deliveries(db, created.endpoint.id)
    assert (d.event_type, d.status) == ("webhook.test", "delivered")
    receiver.statuses[:] = [404]
    result = delivery.send_test(db, created.endpoint.id, clock=Clock(NOW + 1))
    assert not result.ok and result.text() == "failed: HTTP 404"
    # a test ping is never retried
    assert delivery.deliver_due(db, Clock(NOW + 10**8)) == "no webhook deliveries due"


# ---------------------------------------------------------------- signing and secrets
def test_signature_matches_spec_and_raw_secrets() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}', secret)
    # the example of the Standard Webhooks specification
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert secret_key("plain-secret") == b"plain-secret"
    with pytest.raises(ValueError):
        secret_key("whsec_!!!not base64")


def test_secret_shown_only_on_create_and_rotate(db: sqlite3.Connection, receiver: Receiver,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = endpoint(db, receiver.url)
    secret = created.secret
    assert secret.startswith("whsec_") and 32 <= len(secret) - 6 <= 44
    assert 24 <= len(secret_key(secret)) <= 32
    masked = created.endpoint.secret_masked
    assert masked == mask_secret(secret) and masked.startswith("whsec_…") and secret not in masked
    assert masked.endswith(secret[-4:])
    shown = [repr(created), repr(hooks.get_endpoint(db, created.endpoint.id)),
             repr(hooks.list_endpoints(db)), repr(hooks.recent_deliveries(db, created.endpoint.id))]
    delivery.enqueue_event(db, SITE, "alert.firing", {}, NOW)
    delivery.deliver_due(db, Clock(NOW))
    delivery.send_test(db, created.endpoint.id, clock=Clock(NOW))
    rotated = hooks.rotate_secret(db, created.endpoint.id, now_ms=NOW)
    assert rotated.secret != secret and rotated.secret.startswith("whsec_")
    shown.append(repr(rotated))
    for text in [*shown, caplog.text]:
        assert secret not in text and secret[6:] not in text
        assert rotated.secret[6:] not in text
    # after rotation deliveries are signed with the new secret
    delivery.enqueue_event(db, SITE, "alert.resolved", {}, NOW)
    delivery.deliver_due(db, Clock(NOW))
    verify(rotated.secret, receiver.requests[-1])
    assert mask_secret(None) == "(none)" and mask_secret("short") == "…"


def test_endpoint_validation_per_field(db: sqlite3.Connection) -> None:
    with pytest.raises(ValidationError) as info:
        hooks.create_endpoint(db, site_id="zzz", url="ftp://example.com/x",
                              events=["alert.firing", "user.deleted"],
                              headers={"webhook-signature": "x"}, now_ms=NOW)
    e = info.value.errors
    assert e["site_id"] == "unknown site 'zzz'"
    assert "http:// or https://" in e["url"]
    assert "unknown event 'user.deleted'" in e["events"]
    assert "cannot be overridden" in e["headers"]
    for bad_url in ("", "https://", "javascript:alert(1)", "http://a b/"):
        with pytest.raises(ValidationError) as info:
            hooks.create_endpoint(db, site_id=SITE, url=bad_url, events=["alert.firing"],
                                  now_ms=NOW)
        assert "url" in info.value.errors
    with pytest.raises(ValidationError) as info:
        hooks.create_endpoint(db, site_id=SITE, url="https://x.example", events=[],
                              headers='["x"]', now_ms=NOW)
    assert set(info.value.errors) == {"events", "headers"}
    assert db.execute("SELECT count(*) FROM webhook_endpoints").fetchone()[0] == 0


def test_endpoint_crud(db: sqlite3.Connection, receiver: Receiver) -> None:
    created = endpoint(db, receiver.url)
    eid = created.endpoint.id
    upd = hooks.update_endpoint(db, eid, events="import.failed,alert.firing", active=False,
                                headers={"Authorization": "Bearer t"}, now_ms=NOW + 1)
    assert upd.events == ("alert.firing", "import.failed") and not upd.active
    assert upd.headers == {"Authorization": "Bearer t"}
    # inactive endpoints get nothing
    assert delivery.enqueue_event(db, SITE, "alert.firing", {}, NOW) == []
    hooks.update_endpoint(db, eid, active=True, now_ms=NOW + 2)
    rule = rules.create_rule(db, site_id=SITE, name="r", now_ms=NOW,
                             notification_type="webhook", notification_config={"endpoint_id": eid},
                             condition={"metric": "users", "window_minutes": 60,
                                        "comparison": "lt", "threshold": 1})
    with pytest.raises(UsageError, match="used by alert rule"):
        hooks.delete_endpoint(db, eid)
    rules.delete_rule(db, rule.rule_id)
    assert hooks.delete_endpoint(db, eid)
    assert hooks.list_endpoints(db) == []


def test_import_events_are_queued(db: sqlite3.Connection, receiver: Receiver) -> None:
    created = endpoint(db, receiver.url, events=["import.completed", "import.failed"])
    db.execute("INSERT INTO import_jobs (id, site_id, type, status, file_name, file_size, "
               "processed_records, failed_records, created_at) "
               "VALUES ('job1', ?, 'events', 'completed', 'a.csv', 10, 5, 1, ?)", (SITE, NOW))
    assert len(delivery.notify_import_job(db, "job1", NOW)) == 1
    delivery.deliver_due(db, Clock(NOW))
    body = verify(created.secret, receiver.requests[0])
    assert body["type"] == "import.completed"
    assert isinstance(body["data"], dict) and body["data"]["processed_records"] == 5
    assert json.loads(receiver.requests[0].body) == body


# ---------------------------------------------------------------- worker registration
def test_worker_jobs_and_after_import_hook(db: sqlite3.Connection, receiver: Receiver) -> None:
    from pulse_tui.notify import jobs as webhook_jobs
    from pulse_tui.worker.events import ImportFinished
    from pulse_tui.worker.jobs import AFTER_IMPORT, JOBS
    from pulse_tui.worker.scheduler import JobContext, resolve

    jobs = {j.name: j for j in JOBS}
    assert jobs["alerts"].interval == 60 and jobs["webhook-deliveries"].interval <= 10
    hook = webhook_jobs.after_import
    assert hook in AFTER_IMPORT
    created = endpoint(db, receiver.url, events=["import.failed", "alert.firing"])
    rules.create_rule(db, site_id=SITE, name="any", now_ms=NOW, notification_type="webhook",
                      notification_config={"endpoint_id": created.endpoint.id},
                      condition={"metric": "events", "window_minutes": 5, "comparison": "gt",
                                 "threshold": 0})
    add_events(db, [NOW - MIN])
    db.execute("INSERT INTO import_jobs (id, site_id, type, status, file_name, file_size, "
               "created_at, message) VALUES ('j2', ?, 'events', 'failed', 'b.csv', 3, ?, "
               "'missing column event_id')", (SITE, NOW))
    ctx = JobContext(conn=db, settings=None, clock=Clock(NOW))
    assert "1 firing" in resolve(jobs["alerts"].fn)(ctx)
    hook(ctx, ImportFinished("j2", "b.csv", "events", SITE, "failed", 0, 0, 0, None, None))
    assert "2 delivered" in resolve(jobs["webhook-deliveries"].fn)(ctx)
    assert sorted(verify(created.secret, r)["type"] for r in receiver.requests) == [
        "alert.firing", "import.failed"]


def test_stopping_sender_releases_unsent_claims(db: sqlite3.Connection,
                                                receiver: Receiver) -> None:
    endpoint(db, receiver.url)
    ids = [delivery.enqueue_event(db, SITE, "alert.firing", {"i": i}, NOW)[0] for i in range(3)]
    def first_recorded() -> bool:  # stop once the first delivery is recorded
        first = hooks.get_delivery(db, ids[0])
        return first is not None and first.status == "delivered"

    out = delivery.deliver_due(db, Clock(NOW), should_stop=first_recorded)
    assert out.startswith("1 webhook deliveries sent")
    states = [hooks.get_delivery(db, i) for i in ids]
    assert [d.status for d in states if d] == ["delivered", "pending", "pending"]
    assert [d.next_attempt_at for d in states[1:] if d] == [NOW, NOW]  # due again at once
    assert "2 delivered" in delivery.deliver_due(db, Clock(NOW))
    assert len(receiver.requests) == 3


def test_prune_keeps_pending_deliveries(db: sqlite3.Connection, receiver: Receiver) -> None:
    endpoint(db, receiver.url)
    [done] = delivery.enqueue_event(db, SITE, "alert.firing", {}, NOW)
    delivery.deliver_due(db, Clock(NOW))
    [waiting] = delivery.enqueue_event(db, SITE, "alert.resolved", {}, NOW)
    assert hooks.prune_deliveries(db, NOW + 1) == 1
    assert hooks.get_delivery(db, done) is None and hooks.get_delivery(db, waiting)
