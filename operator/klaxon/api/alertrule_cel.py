"""The AlertRule's cross-field CEL rules that span levels, trigger, recovery and engine: the
same checks as klaxon.api.checks, in the API server, so a cluster without the webhook still
refuses what they catch."""

from __future__ import annotations

from typing import Any

from .common import cel
from .constants import DEFAULT_INTERVAL


def level_for(name: str) -> str:
    """CEL for a level's effective ``for``: its own, else trigger.for, else 0s (as ``effective_for``)."""
    lv = f"self.levels.{name}"
    trigger = "(has(self.trigger) && has(self.trigger.__for__) ? duration(self.trigger.__for__) : duration('0s'))"
    return f"(has({lv}.__for__) ? duration({lv}.__for__) : {trigger})"


def _level_rules(name: str) -> list[dict[str, Any]]:
    lv = f"self.levels.{name}"
    has = f"!has(self.levels) || !has({lv}) || !has(self.condition) || "
    op = f"(has({lv}.operator) ? {lv}.operator : self.condition.operator)"
    return [
        cel(
            has + f"self.condition.type != 'threshold' || has({lv}.threshold)",
            "required for a threshold rule's level",
            f".levels.{name}.threshold",
        ),
        cel(
            has + f"!(self.condition.type in ['absence', 'composite']) || !has({lv}.threshold)",
            "a level threshold has no meaning for an absence or composite condition",
            f".levels.{name}.threshold",
        ),
        cel(
            has + f"!has(self.levels.warning) || !has(self.levels.critical) || !({op} in ['eq', 'ne'])",
            "warning and critical levels need an ordering operator",
            f".levels.{name}.operator",
        ),
        cel(
            f"!has(self.levels) || !has({lv}) || !has({lv}.violations) || {lv}.violations <= 1 || "
            "(has(self.trigger) && has(self.trigger.violationWindow))",
            "violations above 1 needs trigger.violationWindow",
            f".levels.{name}.violations",
        ),
        cel(
            f"!has(self.levels) || !has({lv}) || !has({lv}.violations) || !has(self.trigger) || "
            f"!has(self.trigger.violationWindow) || int({lv}.violations) * {_IV_MS} <= {_VW_MS}",
            "violations cannot fit in trigger.violationWindow at one evaluation per interval",
            f".levels.{name}.violations",
        ),
    ]


# int(...) around counts: a client sending JSON 2.0 (kubectl sends 2) passes the schema's
# integer check, and CEL arithmetic would fail on the double.
# The evaluation interval as the webhook and `klaxon validate` assume it (the AlertConfig's
# default is not known here; the operator checks again with it).
_IV = (
    "(has(self.evaluation) && has(self.evaluation.interval) ? duration(self.evaluation.interval) "
    f": duration('{DEFAULT_INTERVAL}'))"
)
_IV_MS = f"{_IV}.getMilliseconds()"
_VW_MS = "duration(self.trigger.violationWindow).getMilliseconds()"
_HAS_VW = "!has(self.trigger) || !has(self.trigger.violationWindow) || "
LEVEL_RULES = [*_level_rules("warning"), *_level_rules("critical")]
WINDOW_RULES = [
    cel(
        _HAS_VW + f"duration(self.trigger.violationWindow) >= {_IV}",
        "shorter than the evaluation interval",
        ".trigger.violationWindow",
    ),
    cel(
        _HAS_VW + f"int(self.trigger.requiredViolations) * {_IV_MS} <= {_VW_MS}",
        "requiredViolations cannot fit in violationWindow at one evaluation per interval",
        ".trigger.requiredViolations",
    ),
    cel(
        _HAS_VW + "!has(self.recovery) || !has(self.recovery.window) || "
        f"duration(self.recovery.window).getMilliseconds() >= "
        f"{_VW_MS} - (int(self.trigger.requiredViolations) - 1) * {_IV_MS}",
        "recovery could hold while the trigger still holds",
        ".recovery.window",
    ),
]
# The features `engine: prometheus` cannot hold, as klaxon.compile.evaluator_reasons lists them.
_LEVEL_COUNTED = (
    "(has(self.levels) && ((has(self.levels.warning) && has(self.levels.warning.violations) && "
    "self.levels.warning.violations > 1) || (has(self.levels.critical) && has(self.levels.critical.violations) && "
    "self.levels.critical.violations > 1)))"
)
_EVALUATOR_ONLY = [
    ("has(self.events)", "event rules (spec.events)"),
    ("has(self.schedule)", "schedules in a time zone (spec.schedule)"),
    ("has(self.recovery) && has(self.recovery.threshold)", "recovery hysteresis (spec.recovery.threshold)"),
    (
        "has(self.recovery) && self.recovery.normalCount > 1 && has(self.recovery.window)",
        "recovery after N normal evaluations and a quiet window (spec.recovery.normalCount with spec.recovery.window)",
    ),
    (
        "has(self.recovery) && has(self.recovery.window) && has(self.trigger) && has(self.trigger.violationWindow) && "
        f"(self.trigger.requiredViolations > 1 || {_LEVEL_COUNTED})",
        "a quiet recovery window with counted violations (spec.recovery.window with spec.trigger.requiredViolations)",
    ),
    (
        "has(self.levels) && has(self.levels.warning) && has(self.levels.critical) && has(self.recovery) && "
        "(self.recovery.normalCount > 1 || has(self.recovery.window))",
        "escalation and de-escalation of one instance between warning and critical "
        "with delayed recovery (spec.levels with spec.recovery)",
    ),
    ("self.noData != 'NoData'", "noData policy other than NoData (spec.noData)"),
    ("self.onError != 'Error'", "onError policy other than Error (spec.onError)"),
]
ENGINE_RULES = [
    cel(
        f"!has(self.evaluation) || self.evaluation.engine != 'prometheus' || !({test})",
        f"rule needs the evaluator for {reason}",
        ".evaluation.engine",
    )
    for test, reason in _EVALUATOR_ONLY
]

# Every cross-field rule of AlertRuleSpec, in the order the CRD lists them.
SPEC_RULES = [
    cel(
        "has(self.events) ? !has(self.query) : (has(self.query) != "
        "(has(self.condition) && self.condition.type == 'composite'))",
        "set exactly one of query (metric rules), events (event rules) or a composite condition",
    ),
    cel(
        "!has(self.condition) || self.condition.type != 'threshold' || has(self.condition.threshold) || "
        "has(self.condition.upper) || has(self.condition.lower) || has(self.levels)",
        "a threshold condition needs condition.threshold, upper, lower or levels",
        ".condition.threshold",
    ),
    cel(
        "!has(self.levels) || !has(self.levels.warning) || !has(self.levels.critical) || "
        "!has(self.levels.warning.threshold) || !has(self.levels.critical.threshold) || "
        "((has(self.condition) && self.condition.type == 'dynamic') ? "
        "self.levels.critical.threshold > self.levels.warning.threshold : "
        "(has(self.levels.warning.operator) ? self.levels.warning.operator : "
        "(has(self.condition) ? self.condition.operator : 'gt')) in ['gt', 'gte'] ? "
        "self.levels.critical.threshold > self.levels.warning.threshold : "
        "((has(self.levels.warning.operator) ? self.levels.warning.operator : "
        "(has(self.condition) ? self.condition.operator : 'gt')) in ['lt', 'lte'] ? "
        "self.levels.critical.threshold < self.levels.warning.threshold : true))",
        "levels.critical.threshold must be stricter than levels.warning.threshold",
        ".levels.critical.threshold",
    ),
    cel(
        "!has(self.events) || !has(self.condition)",
        "condition applies to query rules only; event rules match with events",
        ".condition",
    ),
    cel("!has(self.query) || has(self.condition)", "required field is missing for a query rule", ".condition"),
    cel("!has(self.events) || !has(self.levels)", "levels apply to query rules only", ".levels"),
    cel(
        "!has(self.levels) || !has(self.levels.warning) || !has(self.levels.critical) || "
        f"{level_for('critical')} >= {level_for('warning')}",
        "critical.for must not be shorter than warning.for",
        ".levels.critical.for",
    ),
    *LEVEL_RULES,
    *WINDOW_RULES,
    *ENGINE_RULES,
]
