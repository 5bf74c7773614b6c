"""Realistic synthetic traffic: sites, users who return over weeks, sessions of several events.

Used by ``pulse-tui simulate``, the demo database and the benchmarks. Pure generation here;
writing goes through the events backend (``write_batch``: ``EventsBackend.write_events``) so
sessions and rollups stay exact wherever the events live.
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

from pulse_tui.backend.interface import Backends
from pulse_tui.backend.wiring import backends_on
from pulse_tui.models import NewEvent
from pulse_tui.store.events import upsert_sites

DAY_MS = 86_400_000

SITES: tuple[tuple[str, str, str], ...] = (
    ("acme-web", "Acme marketing site", "www.acme.example"),
    ("acme-app", "Acme web app", "app.acme.example"),
    ("acme-blog", "Acme engineering blog", "blog.acme.example"),
    ("shop", "Acme shop", "shop.acme.example"),
)

COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 24), ("GB", 8), ("DE", 8), ("FR", 6), ("CA", 5), ("IN", 7), ("BR", 4), ("JP", 4),
    ("NL", 3), ("ES", 3), ("IT", 3), ("AU", 3), ("SE", 2), ("PL", 2), ("MX", 2), ("KR", 2),
    ("CH", 1.5), ("BE", 1.2), ("AT", 1), ("NO", 1), ("DK", 1), ("FI", 0.8), ("IE", 0.8),
    ("PT", 0.8), ("CZ", 0.7), ("AR", 0.7), ("ZA", 0.6), ("NG", 0.6), ("SG", 0.6), ("NZ", 0.5),
    ("TR", 0.5), ("UA", 0.5), ("IL", 0.4), ("ID", 0.4), ("VN", 0.3),
)
DEVICES: tuple[tuple[str, float], ...] = (("desktop", 55), ("mobile", 38), ("tablet", 7))
REFERRERS: tuple[tuple[str | None, float], ...] = (
    (None, 40),
    ("https://www.google.com/", 25),
    ("https://duckduckgo.com/", 4),
    ("https://news.ycombinator.com/", 6),
    ("https://www.reddit.com/r/analytics/", 5),
    ("https://twitter.com/", 4),
    ("https://www.linkedin.com/", 3),
    ("https://github.com/", 5),
    ("https://newsletter.example.com/issue-42", 3),
    ("https://www.bing.com/", 3),
    ("https://stackoverflow.com/", 2),
)
PATHS: dict[str, tuple[str, ...]] = {
    "acme-web": ("/", "/pricing", "/features", "/features/cohorts", "/features/retention",
                 "/customers", "/about", "/contact", "/signup", "/login", "/docs"),
    "acme-app": ("/dashboard", "/reports/daily", "/reports/retention", "/cohorts",
                 "/cohorts/new", "/alerts", "/settings", "/settings/billing", "/login",
                 "/projects/alpha", "/projects/beta"),
    "acme-blog": ("/", "/posts/sqlite-at-scale", "/posts/cohort-analysis-101",
                  "/posts/why-we-left-the-cloud", "/posts/terminal-dashboards",
                  "/posts/weekly-retention", "/tags/analytics", "/about"),
    "shop": ("/", "/products/t-shirt", "/products/mug", "/products/stickers",
             "/products/hoodie", "/cart", "/checkout", "/checkout/done", "/search", "/login"),
}
CUSTOM_EVENTS = ("click", "search", "video_play", "add_to_cart", "share", "download")
PLANS: tuple[tuple[str, float], ...] = (("free", 60), ("starter", 20), ("pro", 14),
                                        ("enterprise", 6))
COMPANIES = ("Initech", "Globex", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises",
             "Acme Corp", "Soylent", "Vandelay", "Wonka", "Tyrell", "Cyberdyne", "Aperture",
             "Massive Dynamic", "Pied Piper", "Dunder Mifflin", "Oceanic", "Monarch")
FIRST = ("ada", "alan", "grace", "linus", "ken", "dennis", "barbara", "margaret", "edsger",
         "donald", "frances", "john", "radia", "guido", "yukihiro", "sophie", "tim", "anita")
LAST = ("lovelace", "turing", "hopper", "torvalds", "thompson", "ritchie", "liskov",
        "hamilton", "dijkstra", "knuth", "allen", "backus", "perlman", "rossum", "matsumoto")


def _cum(weights: tuple[tuple[object, float], ...]) -> tuple[list[object], list[float]]:
    values = [v for v, _ in weights]
    total = 0.0
    cum = []
    for _, w in weights:
        total += w
        cum.append(total)
    return values, cum


@dataclass
class SimUser:
    user_id: str
    site_id: str
    first_day: int          # UTC day number of the first visit
    stickiness: float       # chance of coming back on a given day, decaying over weeks
    country: str
    device: str
    plan: str
    company: str | None
    name: str
    email: str


@dataclass
class _OpenSession:
    session_id: str
    site_id: str
    user: SimUser | None
    country: str
    device: str
    referrer: str | None
    remaining: int
    last_ms: int


@dataclass
class Simulator:
    """Deterministic for a given seed; ``history`` for the past, ``live`` for now."""

    seed: int = 42
    sites: int = len(SITES)
    users_per_site_day: float = 25.0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._countries = _cum(COUNTRIES)
        self._devices = _cum(DEVICES)
        self._referrers = _cum(REFERRERS)
        self._plans = _cum(PLANS)
        self._users: dict[str, list[SimUser]] = {s[0]: [] for s in self.site_rows()}
        self._counter = 0
        self._open: list[_OpenSession] = []

    # ---------------------------------------------------------------- helpers
    def site_rows(self) -> tuple[tuple[str, str, str], ...]:
        return SITES[: max(1, min(self.sites, len(SITES)))]

    def _pick(self, table: tuple[list[object], list[float]]) -> object:
        values, cum = table
        return self.rng.choices(values, cum_weights=cum, k=1)[0]

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self.seed:x}-{self._counter:08x}{self.rng.getrandbits(24):06x}"

    def _new_user(self, site_id: str, day: int) -> SimUser:
        n = len(self._users[site_id]) + 1
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        company = self.rng.choice(COMPANIES) if self.rng.random() < 0.7 else None
        user = SimUser(
            user_id=f"{site_id}-u{n:06d}",
            site_id=site_id,
            first_day=day,
            stickiness=self.rng.betavariate(2, 5),
            country=str(self._pick(self._countries)),
            device=str(self._pick(self._devices)),
            plan=str(self._pick(self._plans)),
            company=company,
            name=f"{first.title()} {last.title()}",
            email=f"{first}.{last}{n}@{(company or 'mail').lower().replace(' ', '')}.example",
        )
        self._users[site_id].append(user)
        return user

    def users(self) -> list[SimUser]:
        return [u for users in self._users.values() for u in users]

    # ---------------------------------------------------------------- sessions
    def _session(self, site_id: str, user: SimUser | None, start_ms: int,
                 is_first_visit: bool) -> list[NewEvent]:
        rng = self.rng
        sid = self._next_id("s")
        n = 1 + min(int(rng.expovariate(1 / 4.0)), 30)
        country = user.country if user else str(self._pick(self._countries))
        device = user.device if user else str(self._pick(self._devices))
        referrer = self._pick(self._referrers) if is_first_visit or rng.random() < 0.5 else None
        paths = PATHS[site_id]
        host = dict((s[0], s[2]) for s in SITES)[site_id]
        events: list[NewEvent] = []
        t = start_ms
        for i in range(n):
            if i == 0:
                etype = "pageview"
            elif is_first_visit and user is not None and i == 1:
                etype = "signup"
            else:
                r = rng.random()
                if r < 0.72:
                    etype = "pageview"
                elif r < 0.80 and user is not None:
                    etype = "login"
                elif r < 0.84 and user is not None:
                    etype = "purchase"
                else:
                    etype = rng.choice(CUSTOM_EVENTS)
            path = paths[min(int(rng.expovariate(1 / 2.5)), len(paths) - 1)]
            events.append(NewEvent(
                event_id=self._next_id("e"),
                site_id=site_id,
                event_type=etype,
                timestamp_ms=t,
                session_id=sid,
                user_id=user.user_id if user else None,
                url=f"https://{host}{path}",
                referrer=referrer if i == 0 else None,
                country=country,
                device_type=device,
            ))
            t += int(rng.expovariate(1 / 40_000)) + 1_000
        return events

    def day_events(self, day: int, *, scale: float = 1.0) -> list[NewEvent]:
        """All events of one UTC day number: new users, returning users, anonymous visits."""
        rng = self.rng
        out: list[NewEvent] = []
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        season = 0.65 if weekday >= 5 else 1.0
        day_start = day * DAY_MS
        for site_id, _, _ in self.site_rows():
            site_scale = {"acme-web": 1.0, "acme-app": 0.8, "acme-blog": 0.5, "shop": 0.6}.get(
                site_id, 0.5)
            new_users = max(1, int(rng.gauss(self.users_per_site_day, 3) * season * site_scale
                                   * scale))
            for _ in range(new_users):
                user = self._new_user(site_id, day)
                out.extend(self._session(site_id, user, day_start + self._time_of_day(),
                                         True))
            for user in self._users[site_id]:
                age = day - user.first_day
                if age <= 0:
                    continue
                p = user.stickiness * (0.25 + 0.75 * math.exp(-age / 21.0)) * season
                if rng.random() < p:
                    out.extend(self._session(site_id, user, day_start + self._time_of_day(),
                                             False))
            for _ in range(int(new_users * 1.5)):
                out.extend(self._session(site_id, None, day_start + self._time_of_day(), True))
        return out

    def _time_of_day(self) -> int:
        hour = min(23.99, max(0.0, self.rng.gauss(14.0, 4.5)))
        return int(hour * 3_600_000)

    def history(self, first_day: int, last_day: int, *, scale: float = 1.0
                ) -> Iterator[list[NewEvent]]:
        """Per-day batches for the day numbers first_day..last_day (inclusive)."""
        for day in range(first_day, last_day + 1):
            yield self.day_events(day, scale=scale)

    # ---------------------------------------------------------------- live traffic
    def live(self, now_ms: int, count: int) -> list[NewEvent]:
        """``count`` events stamped around ``now_ms``, continuing open sessions."""
        rng = self.rng
        out: list[NewEvent] = []
        day = now_ms // DAY_MS
        while len(out) < count:
            if self._open and rng.random() < 0.75:
                s = rng.choice(self._open)
                etype = "pageview" if rng.random() < 0.75 else rng.choice(
                    ("login", "purchase", *CUSTOM_EVENTS) if s.user else CUSTOM_EVENTS)
                host = dict((x[0], x[2]) for x in SITES)[s.site_id]
                paths = PATHS[s.site_id]
                ts = max(now_ms, s.last_ms + 1)
                out.append(NewEvent(
                    event_id=self._next_id("e"), site_id=s.site_id, event_type=etype,
                    timestamp_ms=ts, session_id=s.session_id,
                    user_id=s.user.user_id if s.user else None,
                    url=f"https://{host}{rng.choice(paths)}", referrer=None,
                    country=s.country, device_type=s.device,
                ))
                s.last_ms = ts
                s.remaining -= 1
                if s.remaining <= 0:
                    self._open.remove(s)
                continue
            site_id = rng.choice([x[0] for x in self.site_rows()])
            users = self._users[site_id]
            if users and rng.random() < 0.55:
                user: SimUser | None = rng.choice(users)
                first = False
            elif rng.random() < 0.5:
                user = self._new_user(site_id, day)
                first = True
            else:
                user, first = None, True
            first_events = self._session(site_id, user, now_ms, first)
            head, rest = first_events[0], len(first_events) - 1
            out.append(head)
            if rest > 0:
                self._open.append(_OpenSession(
                    head.session_id, site_id, user, head.country or "US",
                    head.device_type or "desktop", head.referrer, rest, now_ms))
            if len(self._open) > 200:
                self._open.pop(0)
        return out


# -------------------------------------------------------------------- writing
Target = Backends | sqlite3.Connection  # a bare connection: events in that SQLite file


def write_batch(target: Target, events: list[NewEvent], now_ms: int) -> int:
    """Store events (their sites registered) and fold them into sessions and rollups, wherever
    the events live (``EventsBackend.write_events``); returns how many were new."""
    return int(backends_on(target).events.write_events(events, now_ms))


def write_sites(target: Target, sim: Simulator, now_ms: int) -> None:
    upsert_sites(backends_on(target).conn, sim.site_rows(), now_ms)


def write_users(target: Target, users: list[SimUser], now_ms: int) -> None:
    """Add the simulated users' ``users`` rows (plans, companies); stored ones are kept."""
    rows = [(u.user_id, u.site_id, u.name, u.email, u.company, u.plan, u.first_day * DAY_MS,
             now_ms) for u in users]
    backends_on(target).events.write_new_users(rows)
