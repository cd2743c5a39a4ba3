"""Render a validated AlertRule spec into the engine's own types.

The one place where the API models meet the engine, so the evaluator and `klaxon preview`
evaluate a rule exactly alike.
"""

from __future__ import annotations

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec, ConditionSpec, SubCondition
from ..api.alertrule import DynamicSpec as ApiDynamic
from ..api.common import WEEKDAYS, parse_duration
from ..api.common import Schedule as ApiSchedule
from ..api.refs import effective_for, effective_interval
from ..engine.replay import grid_offset
from ..engine.types import (
    Direction,
    DynamicSpec,
    EngineRule,
    Level,
    LevelSpec,
    RecoverySpec,
    Schedule,
    ScheduleWindow,
)


class NotEvaluable(ValueError):
    """The rule has no metric condition the engine can evaluate (e.g. an event rule)."""


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def schedule_from_spec(schedule: ApiSchedule) -> Schedule:
    return Schedule(
        timezone=schedule.timezone,
        windows=tuple(
            ScheduleWindow(
                days=frozenset(WEEKDAYS.index(d) for d in w.days),
                start_min=_minutes(w.start),
                end_min=_minutes(w.end),
            )
            for w in schedule.windows
        ),
    )


def _dynamic(spec: ApiDynamic, window_s: float) -> DynamicSpec:
    return DynamicSpec(
        mode=spec.mode,
        tolerance_percent=spec.tolerance_percent,
        stddev_multiplier=spec.stddev_multiplier,
        lookback_weeks=spec.lookback_weeks,
        minimum_baseline_points=spec.minimum_baseline_points,
        suppress_low_confidence=spec.suppress_low_confidence,
        window_s=window_s,
    )


def single_level(spec: AlertRuleSpec) -> Level:
    """The engine level a rule without `levels` fires at."""
    return "critical" if spec.severity == "critical" else "warning"


def _operand(sub: SubCondition, interval_s: float) -> EngineRule:
    window_s = parse_duration(sub.query.window)
    direction: Direction = sub.dynamic.direction if sub.dynamic else "both"
    return EngineRule(
        kind=sub.type,
        levels={"warning": LevelSpec(threshold=sub.threshold, upper=sub.upper, lower=sub.lower)},
        operator=sub.operator,
        direction=direction,
        dynamic=_dynamic(sub.dynamic, window_s) if sub.dynamic else None,
        interval_s=interval_s,
        window_s=window_s,
        aggregation=sub.query.aggregation,
    )


def engine_rule(spec: AlertRuleSpec, config: AlertConfigSpec | None = None, key: str = "") -> EngineRule:
    """The EngineRule for a metric rule; ``key`` (e.g. namespace/name) seeds the grid offset."""
    cond: ConditionSpec | None = spec.condition
    if cond is None or spec.events is not None:
        raise NotEvaluable("event rules are matched event by event, not evaluated over a series")
    interval_s = parse_duration(effective_interval(spec, config))
    window_s = parse_duration(spec.query.window) if spec.query is not None else interval_s
    trigger = spec.trigger
    violation_window_s = parse_duration(trigger.violation_window) if trigger.violation_window else None
    operator = cond.operator

    levels: dict[str, LevelSpec] = {}
    if spec.levels is not None and (spec.levels.warning or spec.levels.critical):
        for name, level in (("warning", spec.levels.warning), ("critical", spec.levels.critical)):
            if level is None:
                continue
            operator = level.operator or operator
            levels[name] = LevelSpec(
                threshold=level.threshold,
                upper=cond.upper,
                lower=cond.lower,
                for_s=parse_duration(effective_for(spec, level)),
                required_violations=level.violations or trigger.required_violations,
                violation_window_s=violation_window_s,
            )
    else:
        levels[single_level(spec)] = LevelSpec(
            threshold=cond.threshold,
            upper=cond.upper,
            lower=cond.lower,
            for_s=parse_duration(effective_for(spec)),
            required_violations=trigger.required_violations,
            violation_window_s=violation_window_s,
        )

    recovery = RecoverySpec(
        normal_count=spec.recovery.normal_count,
        window_s=parse_duration(spec.recovery.window) if spec.recovery.window else None,
        threshold=spec.recovery.threshold,
    )
    direction: Direction = cond.dynamic.direction if cond.dynamic else "both"
    schedule = schedule_from_spec(spec.schedule) if spec.schedule else None
    children = tuple(_operand(sub, interval_s) for sub in cond.conditions or ()) if cond.type == "composite" else ()
    return EngineRule(
        kind=cond.type,
        levels=levels,
        operator=operator,
        direction=direction,
        dynamic=_dynamic(cond.dynamic, window_s) if cond.dynamic else None,
        recovery=recovery,
        interval_s=interval_s,
        window_s=window_s,
        aggregation=spec.query.aggregation if spec.query is not None else "avg",
        no_data=spec.no_data,
        on_error=spec.on_error,
        schedule=schedule,
        offset_s=grid_offset(key, interval_s) if key else 0.0,
        children=children,
        logic=cond.logic,
    )
