"""Frozen dataclasses for alerts: rules, history entries, evaluations and backtests (no SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pulse_tui.alerts.conditions import AlertCondition
from pulse_tui.clock import format_ms


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One ``alert_rules`` row. ``condition`` is None when the stored JSON is invalid
    (``condition_error`` says why; evaluation puts such a rule in state ``error``)."""

    rule_id: str
    site_id: str
    name: str
    condition: AlertCondition | None
    condition_json: str
    notification_type: str
    notification_config: dict[str, Any]
    status: str            # active | muted
    state: str             # ok | firing | error
    last_value: float | None
    last_evaluated_at: int | None
    last_error: str | None
    created_at: int
    updated_at: int
    condition_error: str | None = None

    @property
    def muted(self) -> bool:
        return self.status == "muted"

    @property
    def threshold(self) -> float | None:
        return self.condition.threshold if self.condition else None

    def describe(self) -> str:
        if self.condition is None:
            return f"invalid condition: {self.condition_error}"
        return self.condition.describe()

    def value_text(self) -> str:
        """``130 / 100`` or ``+62.5 % / +50 %`` (value against threshold) for the list."""
        if self.condition is None:
            return "—"
        if self.condition.is_change:
            v = "—" if self.last_value is None else f"{self.last_value:+.1f} %"
            return f"{v} / {self.condition.threshold:+g} %"
        v = "—" if self.last_value is None else f"{self.last_value:g}"
        return f"{v} / {self.condition.threshold:g}"


@dataclass(frozen=True, slots=True)
class AlertHistoryEntry:
    """A change of state of a rule (``alert_history``)."""

    id: int
    rule_id: str
    at: int
    value: float | None
    threshold: float | None
    state: str
    message: str | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one evaluation of one rule found and did."""

    rule_id: str
    name: str
    at: int
    value: float | None            # None: undefined (change_pct with a previous window of 0)
    state_before: str
    state_after: str
    notified: str | None = None    # alert.firing / alert.resolved when a notification went out
    error: str | None = None
    message: str = ""

    @property
    def changed(self) -> bool:
        return self.state_before != self.state_after


@dataclass(frozen=True, slots=True)
class BacktestPoint:
    at: int                 # the hour boundary (epoch ms) the rule is evaluated at
    value: float | None     # None: undefined (change_pct with a previous window of 0)
    firing: bool


@dataclass(frozen=True, slots=True)
class FiringPeriod:
    start: int
    end: int | None         # None: still firing at the end of the backtest
    peak: float | None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """How often and when a condition would have fired, evaluated at each hour boundary."""

    site_id: str
    days: int
    window_hours: int
    method: str                     # how the values were computed (rollups or raw events)
    points: tuple[BacktestPoint, ...] = field(default_factory=tuple)
    firings: tuple[FiringPeriod, ...] = field(default_factory=tuple)
    data_from: int | None = None    # earliest hour with data the backtest could read

    @property
    def fire_count(self) -> int:
        return len(self.firings)

    @property
    def firing_hours(self) -> int:
        return sum(1 for p in self.points if p.firing)

    def summary(self) -> str:
        if not self.points:
            return "no hours to evaluate"
        if not self.firings:
            return (f"would not have fired in the last {self.days} days "
                    f"({len(self.points)} hourly checks)")
        last = self.firings[-1]
        times = "once" if self.fire_count == 1 else f"{self.fire_count} times"
        return (f"would have fired {times} in the last {self.days} days, firing "
                f"{self.firing_hours} of {len(self.points)} hours; last from "
                f"{format_ms(last.start, seconds=False)}"
                + ("" if last.end is None else f" to {format_ms(last.end, seconds=False)}")
                + ("" if last.end is not None else " (still firing)"))
