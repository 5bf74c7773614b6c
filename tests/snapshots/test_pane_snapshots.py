"""Snapshots of every main pane (and the editors / sub-views behind them) at 80x24 and 160x48.

One fixed dataset, built once per module through the store functions and copied for each test:
~40 days of events on two sites, three cohorts, three alert rules with history and a webhook
endpoint, two import jobs and the worker's scheduler rows. Every timestamp comes from a fixed
Clock; ids that could show are fixed (random ones are never on screen); the webhook secret is
replaced by a fixed one so its masked tail is stable; the database sits in a folder named
``snapdb`` so the header shows ``snapdb/pulse.db`` and no tmp path. No worker, no change watcher;
each test waits for its pane's workers to have drawn a visible result before the screenshot.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, OptionList, Static, TextArea

from pulse_tui.alerts import engine
from pulse_tui.clock import Clock, day_start_ms, parse_instant
from pulse_tui.config import Settings
from pulse_tui.ingest.importer import import_file
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import alerts as alerts_sql
from pulse_tui.store import cohorts as cohorts_sql
from pulse_tui.store import scheduler as scheduler_sql
from pulse_tui.store import webhooks as webhooks_sql
from pulse_tui.store.cohorts import create_static_cohort
from pulse_tui.store.connection import connect
from pulse_tui.store.retention import snapshot_all
from pulse_tui.tui.app import make_app
from pulse_tui.tui.screens.alert_editor import AlertEditorScreen
from pulse_tui.tui.screens.alerts import AlertsScreen
from pulse_tui.tui.screens.charts import ChartsScreen
from pulse_tui.tui.screens.cohort_editor import CohortEditorScreen
from pulse_tui.tui.screens.cohorts import CohortsScreen
from pulse_tui.tui.screens.jobs import JobsScreen
from pulse_tui.tui.screens.retention import RetentionScreen
from pulse_tui.tui.screens.site_picker import SitePickerScreen
from pulse_tui.tui.screens.webhooks import WebhooksScreen

NOW = parse_instant("2026-11-25T12:00:00Z")  # a Wednesday
HOUR = 3_600_000
DAY = 24 * HOUR
TODAY = date(2026, 11, 25)
N_DAYS = 40
SIZES = [(80, 24), (160, 48)]
SIZE_IDS = [f"{w}x{h}" for w, h in SIZES]

SITES = ("acme-web", "shop")
TYPES = ("pageview", "pageview", "pageview", "signup", "click", "pageview", "purchase",
         "login")
PATHS = ("/", "/pricing", "/features/cohorts", "/blog/sqlite-is-enough", "/checkout/done",
         "/docs/getting-started/install-on-a-small-vps")
COUNTRIES = ("US", "DE", "FR", "GB", "JP", "BR", "IN")
DEVICES = ("desktop", "mobile", "tablet")
REFERRERS = (None, "https://www.google.com/", None, "https://news.ycombinator.com/", None,
             "https://duckduckgo.com/")

CRITERIA_COHORT_ID = "coh-active-signups"
CRITERIA = {
    "type": "and",
    "conditions": [
        {"property": "event_type", "operator": "equals", "value": "signup"},
        {"type": "or", "conditions": [
            {"property": "country", "operator": "in", "value": ["US", "DE"]},
            {"property": "event_count", "operator": "gte", "value": 12},
        ]},
    ],
}
FIXED_SECRET = "whsec_" + "Q" * 36 + "Zk7p"


# ---------------------------------------------------------------------------- fixed data
def new_users(s: int, d: int) -> int:
    return 1 + (d * 7 + s) % (4 - s)


def fixed_events() -> list[NewEvent]:
    """Every hour of 40 days on two sites (today up to 11:xx): new users each day, some of
    them coming back one, two or three weeks later (so retention has something to show)."""
    events = []
    first_day = TODAY - timedelta(days=N_DAYS - 1)
    for s, site in enumerate(SITES):
        for d in range(N_DAYS):
            day = first_day + timedelta(days=d)
            start = day_start_ms(day)
            users = [f"{site[0]}u{d:02d}{j}" for j in range(new_users(s, d))]
            users += [f"{site[0]}u{d - k * 7:02d}{j}" for k in (1, 2, 3) if d - k * 7 >= 0
                      for j in range(new_users(s, d - k * 7)) if (d + j + k + s) % (k + 1)]
            for h in range(24):
                if start + h * HOUR >= NOW - HOUR + 45 * 60_000:
                    break
                busy = 2 if 9 <= h <= 17 else 0
                n = (1 + (d * 5 + h * 3) % 4 + busy + (d // 10)) // (1 + s)
                for i in range(max(1, n)):
                    user = users[(h + i) % len(users)]
                    u = int(user[2:])
                    events.append(NewEvent(
                        event_id=f"{site}-{d:02d}-{h:02d}-{i}",
                        site_id=site,
                        event_type=TYPES[(d + h + i) % len(TYPES)],
                        timestamp_ms=start + h * HOUR + i * 7 * 60_000,
                        session_id=f"{site}-s{d:02d}-{user}",
                        user_id=user,
                        url=f"https://{site}.example{PATHS[(h + i * 2) % len(PATHS)]}",
                        referrer=REFERRERS[(d + h) % len(REFERRERS)],
                        country=COUNTRIES[u % len(COUNTRIES)],
                        device_type=DEVICES[u % len(DEVICES)],
                    ))
    return events


USERS_CSV = (
    "user_id,site_id,name,email,company,plan\n"
    "au000,acme-web,Ada Lovelace,ada@example.com,Analytical Ltd,pro\n"
    "au001,acme-web,Grace Hopper,grace@example.com,Navy,team\n"
    ",acme-web,No Id,noid@example.com,Nowhere,free\n"
    "au010,acme-web,Alan Turing,alan@example.com,Bletchley,free\n"
    ",acme-web,Also No Id,,,\n"
    "au011,acme-web,Edsger Dijkstra,ewd@example.com,Eindhoven,pro\n"
)
BROKEN_EVENTS_CSV = "event_id,site_id,timestamp_ms\ne1,acme-web,1764000000000\n"


def build_db(db: Path, files: Path) -> None:
    clock = Clock(NOW)
    conn = connect(db)
    try:
        write_batch(conn, fixed_events(), NOW)

        # cohorts: a criteria cohort (fixed id: the editor opens it), a static one, an archived
        cohorts_sql.create_cohort(conn, clock, site_id="acme-web", name="Active signups",
                                  description="signed up; US/DE or heavy users",
                                  criteria=CRITERIA, cohort_id=CRITERIA_COHORT_ID)
        cohorts_sql.create_cohort(conn, clock, site_id="acme-web", name="October trial",
                                  criteria={"type": "and", "conditions": [
                                      {"property": "device_type", "operator": "equals",
                                       "value": "tablet"}]},
                                  status="archived", cohort_id="coh-october-trial")
        create_static_cohort(conn, "shop", "Win-back list",
                                   [f"su{d:02d}0" for d in range(0, 12)], NOW)

        # the worker's daily retention snapshot (acquisition weeks and every cohort); the pane
        # only computes on its own when the site has no snapshot at all
        snapshot_all(conn, clock)

        # webhook endpoint (the secret is random: replace it so the masked tail is fixed)
        created = webhooks_sql.create_endpoint(
            conn, site_id="acme-web", url="https://hooks.example.com/pulse/alerts",
            events=["alert.firing", "alert.resolved"], now_ms=NOW - 5 * HOUR)
        conn.execute("UPDATE webhook_endpoints SET secret = ? WHERE id = ?",
                     (FIXED_SECRET, created.endpoint.id))

        # alert rules, evaluated at fixed instants so state and history are fixed
        base = NOW - 6 * HOUR
        alerts_sql.create_rule(
            conn, site_id="acme-web", name="Busy hour",
            condition={"metric": "events", "window_minutes": 60, "comparison": "gt",
                       "threshold": 2,
                       "filter": {"type": "and", "conditions": [
                           {"property": "event_type", "operator": "in",
                            "value": ["pageview", "click"]}]}},
            notification_type="webhook",
            notification_config={"endpoint_id": created.endpoint.id}, now_ms=base)
        alerts_sql.create_rule(
            conn, site_id="acme-web", name="Checkout drop",
            condition={"metric": "sessions", "window_minutes": 120, "comparison": "gte",
                       "threshold": 1},
            notification_type="log", notification_config={}, now_ms=base)
        alerts_sql.create_rule(
            conn, site_id="shop", name="Signups stalled",
            condition={"metric": "users", "window_minutes": 1440, "comparison": "lt",
                       "threshold": 2},
            notification_type="log", notification_config={}, now_ms=base)
        for k in range(5, -1, -1):  # 07:00 firing, 08:00 ok, 09:00.. firing
            engine.evaluate_rules(conn, Clock(NOW - k * HOUR))
        muted = next(r for r in alerts_sql.list_rules(conn) if r.name == "Checkout drop")
        alerts_sql.mute_rule(conn, muted.rule_id, now_ms=NOW - 30 * 60_000)

        # imports: one completed with rejected rows, one failed as a whole
        files.mkdir(parents=True, exist_ok=True)
        users = files / "users-2026-11-24.csv"
        users.write_text(USERS_CSV, encoding="utf-8")
        import_file(conn, users, kind="users", clock=Clock(NOW - 3 * HOUR),
                    job_id="job-users-1124")
        broken = files / "events-2026-11-25.csv"
        broken.write_text(BROKEN_EVENTS_CSV, encoding="utf-8")
        import_file(conn, broken, kind="events", clock=Clock(NOW - HOUR),
                    job_id="job-events-1125")

        # the worker's periodic jobs
        for name, ago, took, outcome, every in (
                ("alerts.evaluate", 1, 42, "3 rule(s), 0 changed", 1),
                ("cohorts.refresh", 30, 812, "2 cohort(s) refreshed", 60),
                ("retention.snapshot", 240, 1530, "retention: 3 cohort(s), 39 week row(s)",
                 1440),
                ("webhooks.prune", 600, 7, "0 deliveries pruned", 1440)):
            scheduler_sql.record_run(conn, name, last_run_at=NOW - ago * 60_000,
                                     duration_ms=took, outcome=outcome,
                                     next_run_at=NOW - ago * 60_000 + every * 60_000)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def built_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("panes")
    db = root / "pulse.db"
    build_db(db, root / "files")
    return db


@pytest.fixture
def snap_settings(built_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A private copy of the built database in ./snapdb/pulse.db (panes may write to it)."""
    monkeypatch.chdir(tmp_path)
    folder = Path("snapdb")
    folder.mkdir()
    db = folder / "pulse.db"
    src = sqlite3.connect(built_db)
    dst = sqlite3.connect(db)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return Settings(db=db, import_dir=folder / "import", export_dir=folder / "exports",
                    log_file=folder / "pulse-tui.log", config_file=folder / "config.toml")


# ---------------------------------------------------------------------------- helpers
async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause()
        try:
            ready = predicate()
        except Exception:  # noqa: BLE001 - widget not mounted yet: keep polling
            ready = False
        if ready:
            break
        if time.monotonic() > deadline:
            raise AssertionError("screen not ready")
        await asyncio.sleep(0.02)
    await pilot.pause()


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def rows(app, selector: str) -> int:
    return app.screen.query_one(selector, DataTable).row_count


async def no_blinking_cursors(pilot) -> None:
    """A blinking cursor would be on or off depending on when the screenshot is taken."""
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    for widget in pilot.app.screen.query(TextArea):
        widget.cursor_blink = False
    await pilot.pause()


def build_app(settings: Settings):
    return make_app(settings, clock=Clock(NOW), worker=False, watch_changes=False)


async def open_pane(pilot, key: str, screen_type: type) -> None:
    await wait_for(pilot, lambda: pilot.app.screen.id == "pane-live")
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, screen_type))


# ---------------------------------------------------------------------------- panes
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_charts_pane(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await open_pane(pilot, "2", ChartsScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen.data is not None)
        # The first load can run before the 160-column layout (two panels a row) is applied,
        # and the pane sizes its x ticks and label column from the width at load time; the
        # change notification (what another writer would cause) reloads at the settled size.
        first = screen.data
        app.notify_data_changed()
        await wait_for(pilot, lambda: screen.data is not first
                       and rows(app, "#table-types") > 0 and rows(app, "#table-top") > 0
                       and "events" in text_of(app, "#charts-totals"))

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_cohorts_pane(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await open_pane(pilot, "3", CohortsScreen)
        await wait_for(pilot, lambda: rows(app, "#cohorts-table") == 3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_cohort_editor(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await open_pane(pilot, "3", CohortsScreen)
        await wait_for(pilot, lambda: rows(app, "#cohorts-table") == 3)
        await pilot.press("enter")  # the cursor is on "Active signups" (names sort first)
        await wait_for(pilot, lambda: isinstance(app.screen, CohortEditorScreen))
        assert app.screen.cohort.cohort_id == CRITERIA_COHORT_ID
        await wait_for(pilot, lambda: app.screen.preview_count is not None
                       and "would match" in text_of(app, "#preview-count"))
        await no_blinking_cursors(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_retention_pane(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await open_pane(pilot, "4", RetentionScreen)
        await wait_for(pilot, lambda: app.screen.grid is not None
                       and rows(app, "#retention-table") > 1
                       and "captured 2" in text_of(app, "#retention-title"))

    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def _alerts_ready(pilot) -> None:
    app = pilot.app
    await open_pane(pilot, "5", AlertsScreen)
    await wait_for(pilot, lambda: rows(app, "#rules-table") == 3
                   and rows(app, "#history-table") > 0
                   and text_of(app, "#history-title").startswith("History of")
                   and app.firing_alerts == 1)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_alerts_pane(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await _alerts_ready(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_alert_editor(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await _alerts_ready(pilot)
        await pilot.press("enter")  # the cursor is on "Busy hour" (names sort first)
        await wait_for(pilot, lambda: isinstance(app.screen, AlertEditorScreen))
        assert app.screen.rule.name == "Busy hour"
        await wait_for(pilot, lambda: "backtest" in app.screen.preview_text)
        await no_blinking_cursors(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_webhooks_view(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await _alerts_ready(pilot)
        await pilot.press("w")  # all sites shown: it asks which site's endpoints
        await wait_for(pilot, lambda: isinstance(app.screen, SitePickerScreen))
        options = app.screen.query_one(OptionList)
        options.highlighted = next(i for i in range(options.option_count)
                                   if options.get_option_at_index(i).id == "acme-web")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, WebhooksScreen))
        await wait_for(pilot, lambda: rows(app, "#endpoints-table") == 1
                       and rows(app, "#deliveries-table") > 0)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_jobs_pane(snap_compare, snap_settings: Settings, size: tuple[int, int]) -> None:
    app = build_app(snap_settings)

    async def run_before(pilot) -> None:
        await open_pane(pilot, "6", JobsScreen)
        await wait_for(pilot, lambda: rows(app, "#imports-table") == 2
                       and rows(app, "#scheduler-table") == 4)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


# ---------------------------------------------------------------------------- the data itself
def test_fixed_data_is_what_the_snapshots_show(snap_settings: Settings) -> None:
    """Guards the fixture: the snapshots only mean something if the data is all there."""
    conn = sqlite3.connect(snap_settings.db)
    try:
        states = dict(conn.execute("SELECT name, state || '/' || status FROM alert_rules"))
        assert states == {"Busy hour": "firing/active", "Checkout drop": "firing/muted",
                          "Signups stalled": "ok/active"}
        assert conn.execute("SELECT count(*) FROM alert_history").fetchone()[0] >= 3
        assert conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0] >= 1
        jobs = dict(conn.execute("SELECT id, status FROM import_jobs"))
        assert jobs == {"job-users-1124": "completed", "job-events-1125": "failed"}
        assert conn.execute("SELECT failed_records FROM import_jobs WHERE id = ?",
                            ("job-users-1124",)).fetchone()[0] == 2
        kinds = dict(conn.execute("SELECT name, kind || '/' || status FROM cohorts"))
        assert kinds == {"Active signups": "criteria/active",
                         "October trial": "criteria/archived",
                         "Win-back list": "static/active"}
        days = conn.execute("SELECT count(DISTINCT timestamp_ms / 86400000) FROM events "
                            "WHERE site_id = 'acme-web'").fetchone()[0]
        assert days == N_DAYS
    finally:
        conn.close()


# ---------------------------------------------------------------------------- plain consoles
async def _charts_ready(pilot) -> None:
    app = pilot.app
    await open_pane(pilot, "2", ChartsScreen)
    screen = app.screen
    await wait_for(pilot, lambda: screen.data is not None)
    first = screen.data
    app.notify_data_changed()
    await wait_for(pilot, lambda: screen.data is not first and rows(app, "#table-types") > 0
                   and rows(app, "#table-top") > 0 and "events" in text_of(app, "#charts-totals"))


async def _retention_ready(pilot) -> None:
    app = pilot.app
    await open_pane(pilot, "4", RetentionScreen)
    await wait_for(pilot, lambda: app.screen.grid is not None
                   and rows(app, "#retention-table") > 1
                   and "captured 2" in text_of(app, "#retention-title"))


async def _jobs_ready(pilot) -> None:
    app = pilot.app
    await open_pane(pilot, "6", JobsScreen)
    await wait_for(pilot, lambda: rows(app, "#imports-table") == 2
                   and rows(app, "#scheduler-table") == 4)


READY = {"charts": _charts_ready, "retention": _retention_ready, "alerts": _alerts_ready,
         "jobs": _jobs_ready}


@pytest.mark.parametrize("pane", list(READY))
def test_ascii_fallback(snap_compare, snap_settings: Settings, pane: str) -> None:
    """`ascii = true` (automatic on TERM=linux): charts, glyphs and borders in ASCII."""
    from dataclasses import replace

    app = build_app(replace(snap_settings, ascii=True))
    assert snap_compare(app, terminal_size=(80, 24), run_before=READY[pane])


@pytest.mark.parametrize("pane", ["charts", "retention", "alerts"])
def test_no_color(snap_compare, snap_settings: Settings, pane: str,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR: states carried by bold, reverse and glyphs in the terminal's own colours."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = build_app(snap_settings)
    assert snap_compare(app, terminal_size=(80, 24), run_before=READY[pane])
