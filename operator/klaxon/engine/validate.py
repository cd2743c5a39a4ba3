"""Cross-field checks of SEMANTICS §4 that make the state machine sound.

Each message names the field, what is wrong and what is allowed, so the operator can put it
on the CR's `Valid` condition unchanged.
"""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from klaxon.engine.types import LEVELS, EngineRule, LevelSpec


def _valid_zone(key: str) -> bool:
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _slots(spec: LevelSpec, f: float) -> int:
    """Evaluations inside the counting window `(t - V, t]` (1 without a window)."""
    return 1 if spec.violation_window_s is None else math.ceil(spec.violation_window_s / f - 1e-9)


def _param(rule: EngineRule, spec: LevelSpec) -> float | None:
    """The number that makes a level strict: threshold, tolerance or multiplier."""
    if rule.kind == "dynamic" and rule.dynamic is not None and spec.threshold is None:
        d = rule.dynamic
        return d.stddev_multiplier if d.mode == "stddev" else d.tolerance_percent
    return spec.threshold


def _check_level(rule: EngineRule, name: str, spec: LevelSpec, errs: list[str]) -> None:
    p = f"levels.{name}"
    f = rule.interval_s
    if spec.for_s < 0:
        errs.append(f"{p}.for: must not be negative")
    if spec.required_violations < 1:
        errs.append(f"{p}.requiredViolations: must be at least 1")
    if spec.violation_window_s is None:
        if spec.required_violations > 1:
            errs.append(f"{p}.violationWindow: required when requiredViolations > 1")
    elif spec.violation_window_s <= 0:
        errs.append(f"{p}.violationWindow: must be positive")
    elif f > 0 and spec.required_violations > _slots(spec, f):
        errs.append(
            f"{p}.requiredViolations: {spec.required_violations} can never be reached: the window holds "
            f"{_slots(spec, f)} evaluations at interval {f:g}s"
        )
    band = spec.upper is not None or spec.lower is not None
    if spec.upper is not None and spec.lower is not None and spec.lower >= spec.upper:
        errs.append(f"{p}: lower must be below upper")
    if rule.kind == "threshold":
        if spec.threshold is None and not band:
            errs.append(f"{p}: set threshold, or upper/lower for a band")
        if spec.threshold is not None and band:
            errs.append(f"{p}: set either threshold or upper/lower, not both")
        if band and rule.direction == "above" and spec.upper is None:
            errs.append(f"{p}.upper: required with direction above")
        if band and rule.direction == "below" and spec.lower is None:
            errs.append(f"{p}.lower: required with direction below")
    if rule.kind == "dynamic" and spec.threshold is not None and spec.threshold < 0:
        errs.append(f"{p}.threshold: tolerance / multiplier must not be negative")


def _check_stricter(rule: EngineRule, errs: list[str]) -> None:
    """Critical must imply warning, so that evaluating critical first is sound."""
    w, c = rule.levels["warning"], rule.levels["critical"]
    f = rule.interval_s
    if c.for_s < w.for_s:
        errs.append("levels.critical.for: must be at least levels.warning.for")
    pw, pc = _param(rule, w), _param(rule, c)
    if rule.kind == "threshold" and rule.operator in ("eq", "ne") and (pw is not None or pc is not None):
        errs.append("levels: operators eq/ne cannot have a stricter critical level; configure one level")
    elif pw is not None and pc is not None:
        lower_is_stricter = rule.kind == "threshold" and rule.operator in ("lt", "lte")
        if (pc >= pw) if lower_is_stricter else (pc <= pw):
            want = "below" if lower_is_stricter else "above"
            errs.append(f"levels.critical.threshold: must be stricter ({want}) than levels.warning.threshold")
    elif (pw is None) != (pc is None):
        errs.append("levels: warning and critical must both use threshold, or both a band")
    for side, sign in (("upper", 1.0), ("lower", -1.0)):
        bw, bc = getattr(w, side), getattr(c, side)
        if bw is not None and (bc is None or sign * (bc - bw) < 0):
            errs.append(f"levels.critical.{side}: must be set and at least as wide as levels.warning.{side}")
    if f > 0:
        outside = max(0, _slots(c, f) - _slots(w, f))
        if c.required_violations - outside < w.required_violations:
            errs.append(
                "levels.critical.requiredViolations: critical's count must imply warning's "
                "(need more violations, or a window no longer than warning's)"
            )


def validate_rule(rule: EngineRule) -> list[str]:
    """Messages for every problem found; an empty list means the rule is valid."""
    errs: list[str] = []
    f = rule.interval_s
    if f <= 0:
        errs.append("evaluation.interval: must be positive")
    if rule.window_s <= 0:
        errs.append("query.window: must be positive")
    if f > 0 and not 0 <= rule.offset_s < f:
        errs.append("offset: must be in [0, interval)")
    if not rule.levels:
        errs.append("levels: at least one of warning, critical is required")
    for name in rule.levels:
        if name not in LEVELS:
            errs.append(f"levels.{name}: unknown level; allowed: warning, critical")
    if errs:
        return errs
    for name, spec in rule.levels.items():
        _check_level(rule, name, spec, errs)
    if "warning" in rule.levels and "critical" in rule.levels:
        _check_stricter(rule, errs)

    _check_kind(rule, errs)
    _check_recovery(rule, errs)
    zones = [z for z in (rule.timezone, rule.schedule.timezone if rule.schedule else None) if z]
    for z in zones:
        if not _valid_zone(z):
            errs.append(f"timezone: {z!r} is not an IANA time zone (e.g. Europe/Berlin)")
    if rule.schedule is not None and not rule.schedule.windows:
        errs.append("schedule.windows: at least one window is required")
    return errs


def _check_kind(rule: EngineRule, errs: list[str]) -> None:
    """A dynamic rule's baseline settings, a composite rule's operands."""
    if rule.kind == "dynamic":
        d = rule.dynamic
        if d is None:
            errs.append("condition.dynamic: required for a dynamic rule")
        else:
            if d.lookback_weeks < 1:
                errs.append("condition.dynamic.lookbackWeeks: must be at least 1")
            if d.minimum_baseline_points < 1:
                errs.append("condition.dynamic.minimumBaselinePoints: must be at least 1")
            if d.tolerance_percent < 0 or d.stddev_multiplier < 0:
                errs.append("condition.dynamic: tolerancePercent and stddevMultiplier must not be negative")
            if d.window_s is not None and d.window_s <= 0:
                errs.append("condition.dynamic.window: must be positive")
    elif rule.dynamic is not None:
        errs.append("condition.dynamic: only allowed on a dynamic rule")
    if rule.kind == "composite":
        if not rule.children:
            errs.append("condition.conditions: a composite rule needs at least one condition")
        for i, child in enumerate(rule.children):
            if child.kind == "composite":
                errs.append(f"condition.conditions[{i}]: conditions cannot be nested")
            if child.interval_s != rule.interval_s:
                errs.append(
                    f"condition.conditions[{i}]: evaluated on the rule's interval; do not set another"
                )
            errs += [f"condition.conditions[{i}].{m}" for m in validate_rule(child)]
    elif rule.children:
        errs.append("condition.conditions: only allowed on a composite rule")


def _check_recovery(rule: EngineRule, errs: list[str]) -> None:
    f, rec = rule.interval_s, rule.recovery
    if rec.normal_count < 1:
        errs.append("recovery.normalCount: must be at least 1")
    if rec.window_s is not None and f > 0:
        for name, spec in rule.levels.items():
            need = (_slots(spec, f) - spec.required_violations + 1) * f
            if rec.window_s < need:
                errs.append(
                    f"recovery.window: {rec.window_s:g}s could end an alarm while levels.{name} still holds; "
                    f"use at least {need:g}s (violationWindow - requiredViolations + 1 evaluations)"
                )
    if rec.threshold is not None:
        if rule.kind != "threshold" or rule.operator in ("eq", "ne"):
            errs.append("recovery.threshold: only for threshold rules with gt, gte, lt or lte")
        else:
            lenient = rule.levels[rule.ordered_levels[-1]].threshold
            if lenient is not None:
                above = rule.operator in ("gt", "gte")
                if (rec.threshold > lenient) if above else (rec.threshold < lenient):
                    side = "at or below" if above else "at or above"
                    errs.append(f"recovery.threshold: must be {side} the trigger threshold {lenient:g}")
