"""Frozen dataclasses the reports return (rows of ``pulse-tui report`` and the charts pane)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pulse_tui.clock import Clock
from pulse_tui.errors import UsageError

NONE_LABEL = "(none)"
DEFAULT_DAYS = 30


# the longest --from .. --to of a report or export (a daily report prints every day:
# 0001-01-01 .. 9999-12-31 was 3.6 million rows, and retention over it took 43 s and 1.9 GB)
MAX_RANGE_DAYS = 73_050  # 200 years


@dataclass(frozen=True, slots=True)
class DateRange:
    """UTC days ``start`` .. ``end``, both included."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def first_day(self) -> int:
        """UTC day number (timestamp_ms // 86_400_000) of ``start``."""
        return self.start.toordinal() - _EPOCH_ORDINAL

    @property
    def last_day(self) -> int:
        return self.end.toordinal() - _EPOCH_ORDINAL

    @property
    def start_ms(self) -> int:
        return self.first_day * 86_400_000

    @property
    def end_ms(self) -> int:
        """The last millisecond of ``end`` (inclusive bound)."""
        return (self.last_day + 1) * 86_400_000 - 1

    def previous(self) -> DateRange:
        """The period of equal length just before this one (for change arrows)."""
        return DateRange(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def each_day(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(max(0, self.days))]


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class DailyRow:
    day: date
    events: int
    users: int
    sessions: int


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    event_type: str
    events: int
    users: int


@dataclass(frozen=True, slots=True)
class TopRow:
    """One value of a top-N list; NULL or empty values carry the label ``(none)``."""

    value: str
    events: int
    users: int


@dataclass(frozen=True, slots=True)
class FunnelRow:
    step: int
    event_type: str
    users: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Events, exact distinct users and distinct sessions of a site over a range."""

    range: DateRange
    events: int
    users: int
    sessions: int


@dataclass(frozen=True, slots=True)
class RangeTotals:
    """A range's totals and those of the period of equal length before it.

    ``previous_until_ms``: set when the range ends today (a day still running), so the previous
    period was counted only up to the same time of its last day (like with like)."""

    current: Totals
    previous: Totals
    previous_until_ms: int | None = None

    @staticmethod
    def change_pct(now: int, before: int) -> float | None:
        """Percent change, None when the previous value is 0 (undefined)."""
        if before == 0:
            return None
        return (now - before) * 100.0 / before


# ------------------------------------------------------------------ dates and ranges
def parse_day(text: str, option: str = "date") -> date:
    """A ``YYYY-MM-DD`` date, or a UsageError naming the option."""
    try:
        if len(text.strip()) != 10:
            raise ValueError(text)
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option}: not a date: {text!r} (use YYYY-MM-DD)") from None


def default_range(clock: Clock, days: int = DEFAULT_DAYS) -> DateRange:
    """today-(days-1) .. today, today from the clock (PULSE_NOW)."""
    today = clock.today()
    return DateRange(today - timedelta(days=days - 1), today)


def make_range(clock: Clock, start: str | date | None = None, end: str | date | None = None
               ) -> DateRange:
    """--from/--to as given (dates or text), defaults today-29 .. today; from > to is an error.

    Only --from: from .. today; only --to: (to-29) .. to.
    """
    s = parse_day(start, "--from") if isinstance(start, str) else start
    e = parse_day(end, "--to") if isinstance(end, str) else end
    if e is None:
        e = clock.today()
    if s is None:
        s = e - timedelta(days=DEFAULT_DAYS - 1)
    if s > e:
        raise UsageError(f"--from {s.isoformat()} is after --to {e.isoformat()}")
    span = (e - s).days + 1
    if span > MAX_RANGE_DAYS:
        raise UsageError(f"--from {s.isoformat()} .. --to {e.isoformat()} spans {span:,} days; "
                         f"a report covers at most {MAX_RANGE_DAYS:,} days")
    return DateRange(s, e)
