"""The one source of "now": real time, or the fixed instant in PULSE_NOW."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime

from pulse_tui.errors import UsageError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
WEEK_MS = 7 * DAY_MS


def parse_instant(text: str) -> int:
    """Epoch milliseconds from an integer string (ms) or ISO-8601 (naive means UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        ms = int(text)
        if not 0 <= ms < MAX_INSTANT_MS:
            raise UsageError(f"not a time: {text!r} (epoch milliseconds between 1970 and 9999)")
        return ms
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"not a time: {text!r} (use epoch milliseconds or ISO-8601)") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


MAX_INSTANT_MS = 253_402_300_800_000  # 10000-01-01: datetime's limit


class Clock:
    """Gives "now" in epoch milliseconds; honours PULSE_NOW unless a fixed value is given."""

    def __init__(self, fixed_ms: int | None = None) -> None:
        self._fixed = fixed_ms

    @classmethod
    def from_env(cls) -> Clock:
        raw = os.environ.get("PULSE_NOW", "").strip()
        if raw:
            try:
                return cls(parse_instant(raw))
            except UsageError as exc:
                raise UsageError(f"PULSE_NOW: {exc}") from exc
        return cls()

    @property
    def is_fixed(self) -> bool:
        return self._fixed is not None

    def now_ms(self) -> int:
        if self._fixed is not None:
            return self._fixed
        return time.time_ns() // 1_000_000

    def today(self) -> date:
        return day_of(self.now_ms())


def day_of(ms: int) -> date:
    """The UTC date holding the instant ``ms``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def day_start_ms(day: date) -> int:
    """Epoch ms of 00:00 UTC on ``day``."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def format_ms(ms: int | None, *, seconds: bool = True) -> str:
    """A UTC timestamp for display, e.g. ``2026-11-25 14:03:07``."""
    if ms is None:
        return "—"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(fmt)
    except (TypeError, ValueError, OverflowError, OSError):  # another program's odd value
        return f"(not a time: {ms!r})"[:80]
