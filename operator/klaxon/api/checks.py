"""Cross-field checks of the three kinds: what one field means given the others.

The CRD's CEL rules say the same wherever CEL can; what CEL cannot express (PromQL, templates,
RE2) only the webhook, the operator and `klaxon validate` check, all through here.
"""

from __future__ import annotations

import re
from typing import Any

from . import gotemplate
from .alertconfig import AlertConfigSpec, Matcher
from .alertrule import ABOVE, BELOW, AlertRuleSpec, ConditionSpec, Level, Query, SubCondition
from .channel import (
    CREDENTIAL_HEADER_MESSAGE,
    CREDENTIAL_HEADER_PATTERN,
    NotificationChannelSpec,
    Webhook,
)
from .common import Schedule, parse_duration
from .problems import INVALID_QUERY, Problem
from .refs import effective_for, effective_interval
from .syntax import jinja_problem, promql_problem, re2_problem


def _band(prefix: str, cond: ConditionSpec | SubCondition) -> list[Problem]:
    if cond.lower is not None and cond.upper is not None and not cond.lower < cond.upper:
        return [Problem(f"{prefix}.lower", "lower must be below upper", f"a value below upper ({cond.upper:g})")]
    return []


def _level_operator(level: Level, cond: ConditionSpec | None) -> str:
    return level.operator or (cond.operator if cond else "gt")


def _ms(duration: str) -> int:
    """Whole milliseconds, so N-of-M arithmetic is exact (and the same as the CRD's CEL rules)."""
    return round(parse_duration(duration) * 1000)


def _query_problems(path: str, query: Query) -> list[Problem]:
    if query.expr is None:
        return []
    reason = promql_problem(query.expr)
    if reason is None:
        return []
    return [Problem(f"{path}.expr", reason, "a PromQL expression", reason=INVALID_QUERY)]


def _template_problems(path: str, values: dict[str, str]) -> list[Problem]:
    out = []
    for key, text in sorted(values.items()):
        reason = gotemplate.problem(text)
        if reason is not None:
            out.append(
                Problem(
                    f"{path}.{key}",
                    f"invalid Prometheus template at {reason}",
                    "Go template syntax with Prometheus' functions and $labels, $value, $externalLabels",
                )
            )
    return out


def alert_rule_problems(
    spec: AlertRuleSpec, prefix: str = "spec", config: AlertConfigSpec | None = None
) -> list[Problem]:
    """Cross-field problems; ``config`` is the rule's AlertConfig (its default interval), if known."""
    interval_text = effective_interval(spec, config)
    window = _ms(spec.trigger.violation_window) if spec.trigger.violation_window is not None else None
    return [
        *_kind_problems(spec, prefix),
        *(_condition_problems(spec.condition, prefix, spec.levels is not None) if spec.condition is not None else []),
        *(_levels_problems(spec, prefix, interval_text, window) if spec.levels is not None else []),
        *_trigger_problems(spec, prefix, interval_text, window),
        *_label_problems(spec, prefix),
    ]


def _query_shape_problems(path: str, q: Query) -> list[Problem]:
    p: list[Problem] = []
    if (q.expr is None) == (q.metric is None):
        p.append(Problem(path, "exactly one of query.expr and query.metric must be set", "expr or metric"))
    for name, value in (("selector", q.selector), ("scope", q.scope)):
        if q.expr is not None and value is not None:
            p.append(
                Problem(
                    f"{path}.{name}",
                    "selector and scope apply to query.metric only; write the matchers into query.expr",
                )
            )
    return p


def _kind_problems(spec: AlertRuleSpec, prefix: str) -> list[Problem]:
    """A metric rule, an event rule or a composite: exactly one, with what each needs."""
    p: list[Problem] = []
    composite = spec.condition is not None and spec.condition.type == "composite"
    if (spec.events is not None and spec.query is not None) or (
        spec.events is None and (spec.query is not None) == composite
    ):
        p.append(
            Problem(
                prefix,
                "set exactly one of query (metric rules), events (event rules) or a composite condition",
                "query, events, or condition.type composite with per-operand queries",
            )
        )
    if spec.query is not None:
        p += _query_shape_problems(f"{prefix}.query", spec.query)
        if spec.condition is None:
            p.append(Problem(f"{prefix}.condition", "required field is missing for a query rule"))
        p += _query_problems(f"{prefix}.query", spec.query)
    if spec.events is not None and spec.condition is not None:
        p.append(Problem(f"{prefix}.condition", "condition applies to query rules only; event rules match with events"))
    return p


def _condition_problems(cond: ConditionSpec, prefix: str, has_levels: bool) -> list[Problem]:
    p = _band(f"{prefix}.condition", cond)
    no_bound = cond.threshold is None and cond.upper is None and cond.lower is None
    if cond.type == "threshold" and no_bound and not has_levels:
        p.append(
            Problem(
                f"{prefix}.condition.threshold",
                "a threshold condition needs condition.threshold, upper, lower or levels",
            )
        )
    if cond.type == "composite":
        p += _composite_problems(cond, prefix)
    elif cond.conditions is not None:
        p.append(Problem(f"{prefix}.condition.conditions", "conditions is only allowed for type composite"))
    if cond.type == "dynamic" and cond.dynamic is None:
        p.append(Problem(f"{prefix}.condition.dynamic", "a dynamic condition needs its dynamic block"))
    if cond.type != "dynamic" and cond.dynamic is not None:
        p.append(Problem(f"{prefix}.condition.dynamic", "dynamic is only allowed for type dynamic"))
    return p


def _composite_problems(cond: ConditionSpec, prefix: str) -> list[Problem]:
    p: list[Problem] = []
    if not cond.conditions or len(cond.conditions) < 2:
        p.append(
            Problem(
                f"{prefix}.condition.conditions",
                "a composite condition needs at least 2 conditions",
                "2 to 8 conditions",
            )
        )
    for i, sub in enumerate(cond.conditions or []):
        sp = f"{prefix}.condition.conditions[{i}]"
        p += _band(sp, sub)
        if sub.type == "threshold" and sub.threshold is None and sub.upper is None and sub.lower is None:
            p.append(Problem(f"{sp}.threshold", "a threshold condition needs threshold, upper or lower"))
        if sub.type == "dynamic" and sub.dynamic is None:
            p.append(Problem(f"{sp}.dynamic", "a dynamic condition needs its dynamic block"))
        p += _query_shape_problems(f"{sp}.query", sub.query)
        p += _query_problems(f"{sp}.query", sub.query)
    names = [s.name for s in cond.conditions or []]
    if len(set(names)) != len(names):
        p.append(Problem(f"{prefix}.condition.conditions", "condition names must be unique"))
    return p


def _levels_problems(spec: AlertRuleSpec, prefix: str, interval_text: str, window: int | None) -> list[Problem]:
    lv = spec.levels
    assert lv is not None
    p: list[Problem] = []
    if lv.warning is None and lv.critical is None:
        p.append(Problem(f"{prefix}.levels", "levels needs warning, critical or both"))
    if spec.events is not None:
        p.append(Problem(f"{prefix}.levels", "levels apply to query rules only"))
    for name, level in (("warning", lv.warning), ("critical", lv.critical)):
        if level is not None:
            both = lv.warning is not None and lv.critical is not None
            p += _level_problems(spec, f"{prefix}.levels.{name}", level, both, interval_text, window)
    if lv.warning is not None and lv.critical is not None:
        p += _level_order_problems(spec, prefix, lv.warning, lv.critical)
    return p


def _level_problems(
    spec: AlertRuleSpec, path: str, level: Level, both: bool, interval_text: str, window: int | None
) -> list[Problem]:
    cond, interval, t = spec.condition, _ms(interval_text), spec.trigger
    p: list[Problem] = []
    if cond is not None and cond.type in ("threshold",) and level.threshold is None:
        p.append(Problem(f"{path}.threshold", "required for a threshold rule's level"))
    if cond is not None and cond.type in ("absence", "composite") and level.threshold is not None:
        p.append(Problem(f"{path}.threshold", f"a level threshold has no meaning for a {cond.type} condition"))
    if cond is not None and _level_operator(level, cond) in ("eq", "ne") and both:
        p.append(
            Problem(f"{path}.operator", "warning and critical levels need an ordering operator", "gt, gte, lt, lte")
        )
    if level.violations is not None and level.violations > 1 and window is None:
        p.append(Problem(f"{path}.violations", "violations above 1 needs trigger.violationWindow"))
    if level.violations is not None and window is not None and level.violations * interval > window:
        p.append(
            Problem(
                f"{path}.violations",
                f"{level.violations} violations cannot fit in {t.violation_window} "
                f"at one evaluation per {interval_text}",
                f"at most {max(1, window // interval)}",
            )
        )
    return p


def _level_order_problems(spec: AlertRuleSpec, prefix: str, w: Level, c: Level) -> list[Problem]:
    """Critical is the stricter level: same operator, a stricter threshold, no shorter for."""
    cond = spec.condition
    p: list[Problem] = []
    if (w.operator is None) != (c.operator is None) or w.operator != c.operator:
        p.append(
            Problem(
                f"{prefix}.levels.critical.operator",
                "critical must use the same operator as warning",
                f"{_level_operator(w, cond)}",
            )
        )
    op = "gt" if cond is not None and cond.type == "dynamic" else _level_operator(w, cond)
    if w.threshold is not None and c.threshold is not None:
        if (op in ABOVE and not c.threshold > w.threshold) or (op in BELOW and not c.threshold < w.threshold):
            more = "above" if op in ABOVE else "below"
            p.append(
                Problem(
                    f"{prefix}.levels.critical.threshold",
                    "levels.critical.threshold must be stricter than levels.warning.threshold",
                    f"a value {more} {w.threshold:g}",
                )
            )
    if parse_duration(effective_for(spec, c)) < parse_duration(effective_for(spec, w)):
        p.append(
            Problem(
                f"{prefix}.levels.critical.for",
                "critical.for must not be shorter than warning.for",
                f"at least {effective_for(spec, w)}",
            )
        )
    return p


def _trigger_problems(spec: AlertRuleSpec, prefix: str, interval_text: str, window: int | None) -> list[Problem]:
    t, interval = spec.trigger, _ms(interval_text)
    p: list[Problem] = []
    if t.required_violations > 1 and window is None:
        p.append(Problem(f"{prefix}.trigger.violationWindow", "requiredViolations above 1 needs a violationWindow"))
    if window is None or interval <= 0:
        return p
    if window < interval:
        p.append(
            Problem(
                f"{prefix}.trigger.violationWindow", "shorter than the evaluation interval", f"at least {interval_text}"
            )
        )
    if t.required_violations * interval > window:
        p.append(
            Problem(
                f"{prefix}.trigger.requiredViolations",
                f"{t.required_violations} violations cannot fit in {t.violation_window} "
                f"at one evaluation per {interval_text}",
                f"at most {max(1, window // interval)}",
            )
        )
    if spec.recovery.window is not None:
        limit = window - (t.required_violations - 1) * interval
        if _ms(spec.recovery.window) < limit:
            p.append(
                Problem(
                    f"{prefix}.recovery.window",
                    "recovery could hold while the trigger still holds",
                    f"at least {limit / 1000:g}s (violationWindow - (requiredViolations - 1) x interval)",
                )
            )
    return p


def _label_problems(spec: AlertRuleSpec, prefix: str) -> list[Problem]:
    """Reserved label names, empty schedule windows, and the labels' and annotations' templates."""
    p: list[Problem] = []
    if any(k.startswith("__") for k in spec.labels):
        reserved = ", ".join(sorted(k for k in spec.labels if k.startswith("__")))
        p.append(Problem(f"{prefix}.labels", f"label names starting with __ are reserved for Prometheus: {reserved}"))
    if spec.schedule is not None:
        p += _empty_windows(f"{prefix}.schedule", spec.schedule)
    p += _template_problems(f"{prefix}.labels", spec.labels)
    p += _template_problems(f"{prefix}.annotations", spec.annotations)
    return p


def _empty_windows(path: str, schedule: Schedule) -> list[Problem]:
    return [
        Problem(f"{path}.windows[{i}].end", "start and end must differ (use 00:00 to 24:00 for a whole day)")
        for i, w in enumerate(schedule.windows)
        if w.start == w.end
    ]


def alert_config_problems(spec: AlertConfigSpec, prefix: str = "spec") -> list[Problem]:
    p: list[Problem] = []
    prom = spec.prometheus
    if prom and prom.auth and prom.auth.bearer_token and prom.auth.basic_auth:
        p.append(Problem(f"{prefix}.prometheus.auth", "set at most one of bearerToken and basicAuth"))
    if prom and prom.tls and (prom.tls.cert is None) != (prom.tls.key is None):
        p.append(Problem(f"{prefix}.prometheus.tls", "a client certificate needs both cert and key"))
    for key in (*spec.prometheus_rule.labels, *spec.prometheus_rule.annotations):
        if "/" in key and len(key.split("/", 1)[0]) > 253:
            where = "labels" if key in spec.prometheus_rule.labels else "annotations"
            p.append(
                Problem(
                    f"{prefix}.prometheusRule.{where}",
                    f"the prefix of key {key!r} is longer than 253 characters",
                    "a DNS subdomain of at most 253 characters before the /",
                )
            )
    for i, s in enumerate(spec.silences):
        if s.starts_at is not None and not s.starts_at < s.until:
            p.append(Problem(f"{prefix}.silences[{i}].until", "startsAt must be before until"))
        for j, m in enumerate(s.matchers):
            p += _matcher_problems(f"{prefix}.silences[{i}].matchers[{j}]", m)
    for i, interval in enumerate(spec.mute_time_intervals):
        p += _empty_windows(f"{prefix}.muteTimeIntervals[{i}].schedule", interval.schedule)
    names = [m.name for m in spec.mute_time_intervals]
    if len(names) != len(set(names)):
        p.append(Problem(f"{prefix}.muteTimeIntervals", "names must be unique"))
    return p


def _matcher_problems(path: str, m: Matcher) -> list[Problem]:
    if m.op not in ("=~", "!~"):
        return []
    reason = re2_problem(m.value)
    return [] if reason is None else [Problem(f"{path}.value", reason, "RE2 syntax, as Alertmanager's matchers")]


def channel_problems(spec: NotificationChannelSpec, prefix: str = "spec") -> list[Problem]:
    p: list[Problem] = []
    for t in ("webhook", "slack", "email", "pagerduty", "msteams", "opsgenie", "alertmanager"):
        present = getattr(spec, t) is not None
        if (spec.type == t) != present:
            p.append(
                Problem(f"{prefix}.{t}", f"type {t} needs exactly the {t} block, and the {t} block needs type {t}")
            )
    wh: Webhook | None = spec.webhook
    if wh is not None:
        if (wh.url is None) == (wh.url_secret is None):
            p.append(Problem(f"{prefix}.webhook", "exactly one of webhook.url and webhook.urlSecret must be set"))
        inline = sorted(k for k in wh.headers if re.search(CREDENTIAL_HEADER_PATTERN, k))
        if inline:
            p.append(Problem(f"{prefix}.webhook.headers", f"{CREDENTIAL_HEADER_MESSAGE}: {', '.join(inline)}"))
    if spec.email is not None and (spec.email.username is None) != (spec.email.password is None):
        p.append(Problem(f"{prefix}.email.password", "set both email.username and email.password, or neither"))
    for name in ("title", "body"):
        source = getattr(spec.templates, name)
        reason = jinja_problem(source) if source is not None else None
        if reason is not None:
            p.append(Problem(f"{prefix}.templates.{name}", reason, "a Jinja template (see docs/notifications.md)"))
    return p


CHECKS: dict[str, Any] = {
    "AlertRule": alert_rule_problems,
    "AlertConfig": alert_config_problems,
    "NotificationChannel": channel_problems,
}
