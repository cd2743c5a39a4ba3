"""AlertRule (+ its AlertConfig) -> PrometheusRule: the rule compiler. Pure: no I/O.

What compiles and how (SEMANTICS.md §2), with the choices the table leaves open:

- Value ``X`` of a query, its raw samples and absence: ``klaxon.compile.query``, the one
  builder the evaluator and preview use too.
- Baselines pool the raw samples of the K past weeks exactly as SEMANTICS §3 defines them
  (mean and population stddev of all samples, not of per-week averages): recording rules
  keep per-series, per-week count/avg/stddev/min/max under a ``klaxon_week`` label (not
  ``lb``, which real metrics use for load balancers) and combine them by splitBy. They read
  raw history through ``offset``, so a new rule has its baseline at once (no cold start).
  A zero stddev is tested as ``max == min`` (exact, unlike a float stddev).
- Recovery: ``normalCount`` R alone -> ``keep_firing_for: (R-1)·f``; ``window`` Q alone
  -> ``keep_firing_for: Q-f`` (``Q-V`` with a violation window V), which resolves at the
  first evaluation with no violation in (t-Q, t] as §4 defines it (``keep_firing_for: Q``
  would resolve one evaluation late).
- Levels on a threshold rule replace ``condition.threshold``; a band (upper/lower) on the
  condition counts as a violation at every level.
- M violations within V: ``count_over_time((b)[V:f]) >= M``. Subquery points sit at
  multiples of f; they coincide with the rule's own evaluations when those are aligned (as
  in ``promtool test rules``), else they trail them by the group's fixed offset (< f).
  ``$value`` of such an alert is the violation count.
- Levels compile to one alerting rule each (``severity`` = level). This equals the
  evaluator's single escalating instance when recovery is immediate; with delayed recovery
  a de-escalation would differ (the critical alert keeps firing), so that combination
  needs the evaluator.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec, ConditionSpec, DynamicSpec, Query, SubCondition
from ..api.checks import alert_rule_problems
from ..api.common import parse_duration
from ..api.constants import HASH_ANNOTATION, MANAGED_BY, RULE_LABEL, RULE_UID_LABEL
from ..api.problems import Problem
from ..api.refs import effective_for, effective_interval
from . import promql
from .promql import aggregate, number, paren, string_literal, template_text, window
from .query import absence_query, group_labels, raw_range, value_query

Engine = Literal["prometheus", "evaluator"]

PROMETHEUS_RULE_API_VERSION = "monitoring.coreos.com/v1"
WEEK_LABEL = "klaxon_week"
RULE_NAME_LABEL = "klaxon_rule"
RULE_NAMESPACE_LABEL = "klaxon_namespace"
CONDITION_LABEL = "klaxon_condition"
KLAXON_SERIES_LABELS = (CONDITION_LABEL, RULE_NAMESPACE_LABEL, RULE_NAME_LABEL)
RESERVED_ALERT_LABELS = frozenset({"severity", RULE_NAME_LABEL, RULE_NAMESPACE_LABEL, "alertname"})
MAX_NAME = 63
_CMP = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "==", "ne": "!="}

# Baseline series, one name per statistic; the rule's labels tell the rules apart.
WEEKLY = ("count", "avg", "stddev", "min", "max")
BASELINE = ("points", "weeks", "expected", "stddev", "min", "max")


def weekly_metric(stat: str) -> str:
    return f"klaxon:baseline_weekly:{stat}"


def baseline_metric(stat: str) -> str:
    return f"klaxon:baseline:{stat}"


@dataclass(frozen=True)
class CompileResult:
    """What one AlertRule compiles to.

    ``prometheus_rule`` is the whole PrometheusRule manifest (no ownerReferences; the
    operator adds them), or None when there is nothing for Prometheus to evaluate.
    ``groups`` are the same rule groups in plain Prometheus rule-file form.
    """

    prometheus_rule: dict[str, Any] | None
    groups: list[dict[str, Any]]
    engine: Engine
    evaluator_reasons: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# --- names --------------------------------------------------------------------------------

def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _fit(text: str, limit: int, seed: str) -> str:
    if len(text) <= limit:
        return text
    suffix = _short_hash(seed)
    return text[: limit - len(suffix) - 1].rstrip("-._") + "-" + suffix


def name_for(rule_name: str) -> str:
    """The PrometheusRule's name: ``klaxon-<rule>``, at most 63 characters (hash suffix if cut)."""
    return _fit(f"klaxon-{rule_name}", MAX_NAME, rule_name)


def label_value_for(rule_name: str) -> str:
    """The rule name as a Kubernetes label value (at most 63 characters)."""
    return _fit(rule_name, MAX_NAME, rule_name)


def alert_name_for(rule_name: str) -> str:
    """A Prometheus alert name from a Kubernetes name: ``model-accuracy-low`` -> ``ModelAccuracyLow``."""
    camel = "".join(part[:1].upper() + part[1:] for part in re.split(r"[-.]", rule_name) if part)
    return camel if camel[:1].isalpha() else "Klaxon" + camel


# --- which engine -------------------------------------------------------------------------

def evaluator_reasons(spec: AlertRuleSpec) -> list[str]:
    """The features of ``spec`` PromQL cannot hold (SEMANTICS §2); empty when it compiles fully."""
    reasons: list[str] = []
    if spec.events is not None:
        reasons.append("event rules (spec.events)")
    if spec.schedule is not None:
        reasons.append("schedules in a time zone (spec.schedule)")
    rec = spec.recovery
    if rec.threshold is not None:
        reasons.append("recovery hysteresis (spec.recovery.threshold)")
    if rec.normal_count > 1 and rec.window is not None:
        reasons.append("recovery after N normal evaluations and a quiet window "
                       "(spec.recovery.normalCount with spec.recovery.window)")
    if rec.window is not None and spec.trigger.violation_window is not None and (
        spec.trigger.required_violations > 1
        or any(lv is not None and (lv.violations or 1) > 1 for lv in _level_objects(spec))
    ):
        reasons.append("a quiet recovery window with counted violations "
                       "(spec.recovery.window with spec.trigger.requiredViolations)")
    if spec.levels is not None and spec.levels.warning is not None and spec.levels.critical is not None and (
        rec.normal_count > 1 or rec.window is not None
    ):
        reasons.append("escalation and de-escalation of one instance between warning and critical "
                       "with delayed recovery (spec.levels with spec.recovery)")
    if spec.no_data != "NoData":
        reasons.append(f"noData policy {spec.no_data} (spec.noData)")
    if spec.on_error != "Error":
        reasons.append(f"onError policy {spec.on_error} (spec.onError)")
    return reasons


def _level_objects(spec: AlertRuleSpec) -> list[Any]:
    return [] if spec.levels is None else [spec.levels.warning, spec.levels.critical]


# --- expressions --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Level:
    severity: str
    threshold: float | None
    operator: str
    for_seconds: float
    violations: int


@dataclass(frozen=True)
class _Ctx:
    name: str
    namespace: str
    interval: float

    @property
    def step(self) -> str:
        return promql.duration(self.interval)

    def series_labels(self, condition: str | None) -> dict[str, str]:
        labels = {RULE_NAME_LABEL: self.name, RULE_NAMESPACE_LABEL: self.namespace}
        if condition is not None:
            labels[CONDITION_LABEL] = condition
        return labels

    def series(self, metric: str, condition: str | None) -> str:
        labels = self.series_labels(condition)
        return promql.selector(metric, (f"{k}={string_literal(v)}" for k, v in sorted(labels.items())))


def _levels(spec: AlertRuleSpec, cond: ConditionSpec) -> list[_Level]:
    trig = spec.trigger
    if spec.levels is None or (spec.levels.warning is None and spec.levels.critical is None):
        return [_Level(spec.severity, cond.threshold, cond.operator, parse_duration(effective_for(spec)),
                       trig.required_violations)]
    out = []
    for name, lv in (("warning", spec.levels.warning), ("critical", spec.levels.critical)):
        if lv is None:
            continue
        out.append(_Level(name, lv.threshold, lv.operator or cond.operator, parse_duration(effective_for(spec, lv)),
                          lv.violations or trig.required_violations))
    return out


def _match(groups: list[str] | None) -> str:
    if groups is None:
        return f"ignoring({promql.label_list(KLAXON_SERIES_LABELS)})"
    return f"on({promql.label_list(groups)})"


def _threshold(x: str, op: str, threshold: float | None, upper: float | None, lower: float | None) -> str:
    parts = []
    if threshold is not None:
        parts.append(f"{x} {_CMP[op]} {number(threshold)}")
    if upper is not None:
        parts.append(f"{x} > {number(upper)}")
    if lower is not None:
        parts.append(f"{x} < {number(lower)}")
    return parts[0] if len(parts) == 1 else " or ".join(paren(p) for p in parts)


def _baseline_rules(q: Query, ctx: _Ctx, dyn: DynamicSpec, condition: str | None) -> list[dict[str, Any]]:
    """Recording rules for the K-week baseline of ``q`` (SEMANTICS §3)."""
    w = parse_duration(q.window)
    g = group_labels(q)
    labels = ctx.series_labels(condition)
    rules: list[dict[str, Any]] = []
    fn = {"count": "count_over_time", "avg": "avg_over_time", "stddev": "stddev_over_time",
          "min": "min_over_time", "max": "max_over_time"}
    for stat in WEEKLY:
        terms = [
            f'label_replace({fn[stat]}({raw_range(q, w, ctx.interval, f"{k}w")}), "{WEEK_LABEL}", "{k}", "", "")'
            for k in range(1, dyn.lookback_weeks + 1)
        ]
        rules.append(_record(weekly_metric(stat), " or ".join(terms), labels))

    def wk(stat: str) -> str:
        return ctx.series(weekly_metric(stat), condition)

    def by(op: str, expr: str) -> str:
        return f"{op} without({WEEK_LABEL}) ({expr})" if g is None else aggregate(op, g, expr)

    weeks = (f"count without({WEEK_LABEL}) ({wk('count')})" if g is None
             else aggregate("count", g, aggregate("sum", [*g, WEEK_LABEL], wk("count"))))
    join = (f"ignoring({WEEK_LABEL}) group_left" if g is None else f"{_match(g)} group_left")
    expected = ctx.series(baseline_metric("expected"), condition)
    points = by("sum", wk("count"))
    count, avg, sd = wk("count"), wk("avg"), wk("stddev")
    spread = f"{count} * ({sd} ^ 2 + ({avg} - {join} {expected}) ^ 2)"
    derived = {
        "points": points,
        "weeks": weeks,
        "expected": f"{by('sum', f'{count} * {avg}')} / {points}",
        "stddev": f"sqrt({by('sum', spread)} / {points})",
        "min": by("min", wk("min")),
        "max": by("max", wk("max")),
    }
    rules += [_record(baseline_metric(stat), derived[stat], labels) for stat in BASELINE]
    return rules


def _dynamic(x: str, q: Query, ctx: _Ctx, dyn: DynamicSpec, param: float | None,
             upper: float | None, lower: float | None, condition: str | None) -> str:
    g = group_labels(q)
    m = _match(g)

    def b(stat: str) -> str:
        return ctx.series(baseline_metric(stat), condition)

    if dyn.mode == "stddev":
        k = number(param if param is not None else dyn.stddev_multiplier)
        hi, lo = f"{b('expected')} + {k} * {b('stddev')}", f"{b('expected')} - {k} * {b('stddev')}"
    elif dyn.mode == "percentage":
        p = number(param if param is not None else dyn.tolerance_percent)
        hi = f"{b('expected')} + abs({b('expected')}) * {p} / 100"
        lo = f"{b('expected')} - abs({b('expected')}) * {p} / 100"
    else:
        p = number(param if param is not None else dyn.tolerance_percent)
        hi = f"{b('max')} + abs({b('max')}) * {p} / 100"
        lo = f"{b('min')} - abs({b('min')}) * {p} / 100"
    sides = []
    if dyn.direction in ("above", "both"):
        above = f"{x} > {m} ({hi})"
        sides.append(f"({above}) > {number(upper)}" if upper is not None else above)
    if dyn.direction in ("below", "both"):
        below = f"{x} < {m} ({lo})"
        sides.append(f"({below}) < {number(lower)}" if lower is not None else below)
    expr = sides[0] if len(sides) == 1 else " or ".join(paren(s) for s in sides)
    if not dyn.suppress_low_confidence:
        return expr
    confident = [f"{b('points')} >= {dyn.minimum_baseline_points}",
                 f"{b('weeks')} >= {math.ceil(dyn.lookback_weeks / 2)}"]
    if dyn.mode == "stddev":
        confident.append(f"{b('max')} > {b('min')}")
    elif dyn.mode == "percentage":
        confident.append(f"{b('expected')} != 0")
    return paren(expr) + "".join(f" and {m} ({c})" for c in confident)


def _operand(c: ConditionSpec | SubCondition, q: Query, ctx: _Ctx, threshold: float | None, op: str,
             level_param: float | None, condition: str | None) -> str:
    """The point-violation expression b(t) of one (non-composite) condition; its value is X."""
    if c.type == "absence":
        return absence_query(q, ctx.interval)
    x = value_query(q, ctx.interval)
    if c.type == "dynamic" and c.dynamic is not None:
        return _dynamic(x, q, ctx, c.dynamic, level_param, c.upper, c.lower, condition)
    return _threshold(x, op, threshold, c.upper, c.lower)


def _composite_join(subs: Sequence[SubCondition]) -> str:
    known = [set(s.query.split_by) for s in subs if group_labels(s.query) is not None]
    if not known:
        return ""
    common = set.intersection(*known)
    return f" on({promql.label_list(sorted(common))})"


def _violation(spec: AlertRuleSpec, cond: ConditionSpec, lvl: _Level, ctx: _Ctx) -> str:
    if cond.type == "composite":
        subs = cond.conditions or []
        parts = [
            paren(_operand(s, s.query, ctx, s.threshold, s.operator, None, s.name)) for s in subs
        ]
        op = f" and{_composite_join(subs)} " if cond.logic == "all" else " or "
        return op.join(parts)
    assert spec.query is not None
    param = lvl.threshold if cond.type == "dynamic" and spec.levels is not None else None
    return _operand(cond, spec.query, ctx, lvl.threshold, lvl.operator, param, None)


def _record(name: str, expr: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"record": name, "expr": expr, "labels": dict(sorted(labels.items()))}


# --- the alerting rules -------------------------------------------------------------------

def _keep_firing_for(spec: AlertRuleSpec, f: float) -> float:
    """How long Prometheus keeps an alert firing after its expression last held (SEMANTICS §4).

    R normal evaluations: the R-th evaluation without the expression resolves -> (R-1)·f.
    Quiet window Q (one violation suffices to trigger): the expression holds until the last
    violation leaves the violation window V (V = f without one); resolving at the first
    evaluation with no violation in (t-Q, t] needs max(Q-V, 0) more.
    """
    rec = spec.recovery
    if rec.window is not None:
        vwin = spec.trigger.violation_window
        held = parse_duration(vwin) if vwin is not None else f
        return max(parse_duration(rec.window) - held, 0.0)
    return (rec.normal_count - 1) * f


def _split_labels(spec: AlertRuleSpec) -> list[str]:
    if spec.query is not None:
        return list(spec.query.split_by)
    subs = spec.condition.conditions if spec.condition is not None else None
    seen: list[str] = []
    for s in subs or []:
        seen += [g for g in s.query.split_by if g not in seen]
    return seen


def _annotations(name: str, namespace: str, spec: AlertRuleSpec, cond: ConditionSpec, lvl: _Level,
                 windowed: bool) -> dict[str, str]:
    where = "".join(f" {g}={{{{ $labels.{g} }}}}" for g in _split_labels(spec))
    head = f"{namespace}/{name} is {lvl.severity}{where}"
    if windowed:
        summary = f"{head}: {{{{ $value }}}} violations in {spec.trigger.violation_window}"
    elif cond.type == "absence":
        q = spec.query
        summary = f"{head}: no data for {q.window if q else ''}"
    else:
        summary = f"{head}: value {{{{ $value | humanize }}}}"
    out = {"summary": summary}
    if spec.description:
        out["description"] = template_text(spec.description)
    out.update(spec.annotations)
    return dict(sorted(out.items()))


def _alert_rules(name: str, namespace: str, spec: AlertRuleSpec, ctx: _Ctx) -> list[dict[str, Any]]:
    cond = spec.condition
    assert cond is not None
    f = ctx.interval
    kff = _keep_firing_for(spec, f)
    vwin = spec.trigger.violation_window
    rules = []
    for lvl in _levels(spec, cond):
        expr = _violation(spec, cond, lvl, ctx)
        windowed = vwin is not None
        if vwin is not None:
            expr = f"count_over_time(({expr})[{window(parse_duration(vwin))}:{ctx.step}]) >= {lvl.violations}"
        labels = {k: v for k, v in spec.labels.items() if k not in RESERVED_ALERT_LABELS}
        labels.update({"severity": lvl.severity, RULE_NAME_LABEL: name, RULE_NAMESPACE_LABEL: namespace})
        rule: dict[str, Any] = {"alert": alert_name_for(name), "expr": expr}
        if lvl.for_seconds > 0:
            rule["for"] = promql.duration(lvl.for_seconds)
        if kff > 0:
            rule["keep_firing_for"] = promql.duration(kff)
        rule["labels"] = dict(sorted(labels.items()))
        rule["annotations"] = _annotations(name, namespace, spec, cond, lvl, windowed)
        rules.append(rule)
    return rules


def _recording_rules(spec: AlertRuleSpec, ctx: _Ctx) -> list[dict[str, Any]]:
    cond = spec.condition
    if cond is None:
        return []
    if cond.type == "dynamic" and cond.dynamic is not None and spec.query is not None:
        return _baseline_rules(spec.query, ctx, cond.dynamic, None)
    rules: list[dict[str, Any]] = []
    for s in cond.conditions or []:
        if s.type == "dynamic" and s.dynamic is not None:
            rules += _baseline_rules(s.query, ctx, s.dynamic, s.name)
    return rules


def engine_problems(spec: AlertRuleSpec) -> list[Problem]:
    """`engine: prometheus` on a rule PromQL cannot hold: one problem per feature that needs the evaluator."""
    if spec.evaluation.engine != "prometheus":
        return []
    return [
        Problem("spec.evaluation.engine", f"rule needs the evaluator for {r}", "auto, evaluator")
        for r in evaluator_reasons(spec)
    ]


def _input_hash(obj: dict[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def compile_rule(
    name: str,
    namespace: str,
    spec: AlertRuleSpec,
    config: AlertConfigSpec | None = None,
    uid: str | None = None,
) -> CompileResult:
    """Compile one AlertRule; never raises for a spec that parsed (problems come back as text).

    A rule with problems, an event rule, a disabled rule without baselines and an
    evaluator rule without baselines have no PrometheusRule (``prometheus_rule`` None).
    Evaluator rules and disabled rules keep their baseline recording rules.
    """
    reasons = evaluator_reasons(spec)
    interval = effective_interval(spec, config)
    problems = [str(p) for p in [*alert_rule_problems(spec, config=config), *engine_problems(spec)]]
    engine: Engine = "evaluator" if reasons or spec.evaluation.engine == "evaluator" else "prometheus"
    if problems or spec.events is not None or spec.condition is None:
        return CompileResult(None, [], engine, reasons, problems)

    ctx = _Ctx(name, namespace, parse_duration(interval))
    rules = _recording_rules(spec, ctx)
    if engine == "prometheus" and spec.enabled:
        rules += _alert_rules(name, namespace, spec, ctx)
    if not rules:
        return CompileResult(None, [], engine, reasons, problems)
    groups = [{"name": f"klaxon/{namespace}/{name}", "interval": interval, "rules": rules}]
    return CompileResult(_manifest(name, namespace, groups, config, uid), groups, engine, reasons, problems)


def _manifest(name: str, namespace: str, groups: list[dict[str, Any]], config: AlertConfigSpec | None,
              uid: str | None) -> dict[str, Any]:
    target = config.prometheus_rule if config is not None else None
    labels = dict(target.labels) if target is not None else {}
    labels.update({**MANAGED_BY, RULE_LABEL: label_value_for(name)})
    if uid:
        labels[RULE_UID_LABEL] = uid
    annotations = dict(target.annotations) if target is not None else {}
    annotations.pop(HASH_ANNOTATION, None)
    body = {"labels": labels, "annotations": annotations, "spec": {"groups": groups}}
    annotations[HASH_ANNOTATION] = _input_hash({"name": name, "namespace": namespace, **body})
    return {
        "apiVersion": PROMETHEUS_RULE_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": {
            "name": name_for(name),
            "namespace": namespace,
            "labels": dict(sorted(labels.items())),
            "annotations": dict(sorted(annotations.items())),
        },
        "spec": {"groups": groups},
    }


def build_prometheus_rule(
    name: str,
    namespace: str,
    spec: AlertRuleSpec,
    config: AlertConfigSpec | None = None,
    uid: str | None = None,
) -> dict[str, Any] | None:
    """The PrometheusRule manifest alone (None when the rule needs none or is invalid)."""
    return compile_rule(name, namespace, spec, config, uid).prometheus_rule


def rule_file(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """A plain Prometheus rule file holding ``groups``."""
    return {"groups": groups}
