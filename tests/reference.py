"""Plain-Python references over raw events that the property and conformance tests hold
PULSE's queries to (SPEC section 8): no SQL, no shortcuts, written to be read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pulse_tui.models import NewEvent
from pulse_tui.report_models import NONE_LABEL


def ref_ranked(evs: Iterable[NewEvent], col: str) -> list[tuple[str, int, int]]:
    """(value, events, distinct users) per value of ``col`` (a missing value counts under
    NONE_LABEL), most events first, then by value."""
    events: dict[str, int] = defaultdict(int)
    users: dict[str, set[str]] = defaultdict(set)
    for e in evs:
        v = getattr(e, col) or NONE_LABEL
        events[v] += 1
        if e.user_id is not None:
            users[v].add(e.user_id)
    return [(v, events[v], len(users[v])) for v in sorted(events, key=lambda v: (-events[v], v))]


def ref_funnel(evs: Iterable[NewEvent], steps: tuple[str, ...]) -> list[tuple[int, str, int]]:
    """Ordered funnel: a user reaches step k with the first event of that type strictly after
    the time they reached step k-1."""
    rows = sorted(evs, key=lambda e: e.timestamp_ms)
    times: dict[str, int] | None = None
    out = []
    for k, step in enumerate(steps, start=1):
        nxt: dict[str, int] = {}
        for e in rows:
            if e.event_type != step or e.user_id is None or e.user_id in nxt:
                continue
            if times is None or (e.user_id in times and e.timestamp_ms > times[e.user_id]):
                nxt[e.user_id] = e.timestamp_ms
        times = nxt
        out.append((k, step, len(nxt)))
    return out
