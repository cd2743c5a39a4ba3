"""The AlertRule kind: what to watch, when it is a problem, and whom to tell."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from .alertrule_cel import SPEC_RULES
from .common import (
    MAX_EXPR,
    MAX_LIST,
    Condition,
    Duration,
    Finite,
    KModel,
    LabelName,
    LabelValue,
    ObjectName,
    ObjectReference,
    PositiveDuration,
    Schedule,
    ShortText,
    Text,
    Timestamp,
    cel,
    cel_rules,
)

Operator = Literal["gt", "gte", "lt", "lte", "eq", "ne"]
Aggregation = Literal["avg", "min", "max", "sum", "count", "last", "p50", "p90", "p95", "p99"]
Severity = Literal["info", "warning", "critical"]
LevelName = Literal["warning", "critical"]
State = Literal["Inactive", "Pending", "Firing", "Recovering", "NoData", "Error", "Muted", "Disabled"]

# A dedup key template: {field} placeholders, {{ and }} for literal braces, nothing else in braces.
DEDUP_KEY_PATTERN = r"^([^{}]|\{\{|\}\}|\{[A-Za-z_][A-Za-z0-9_]*\})*$"

ABOVE = {"gt", "gte"}
BELOW = {"lt", "lte"}


class Query(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.expr) != has(self.metric)", "exactly one of query.expr and query.metric must be set"),
            cel(
                "!has(self.expr) || !has(self.selector)",
                "selector and scope apply to query.metric only; write the matchers into query.expr",
                ".selector",
            ),
            cel(
                "!has(self.expr) || !has(self.scope)",
                "selector and scope apply to query.metric only; write the matchers into query.expr",
                ".scope",
            ),
        )
    )

    expr: Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXPR)] | None = Field(
        default=None,
        description=(
            "is a raw PromQL expression whose result is compared with the condition. "
            "Exactly one of expr and metric is required."
        ),
    )
    metric: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=256)] | None = Field(
        default=None,
        description="is the metric name to watch. Exactly one of expr and metric is required.",
    )
    selector: dict[LabelName, LabelValue] | None = Field(
        default=None,
        max_length=32,
        description="is a map of label equality matchers applied to metric. Optional; unset matches every series.",
    )
    scope: dict[LabelName, Annotated[list[LabelValue], Field(min_length=1, max_length=256)]] | None = Field(
        default=None,
        max_length=16,
        description=(
            "is a map from a label to the list of values it may take (e.g. device_ids), matched literally. Optional."
        ),
    )
    aggregation: Aggregation = Field(
        default="avg",
        description="is how samples in the window are combined: avg, min, max, sum, count, last or pNN. "
        "Defaults to avg.",
    )
    window: PositiveDuration = Field(
        default="5m", description="is the look-back window (t-window, t] of each evaluation. Defaults to 5m."
    )
    split_by: list[LabelName] = Field(
        default_factory=list,
        max_length=16,
        description="is the list of labels that make one alert instance per value combination. Defaults to none.",
    )


class DynamicSpec(KModel):
    mode: Literal["percentage", "stddev", "envelope"] = Field(
        default="stddev",
        description="is how the band is derived from the baseline: percentage, stddev or envelope. Defaults to stddev.",
    )
    tolerance_percent: Annotated[Finite, Field(ge=0, le=1000)] = Field(
        default=10.0,
        description="is the band's width in percent of the expected value (percentage, envelope). Defaults to 10.",
    )
    stddev_multiplier: Annotated[Finite, Field(gt=0, le=100)] = Field(
        default=3.0, description="is k in expected +- k standard deviations (stddev mode). Defaults to 3."
    )
    direction: Literal["above", "below", "both"] = Field(
        default="both",
        description="is which side of the band is a violation: above, below or both. Defaults to both.",
    )
    lookback_weeks: Annotated[int, Field(ge=1, le=12)] = Field(
        default=4, description="is K, the number of past weeks the baseline is built from. Defaults to 4."
    )
    minimum_baseline_points: Annotated[int, Field(ge=1, le=100000)] = Field(
        default=3, description="is the fewest baseline samples for a confident band. Defaults to 3."
    )
    suppress_low_confidence: bool = Field(
        default=True,
        description="is whether a point with a low-confidence baseline is never a violation. Defaults to true.",
    )


class SubCondition(KModel):
    """One operand of a composite condition (not itself composite: CRD schemas cannot recurse)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.type != 'threshold' || has(self.threshold) || has(self.upper) || has(self.lower)",
                "a threshold condition needs threshold, upper or lower",
                ".threshold",
            ),
            cel(
                "!has(self.lower) || !has(self.upper) || self.lower < self.upper", "lower must be below upper", ".lower"
            ),
            cel(
                "self.type != 'dynamic' || has(self.dynamic)", "a dynamic condition needs its dynamic block", ".dynamic"
            ),
        )
    )

    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)] = Field(
        description="is the operand's name, used in messages and labels. Required."
    )
    query: Query = Field(description="is the operand's query. Required.")
    type: Literal["threshold", "dynamic", "absence"] = Field(
        default="threshold", description="is threshold, dynamic or absence. Defaults to threshold."
    )
    operator: Operator = Field(
        default="gt", description="is the comparison: gt, gte, lt, lte, eq or ne. Defaults to gt."
    )
    threshold: Finite | None = Field(default=None, description="is the value compared with. Optional.")
    upper: Finite | None = Field(default=None, description="is the upper bound of a band. Optional.")
    lower: Finite | None = Field(default=None, description="is the lower bound of a band. Optional.")
    dynamic: DynamicSpec | None = Field(default=None, description="is the dynamic band. Required for type dynamic.")


class ConditionSpec(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.lower) || !has(self.upper) || self.lower < self.upper", "lower must be below upper", ".lower"
            ),
            cel(
                "self.type != 'composite' || (has(self.conditions) && size(self.conditions) >= 2)",
                "a composite condition needs at least 2 conditions",
                ".conditions",
            ),
            cel(
                "self.type == 'composite' || !has(self.conditions)",
                "conditions is only allowed for type composite",
                ".conditions",
            ),
            cel(
                "self.type != 'dynamic' || has(self.dynamic)", "a dynamic condition needs its dynamic block", ".dynamic"
            ),
            cel("self.type == 'dynamic' || !has(self.dynamic)", "dynamic is only allowed for type dynamic", ".dynamic"),
            cel(
                "!has(self.conditions) || self.conditions.all(c, self.conditions.exists_one(d, d.name == c.name))",
                "condition names must be unique",
                ".conditions",
            ),
        )
    )

    type: Literal["threshold", "dynamic", "absence", "composite"] = Field(
        default="threshold",
        description="is threshold, dynamic, absence or composite. Defaults to threshold.",
    )
    operator: Operator = Field(
        default="gt",
        description="is the comparison between value and threshold: gt, gte, lt, lte (strict/inclusive), eq, ne. "
        "Defaults to gt.",
    )
    threshold: Finite | None = Field(
        default=None,
        description="is the value the query is compared with. Required for threshold rules "
        "without levels, upper or lower.",
    )
    upper: Finite | None = Field(
        default=None,
        description="is the upper bound of a static band (or a guard rail on a dynamic band). Optional.",
    )
    lower: Finite | None = Field(
        default=None,
        description="is the lower bound of a static band (or a guard rail on a dynamic band). Optional.",
    )
    dynamic: DynamicSpec | None = Field(
        default=None, description="is the baseline-derived band. Required for type dynamic."
    )
    conditions: list[SubCondition] | None = Field(
        default=None,
        max_length=8,
        description="is the list of operands, each with its own query. Required for type composite (2 to 8).",
    )
    logic: Literal["all", "any"] = Field(
        default="all", description="is how composite operands combine: all (and) or any (or). Defaults to all."
    )


class Level(KModel):
    threshold: Finite | None = Field(
        default=None,
        description="is this level's threshold; on a dynamic rule it is the level's tolerancePercent "
        "(percentage, envelope) or stddevMultiplier (stddev). Required for threshold rules.",
    )
    operator: Operator | None = Field(
        default=None, description="is this level's comparison. Defaults to condition.operator."
    )
    for_: Duration | None = Field(
        default=None,
        alias="for",
        description="is how long the level must hold before it fires. Defaults to trigger.for "
        "(0, fire at once, when that is unset too).",
    )
    violations: Annotated[int, Field(ge=1, le=10000)] | None = Field(
        default=None,
        description="is the number of violating evaluations within trigger.violationWindow needed. "
        "Defaults to trigger.requiredViolations.",
    )


_LEVEL_CMP = (
    "(!has(self.warning.operator) && !has(self.critical.operator)) || "
    "(has(self.warning.operator) && has(self.critical.operator) && self.warning.operator == self.critical.operator)"
)


class Levels(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.warning) || has(self.critical)", "levels needs warning, critical or both"),
            cel(
                "!has(self.warning) || !has(self.critical) || " + "(" + _LEVEL_CMP + ")",
                "critical must use the same operator as warning",
                ".critical.operator",
            ),
        )
    )

    warning: Level | None = Field(default=None, description="is the warning level. Optional.")
    critical: Level | None = Field(default=None, description="is the critical level. Optional.")


class Trigger(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.requiredViolations <= 1 || has(self.violationWindow)",
                "requiredViolations above 1 needs a violationWindow",
                ".violationWindow",
            )
        )
    )

    for_: Duration = Field(
        default="0s",
        alias="for",
        description="is how long the condition must hold before the alert fires. Defaults to 0.",
    )
    required_violations: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=1, description="is M in 'M violating evaluations within violationWindow'. Defaults to 1."
    )
    violation_window: PositiveDuration | None = Field(
        default=None, description="is V, the window the violations are counted in. Optional."
    )


class Recovery(KModel):
    normal_count: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=1,
        description="is how many consecutive evaluations without an active level resolve the alert. Defaults to 1.",
    )
    window: PositiveDuration | None = Field(
        default=None, description="is a quiet window with no violation at all needed to resolve. Optional."
    )
    threshold: Finite | None = Field(
        default=None,
        description="is a recovery threshold the value must also pass (hysteresis). Optional.",
    )


class Evaluation(KModel):
    interval: PositiveDuration | None = Field(
        default=None, description="is the evaluation interval. Defaults to the AlertConfig's, else 1m."
    )
    engine: Literal["auto", "prometheus", "evaluator"] = Field(
        default="auto",
        description="is who evaluates the rule: prometheus (compiled PrometheusRule), evaluator, or auto "
        "(prometheus when the rule compiles fully to PromQL). Defaults to auto.",
    )


class Mute(KModel):
    until: Timestamp | None = Field(
        default=None, description="is when the mute ends (RFC 3339). Optional; unset mutes until removed."
    )
    reason: ShortText = Field(default="", description="is why the rule is muted. Defaults to empty.")


class Notify(KModel):
    channels: list[ObjectName] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="is the list of NotificationChannel names in the rule's namespace. "
        "Defaults to the AlertConfig's default channels.",
    )
    dedup_key: Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=DEDUP_KEY_PATTERN)] | None = (
        Field(
            default=None,
            description="is a template such as '{camera_id}:{object_type}' that names one alert; "
            "a missing field renders as null. Defaults to the rule and its splitBy labels.",
        )
    )
    cooldown: Duration = Field(
        default="0s",
        description="is the fixed window after a notification in which the same key is suppressed. Defaults to 0s.",
    )
    repeat_interval: PositiveDuration = Field(
        default="4h", description="is how often a still-firing alert is notified again. Defaults to 4h."
    )
    send_resolved: bool = Field(default=True, description="is whether resolution is notified. Defaults to true.")


class EventFilter(KModel):
    risk_threshold: Annotated[Finite, Field(ge=0, le=100)] | None = Field(
        default=None, description="is the lowest risk score (0..100) that matches. Optional."
    )
    object_types: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="is the list of object types that match (e.g. person, vehicle). Defaults to any.",
    )
    cameras: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=list, max_length=256, description="is the list of camera ids that match. Defaults to any."
    )
    zones: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=list, max_length=256, description="is the list of zone ids that match. Defaults to any."
    )
    min_confidence: Annotated[Finite, Field(ge=0, le=1)] | None = Field(
        default=None, description="is the lowest detection confidence (0..1) that matches. Optional."
    )


class AlertRuleSpec(KModel):
    model_config = ConfigDict(json_schema_extra=cel_rules(*SPEC_RULES))

    description: Text = Field(default="", description="is what the rule watches and why. Defaults to empty.")
    enabled: bool = Field(
        default=True,
        description="is false to stop evaluating and notifying; state becomes Disabled. Defaults to true.",
    )
    severity: Severity = Field(
        default="warning",
        description="is info, warning or critical when the rule has no levels. Defaults to warning.",
    )
    config_ref: ObjectReference | None = Field(
        default=None,
        description="is the AlertConfig that evaluates the rule. Defaults to the AlertConfig named default "
        "in the rule's namespace.",
    )
    query: Query | None = Field(
        default=None,
        description="is what to evaluate. Required unless events is set or the condition is composite "
        "(each operand has its own query).",
    )
    events: EventFilter | None = Field(
        default=None,
        description="is the event filter of an event rule (fed by POST /v1/events). Required unless query is set.",
    )
    condition: ConditionSpec | None = Field(
        default=None, description="is when the query's value is a problem. Required for query rules."
    )
    levels: Levels | None = Field(
        default=None, description="is warning and critical thresholds; overrides severity. Optional."
    )
    trigger: Trigger = Field(
        default_factory=Trigger,
        description="is how long and how often the condition must hold. Defaults to firing on the first violation.",
    )
    recovery: Recovery = Field(
        default_factory=Recovery,
        description="is when a firing alert resolves. Defaults to the first normal evaluation.",
    )
    no_data: Literal["NoData", "KeepLast", "Alerting", "OK"] = Field(
        default="NoData",
        description="is the state when the query returns no series: NoData, KeepLast, "
        "Alerting or OK. Defaults to NoData.",
    )
    on_error: Literal["Error", "KeepLast"] = Field(
        default="Error", description="is the state when the query fails: Error or KeepLast. Defaults to Error."
    )
    evaluation: Evaluation = Field(
        default_factory=Evaluation,
        description="is how often and by whom the rule is "
        "evaluated. Defaults to the AlertConfig's interval and engine auto.",
    )
    schedule: Schedule | None = Field(
        default=None,
        description="is when notifications may go out (event rules: when events match). Optional; unset means always.",
    )
    mute: Mute | None = Field(
        default=None, description="is set to suppress notifications; evaluation goes on. Optional."
    )
    notify: Notify = Field(
        default_factory=Notify, description="is whom to tell and how often. Defaults to the AlertConfig's channels."
    )
    labels: dict[LabelName, LabelValue] = Field(
        default_factory=dict,
        max_length=64,
        description="is extra labels on every alert; values may use Prometheus templates. Defaults to none.",
        json_schema_extra=cel_rules(
            cel("self.all(k, !k.startsWith('__'))", "label names starting with __ are reserved for Prometheus")
        ),
    )
    annotations: dict[LabelName, Annotated[str, StringConstraints(max_length=8192)]] = Field(
        default_factory=dict,
        max_length=64,
        description="is extra annotations (summary, description, runbook_url) on every alert; values are "
        "Prometheus templates ({{ $labels.x }}, {{ $value }}). Defaults to none.",
    )


__all__ = [
    "AlertRuleSpec",
    "Condition",
    "ConditionSpec",
    "DynamicSpec",
    "Evaluation",
    "EventFilter",
    "Level",
    "Levels",
    "Mute",
    "Notify",
    "Query",
    "Recovery",
    "SubCondition",
    "Trigger",
]
