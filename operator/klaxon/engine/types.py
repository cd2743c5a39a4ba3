"""Plain, frozen value types of the evaluation engine (SEMANTICS.md §1, §3-§5, §7).

The engine never sees the pydantic API models: an adapter renders an AlertRule into an
`EngineRule`, so the engine stays a pure core that the evaluator and `klaxon preview` share.
Durations are seconds (float), times are unix seconds (float, UTC).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args, overload

import numpy as np
import numpy.typing as npt

Kind = Literal["threshold", "dynamic", "absence", "composite"]
Operator = Literal["gt", "gte", "lt", "lte", "eq", "ne"]
Direction = Literal["above", "below", "both"]
Mode = Literal["percentage", "stddev", "envelope"]
Aggregation = Literal["avg", "min", "max", "sum", "count", "last", "p50", "p90", "p95", "p99"]
NoDataPolicy = Literal["NoData", "KeepLast", "Alerting", "OK"]
ErrorPolicy = Literal["Error", "KeepLast"]
Logic = Literal["all", "any"]
Level = Literal["warning", "critical"]
State = Literal["Inactive", "Pending", "Firing", "Recovering", "NoData", "Error", "Muted", "Disabled"]
EvalStatus = Literal["ok", "no_data", "error"]

LEVELS: tuple[Level, ...] = get_args(Level)
#: Most severe first: critical is evaluated before warning (SEMANTICS §4).
LEVELS_BY_SEVERITY: tuple[Level, ...] = ("critical", "warning")
SEVERITY: Mapping[str, int] = {"warning": 1, "critical": 2}
STATES: tuple[State, ...] = get_args(State)
ALARM_STATES: frozenset[str] = frozenset({"Firing", "Recovering"})
WEEK_S = 7 * 86400.0


def iso(t: float | None) -> str | None:
    """ISO 8601 UTC with a `Z`, as the API and the CR status print times."""
    if t is None or not math.isfinite(t):
        return None
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _num(x: float | None) -> float | None:
    """JSON has no NaN: missing numbers become null."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


@dataclass(frozen=True)
class LevelSpec:
    """One alert level.

    On a threshold rule `threshold` is compared with the rule's operator, or `upper`/`lower`
    form a band. On a dynamic rule `threshold` overrides the tolerance (percentage, envelope)
    or multiplier (stddev) for this level, and `upper`/`lower` are guard rails that widen the band.
    """

    threshold: float | None = None
    upper: float | None = None
    lower: float | None = None
    for_s: float = 0.0
    required_violations: int = 1
    violation_window_s: float | None = None


@dataclass(frozen=True)
class DynamicSpec:
    """Baseline settings of a dynamic rule (SEMANTICS §3)."""

    mode: Mode = "stddev"
    tolerance_percent: float = 10.0
    stddev_multiplier: float = 3.0
    lookback_weeks: int = 4
    minimum_baseline_points: int = 1
    suppress_low_confidence: bool = True
    #: Width W of each weekly baseline window; None uses the rule's aggregation window.
    window_s: float | None = None


@dataclass(frozen=True)
class RecoverySpec:
    """Hysteresis: recover after `normal_count` normal evaluations and a quiet `window_s`."""

    normal_count: int = 1
    window_s: float | None = None
    #: Datadog-style recovery threshold: a point is normal only if `operator(x, threshold)` is false.
    threshold: float | None = None


@dataclass(frozen=True)
class ScheduleWindow:
    """`[start, end)` in local minutes; `days` (0 = Monday) names the day the window starts."""

    days: frozenset[int]
    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        if self.start_min == self.end_min:
            raise ValueError("schedule window: start equals end; use 00:00-24:00 for a whole day")
        if not 0 <= self.start_min < 1440 or not 0 < self.end_min <= 1440:
            raise ValueError("schedule window: start must be in [00:00, 24:00), end in (00:00, 24:00]")
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError("schedule window: days must be a non-empty subset of 0..6 (0 = Monday)")


@dataclass(frozen=True)
class Schedule:
    """When notifications may go out, in an IANA time zone (SEMANTICS §5)."""

    timezone: str
    windows: tuple[ScheduleWindow, ...]


@dataclass(frozen=True)
class EngineRule:
    """Everything the engine needs to evaluate one rule."""

    kind: Kind
    levels: Mapping[str, LevelSpec]
    operator: Operator = "gt"
    direction: Direction = "both"
    dynamic: DynamicSpec | None = None
    recovery: RecoverySpec = field(default_factory=RecoverySpec)
    interval_s: float = 60.0
    window_s: float = 300.0
    aggregation: Aggregation = "avg"
    no_data: NoDataPolicy = "NoData"
    on_error: ErrorPolicy = "Error"
    schedule: Schedule | None = None
    #: Time zone for counting baseline weeks; None falls back to the schedule's, then UTC.
    timezone: str | None = None
    offset_s: float = 0.0
    #: Composite rules: children's point violations are combined per timestamp by `logic`,
    #: then this rule's levels (for, N-of-M) and recovery apply.
    children: tuple[EngineRule, ...] = ()
    logic: Logic = "all"

    @property
    def baseline_timezone(self) -> str | None:
        if self.timezone is not None:
            return self.timezone
        return self.schedule.timezone if self.schedule is not None else None

    @property
    def ordered_levels(self) -> tuple[Level, ...]:
        """Configured levels, most severe first."""
        return tuple(lv for lv in LEVELS_BY_SEVERITY if lv in self.levels)


@dataclass(frozen=True)
class Transition:
    """A state change of one series; `notify` says whether it should be sent (before mute/cooldown)."""

    t: float
    from_state: State
    to_state: State
    level: Level | None
    reason: str
    from_level: Level | None = None
    notify: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "time": iso(self.t),
            "from": self.from_state,
            "to": self.to_state,
            "level": self.level,
            "fromLevel": self.from_level,
            "reason": self.reason,
            "notify": self.notify,
        }


@dataclass(frozen=True)
class SeriesState:
    """Everything `step` needs to continue a series; round-trips through a plain dict (CR status)."""

    state: State = "Inactive"
    level: Level | None = None
    #: When the current state was entered.
    since: float | None = None
    pending_since: float | None = None
    #: Per level: first evaluation of the current unbroken run of the windowed condition (for `for`).
    held_since: Mapping[str, float] = field(default_factory=dict)
    #: Per level with a violation window: times of point violations still inside the window.
    violations: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    last_violation_t: float | None = None
    #: Consecutive normal evaluations, capped at the rule's normalCount.
    normal_count: int = 0
    last_value: float | None = None
    last_eval_t: float | None = None
    missing_count: int = 0
    #: Reason of the last transition (e.g. MissingSeries, Recovered).
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "level": self.level,
            "since": self.since,
            "pendingSince": self.pending_since,
            "heldSince": dict(self.held_since),
            "violations": {k: list(v) for k, v in self.violations.items()},
            "lastViolation": self.last_violation_t,
            "normalCount": self.normal_count,
            "lastValue": self.last_value,
            "lastEvaluation": self.last_eval_t,
            "missingCount": self.missing_count,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SeriesState:
        state = d.get("state", "Inactive")
        level = d.get("level")
        if state not in STATES:
            raise ValueError(f"state: unknown state {state!r}")
        if level is not None and level not in LEVELS:
            raise ValueError(f"level: unknown level {level!r}")
        return cls(
            state=state,
            level=level,
            since=d.get("since"),
            pending_since=d.get("pendingSince"),
            held_since={str(k): float(v) for k, v in (d.get("heldSince") or {}).items()},
            violations={str(k): tuple(float(x) for x in v) for k, v in (d.get("violations") or {}).items()},
            last_violation_t=d.get("lastViolation"),
            normal_count=int(d.get("normalCount", 0)),
            last_value=d.get("lastValue"),
            last_eval_t=d.get("lastEvaluation"),
            missing_count=int(d.get("missingCount", 0)),
            reason=d.get("reason"),
        )


@dataclass(frozen=True)
class PointResult:
    """One evaluation of a replay (SEMANTICS §7)."""

    t: float
    value: float
    expected: float
    lower: float
    upper: float
    baseline_points: int
    low_confidence: bool
    is_violation: bool
    level: Level | None
    state: State
    is_alarm_active: bool
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "time": iso(self.t),
            "value": _num(self.value),
            "expected": _num(self.expected),
            "lower": _num(self.lower),
            "upper": _num(self.upper),
            "baselinePoints": self.baseline_points,
            "lowConfidence": self.low_confidence,
            "isViolation": self.is_violation,
            "level": self.level,
            "state": self.state,
            "isAlarmActive": self.is_alarm_active,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ReplaySummary:
    points: int
    violations: int
    #: Alarm episodes overlapping the range (one already active at `from` counts).
    alarms: int
    time_in_alarm_s: float
    low_confidence_points: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "violations": self.violations,
            "alarms": self.alarms,
            "timeInAlarmSeconds": self.time_in_alarm_s,
            "lowConfidencePoints": self.low_confidence_points,
        }


class Points(Sequence[PointResult]):
    """Replay points stored as columns (numpy), read as a sequence of `PointResult`.

    A month of one-minute points is ~43k rows; columns keep replay fast and plotting direct.
    """

    def __init__(
        self,
        t: npt.NDArray[np.float64],
        value: npt.NDArray[np.float64],
        expected: npt.NDArray[np.float64],
        lower: npt.NDArray[np.float64],
        upper: npt.NDArray[np.float64],
        baseline_points: npt.NDArray[np.int64],
        low_confidence: npt.NDArray[np.bool_],
        is_violation: npt.NDArray[np.bool_],
        level: Sequence[Level | None],
        state: Sequence[State],
        reason: Sequence[str | None],
        bands: Mapping[Level, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] | None = None,
    ) -> None:
        self.t = t
        self.value = value
        self.expected = expected
        self.lower = lower
        self.upper = upper
        self.baseline_points = baseline_points
        self.low_confidence = low_confidence
        self.is_violation = is_violation
        self.level = level
        self.state = state
        self.reason = reason
        #: Per level, its (lower, upper) edges at every point (``lower``/``upper`` are the least
        #: severe level's): what the plot draws as one band per level.
        self.bands: Mapping[Level, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = bands or {}

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @overload
    def __getitem__(self, i: int) -> PointResult: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[PointResult]: ...

    def __getitem__(self, i: int | slice) -> PointResult | Sequence[PointResult]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        state = self.state[i]
        return PointResult(
            t=float(self.t[i]),
            value=float(self.value[i]),
            expected=float(self.expected[i]),
            lower=float(self.lower[i]),
            upper=float(self.upper[i]),
            baseline_points=int(self.baseline_points[i]),
            low_confidence=bool(self.low_confidence[i]),
            is_violation=bool(self.is_violation[i]),
            level=self.level[i],
            state=state,
            is_alarm_active=state in ALARM_STATES,
            reason=self.reason[i],
        )

    @property
    def is_alarm_active(self) -> npt.NDArray[np.bool_]:
        return np.isin(np.asarray(self.state, dtype=object), list(ALARM_STATES))

    def to_dict(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self]


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """Outcome of `replay` over `[from, to]`: points, transitions and a summary (SEMANTICS §7)."""

    points: Points
    transitions: tuple[Transition, ...]
    summary: ReplaySummary
    #: State after the last evaluation (what the evaluator would continue from).
    final_state: SeriesState

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points.to_dict(),
            "transitions": [tr.to_dict() for tr in self.transitions],
            "summary": self.summary.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class CompositeReplayResult:
    """A composite rule's replay: one result per child condition, and the folded rule series."""

    children: tuple[ReplayResult, ...]
    rule: ReplayResult

    def to_dict(self) -> dict[str, Any]:
        return {"children": [c.to_dict() for c in self.children], "ruleSeries": self.rule.to_dict()}
