"""Turning untrusted documents into typed objects, with problems people can act on.

Every problem names the field, what is wrong and what is allowed. `klaxon validate`, the
admission webhook and the operator all come through here, and the CRD's schema and CEL rules
say the same wherever CEL can: one verdict, naming the same field, at every layer. What CEL
cannot express (PromQL, templates, RE2) the webhook adds.

The input is read the way the API server reads it: explicit nulls in objects mean unset,
a whole-number float is an integer, only camelCase names exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from . import gotemplate
from .alertconfig import AlertConfigSpec, Matcher
from .alertrule import ABOVE, BELOW, DEDUP_KEY_PATTERN, AlertRuleSpec, ConditionSpec, Level, Query, SubCondition
from .channel import (
    CREDENTIAL_HEADER_MESSAGE,
    CREDENTIAL_HEADER_PATTERN,
    HEADER_VALUE_PATTERN,
    NotificationChannelSpec,
    Webhook,
)
from .common import (
    ANNOTATION_KEY_PATTERN,
    DURATION_PATTERN,
    HHMM_PATTERN,
    K8S_LABEL_VALUE_PATTERN,
    K8S_NAME_PATTERN,
    LABEL_NAME_PATTERN,
    NAMESPACE_PATTERN,
    QUALIFIED_NAME_PATTERN,
    parse_duration,
)
from .constants import API_VERSION
from .refs import effective_for, effective_interval
from .resources import KINDS
from .syntax import jinja_problem, promql_problem, re2_problem

INVALID_QUERY = "InvalidQuery"


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str
    allowed: str = ""
    reason: str = ""  # a CamelCase word for conditions when more specific than InvalidSpec

    def __str__(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        return f"{text} (allowed: {self.allowed})" if self.allowed else text


@dataclass
class Parsed:
    kind: str
    name: str
    namespace: str | None
    spec: BaseModel | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


_PATTERN_HINTS = {
    DURATION_PATTERN: "a duration such as 30s, 5m or 1h30m; units ms, s, m, h",
    HHMM_PATTERN: "a time HH:MM from 00:00 to 24:00",
    LABEL_NAME_PATTERN: "a Prometheus label name: letters, digits and _, not starting with a digit",
    K8S_NAME_PATTERN: "a Kubernetes name: lower-case letters, digits, '-' and '.'",
    NAMESPACE_PATTERN: "a namespace name: lower-case letters, digits and '-', at most 63 characters",
    ANNOTATION_KEY_PATTERN: "a Kubernetes annotation key: an optional DNS prefix and '/', then at most 63 "
    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    QUALIFIED_NAME_PATTERN: "a Kubernetes label key: an optional DNS prefix and '/', then at most 63 letters, "
    "digits, '-', '_' or '.', starting and ending with a letter or digit",
    K8S_LABEL_VALUE_PATTERN: "a Kubernetes label value: at most 63 letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit",
    HEADER_VALUE_PATTERN: "one line of text: no CR, LF or other control characters",
    DEDUP_KEY_PATTERN: "text with {field} placeholders (letters, digits, _); write {{ and }} for literal braces",
}


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that a location inside ``model`` points into (for listing its fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        by_alias = {f.alias or n: f for n, f in current.model_fields.items()}
        field = by_alias.get(str(part)) or current.model_fields.get(str(part))
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """The model inside Optional[...] / list[...] / dict[..., ...], if any."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _unwrap(arg)
        if found is not None:
            return found
    return None if get_origin(tp) is not None or not isinstance(tp, type) else tp


def _field_names(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or n for n, f in model.model_fields.items())


def from_validation_error(exc: ValidationError, model: type[BaseModel], prefix: str) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        etype = err["type"]
        ctx = err.get("ctx") or {}
        given = err.get("input")
        key_error = bool(loc) and loc[-1] == "[key]"
        if key_error:
            loc = loc[:-2]  # a bad key is the map's problem (as the API server and CEL report it)
        path = _path((prefix, *loc)) if prefix else _path(loc)
        if key_error and etype == "string_pattern_mismatch":
            hint = _PATTERN_HINTS.get(str(ctx.get("pattern")), f"a key matching {ctx.get('pattern')}")
            problems.append(Problem(path, f"invalid key {given!r}", hint))
        elif key_error and etype == "string_too_long":
            problems.append(Problem(path, f"key {given!r} is too long", f"at most {ctx.get('max_length')} characters"))
        elif etype == "missing":
            problems.append(Problem(path, "required field is missing"))
        elif etype == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = ", ".join(_field_names(parent)) if parent else ""
            problems.append(Problem(path, "unknown field", allowed))
        elif etype == "literal_error":
            expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
            problems.append(Problem(path, f"unknown value {given!r}", expected))
        elif etype == "string_pattern_mismatch":
            hint = _PATTERN_HINTS.get(str(ctx.get("pattern")), f"a string matching {ctx.get('pattern')}")
            problems.append(Problem(path, f"invalid value {given!r}", hint))
        elif etype == "string_too_short":
            problems.append(Problem(path, "must not be empty", f"at least {ctx.get('min_length')} character"))
        elif etype == "string_too_long":
            problems.append(
                Problem(path, f"too long ({len(str(given))} characters)", f"at most {ctx.get('max_length')} characters")
            )
        elif etype == "too_long":
            problems.append(
                Problem(path, f"too many items ({ctx.get('actual_length')})", f"at most {ctx.get('max_length')}")
            )
        elif etype == "too_short":
            problems.append(
                Problem(path, f"too few items ({ctx.get('actual_length')})", f"at least {ctx.get('min_length')}")
            )
        elif etype in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            bound = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
            limit = next(iter(ctx.values()), "")
            if isinstance(limit, float) and limit.is_integer():
                limit = int(limit)
            problems.append(Problem(path, f"out of range ({given!r})", f"{bound[etype]} {limit}"))
        elif etype == "model_type" and ctx.get("class_name") == "SecretKeySelector":
            problems.append(
                Problem(path, "inline credentials are not allowed", "a Secret reference {name: <secret>, key: <key>}")
            )
        elif etype in ("model_type", "dict_type", "model_attributes_type"):
            problems.append(Problem(path, f"must be an object, got {type(given).__name__}", "an object"))
        elif etype == "list_type":
            problems.append(Problem(path, f"must be a list, got {type(given).__name__}", "a list"))
        elif etype in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
            want = "an integer" if etype.startswith("int") else "a number"
            problems.append(Problem(path, f"must be {want}, got {given!r}", want))
        elif etype in ("bool_parsing", "bool_type"):
            problems.append(Problem(path, f"must be a boolean, got {given!r}", "true, false"))
        elif etype in ("string_type",):
            problems.append(Problem(path, f"must be a string, got {type(given).__name__}", "a string"))
        elif etype in ("datetime_parsing", "datetime_type", "datetime_from_date_parsing"):
            problems.append(Problem(path, f"invalid time {given!r}", "an RFC 3339 time such as 2026-01-31T18:00:00Z"))
        elif etype == "finite_number":
            problems.append(Problem(path, "must be a finite number", "a finite number"))
        elif etype == "value_error":
            message = str(ctx.get("error", err["msg"]))
            text, _, allowed = message.partition(" (allowed: ")
            problems.append(Problem(path, text, allowed.rstrip(")")))
        else:
            problems.append(Problem(path, err["msg"]))
    return problems


# --- cross-field checks -------------------------------------------------------------------


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
    q = spec.query
    if q is not None:
        if (q.expr is None) == (q.metric is None):
            p.append(
                Problem(f"{prefix}.query", "exactly one of query.expr and query.metric must be set", "expr or metric")
            )
        for name, value in (("selector", q.selector), ("scope", q.scope)):
            if q.expr is not None and value is not None:
                p.append(
                    Problem(
                        f"{prefix}.query.{name}",
                        "selector and scope apply to query.metric only; write the matchers into query.expr",
                    )
                )
        if spec.condition is None:
            p.append(Problem(f"{prefix}.condition", "required field is missing for a query rule"))
        p += _query_problems(f"{prefix}.query", q)
    if spec.events is not None and spec.condition is not None:
        p.append(Problem(f"{prefix}.condition", "condition applies to query rules only; event rules match with events"))

    cond = spec.condition
    if cond is not None:
        p += _band(f"{prefix}.condition", cond)
        if (
            cond.type == "threshold"
            and cond.threshold is None
            and cond.upper is None
            and cond.lower is None
            and spec.levels is None
        ):
            p.append(
                Problem(
                    f"{prefix}.condition.threshold",
                    "a threshold condition needs condition.threshold, upper, lower or levels",
                )
            )
        if cond.type == "composite":
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
                if (sub.query.expr is None) == (sub.query.metric is None):
                    p.append(
                        Problem(
                            f"{sp}.query", "exactly one of query.expr and query.metric must be set", "expr or metric"
                        )
                    )
                for name, value in (("selector", sub.query.selector), ("scope", sub.query.scope)):
                    if sub.query.expr is not None and value is not None:
                        p.append(
                            Problem(
                                f"{sp}.query.{name}",
                                "selector and scope apply to query.metric only; write the matchers into query.expr",
                            )
                        )
                p += _query_problems(f"{sp}.query", sub.query)
            names = [s.name for s in cond.conditions or []]
            if len(set(names)) != len(names):
                p.append(Problem(f"{prefix}.condition.conditions", "condition names must be unique"))
        elif cond.conditions is not None:
            p.append(Problem(f"{prefix}.condition.conditions", "conditions is only allowed for type composite"))
        if cond.type == "dynamic" and cond.dynamic is None:
            p.append(Problem(f"{prefix}.condition.dynamic", "a dynamic condition needs its dynamic block"))
        if cond.type != "dynamic" and cond.dynamic is not None:
            p.append(Problem(f"{prefix}.condition.dynamic", "dynamic is only allowed for type dynamic"))

    interval_text = effective_interval(spec, config)
    interval = _ms(interval_text)
    t = spec.trigger
    window = _ms(t.violation_window) if t.violation_window is not None else None

    lv = spec.levels
    if lv is not None:
        if lv.warning is None and lv.critical is None:
            p.append(Problem(f"{prefix}.levels", "levels needs warning, critical or both"))
        if spec.events is not None:
            p.append(Problem(f"{prefix}.levels", "levels apply to query rules only"))
        for name, level in (("warning", lv.warning), ("critical", lv.critical)):
            if level is None:
                continue
            if cond is not None and cond.type in ("threshold",) and level.threshold is None:
                p.append(Problem(f"{prefix}.levels.{name}.threshold", "required for a threshold rule's level"))
            if cond is not None and cond.type in ("absence", "composite") and level.threshold is not None:
                p.append(
                    Problem(
                        f"{prefix}.levels.{name}.threshold",
                        f"a level threshold has no meaning for a {cond.type} condition",
                    )
                )
            op = _level_operator(level, cond)
            if cond is not None and op in ("eq", "ne") and lv.warning is not None and lv.critical is not None:
                p.append(
                    Problem(
                        f"{prefix}.levels.{name}.operator",
                        "warning and critical levels need an ordering operator",
                        "gt, gte, lt, lte",
                    )
                )
            if level.violations is not None and level.violations > 1 and window is None:
                p.append(
                    Problem(f"{prefix}.levels.{name}.violations", "violations above 1 needs trigger.violationWindow")
                )
            if level.violations is not None and window is not None and level.violations * interval > window:
                p.append(
                    Problem(
                        f"{prefix}.levels.{name}.violations",
                        f"{level.violations} violations cannot fit in {t.violation_window} "
                        f"at one evaluation per {interval_text}",
                        f"at most {max(1, window // interval)}",
                    )
                )
        if lv.warning is not None and lv.critical is not None:
            w, c = lv.warning, lv.critical
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

    if t.required_violations > 1 and window is None:
        p.append(Problem(f"{prefix}.trigger.violationWindow", "requiredViolations above 1 needs a violationWindow"))
    if window is not None and interval > 0:
        if window < interval:
            p.append(
                Problem(
                    f"{prefix}.trigger.violationWindow",
                    "shorter than the evaluation interval",
                    f"at least {interval_text}",
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
    if any(k.startswith("__") for k in spec.labels):
        reserved = ", ".join(sorted(k for k in spec.labels if k.startswith("__")))
        p.append(Problem(f"{prefix}.labels", f"label names starting with __ are reserved for Prometheus: {reserved}"))
    if spec.schedule is not None:
        for i, window_ in enumerate(spec.schedule.windows):
            if window_.start == window_.end:
                p.append(
                    Problem(
                        f"{prefix}.schedule.windows[{i}].end",
                        "start and end must differ (use 00:00 to 24:00 for a whole day)",
                    )
                )
    p += _template_problems(f"{prefix}.labels", spec.labels)
    p += _template_problems(f"{prefix}.annotations", spec.annotations)
    return p


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
        for j, w in enumerate(interval.schedule.windows):
            if w.start == w.end:
                p.append(
                    Problem(
                        f"{prefix}.muteTimeIntervals[{i}].schedule.windows[{j}].end",
                        "start and end must differ (use 00:00 to 24:00 for a whole day)",
                    )
                )
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


_CHECKS: dict[str, Any] = {
    "AlertRule": alert_rule_problems,
    "AlertConfig": alert_config_problems,
    "NotificationChannel": channel_problems,
}


# --- reading untrusted input as the API server does ---------------------------------------

# Deeper than any schema here: a subtree below it is wrong already where it starts, so cutting
# it off keeps every verdict and field path and no input can exhaust the stack.
MAX_DEPTH = 64


def normalize(value: Any) -> Any:
    """``value`` as the API server stores it: nulls in objects dropped (null means unset), whole
    floats as integers, nesting cut at MAX_DEPTH. Iterative: no input is too deep for it."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]
    while stack:
        item, parent, key, depth = stack.pop()
        if isinstance(item, dict):
            out: Any = {}
            if depth < MAX_DEPTH:
                for k, v in item.items():
                    if v is not None:
                        out[k] = None
                        stack.append((v, out, k, depth + 1))
        elif isinstance(item, list):
            out = [None] * len(item) if depth < MAX_DEPTH else []
            if depth < MAX_DEPTH:
                for i, v in enumerate(item):
                    stack.append((v, out, i, depth + 1))
        elif isinstance(item, float) and item.is_integer() and abs(item) < 2**63:
            out = int(item)
        else:
            out = item
        parent[key] = out
    return root[0]


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON data")


@lru_cache(maxsize=8)
def _spec_schema(kind: str) -> dict[str, Any]:
    from . import crdgen  # here: `python -m klaxon.api.crdgen` must not find it imported already

    return crdgen.model_schema(KINDS[kind].spec, "spec")


def _unknown_null_fields(schema: dict[str, Any], value: Any, path: str) -> list[Problem]:
    """Unknown fields set to null: pruning would hide them, but the API server refuses them first."""
    out: list[Problem] = []
    stack = [(schema, value, path)]
    while stack:
        node, item, where = stack.pop()
        if isinstance(item, dict) and "properties" in node:
            for k, v in item.items():
                if k in node["properties"]:
                    stack.append((node["properties"][k], v, f"{where}.{k}"))
                elif v is None:
                    out.append(Problem(f"{where}.{k}", "unknown field", ", ".join(sorted(node["properties"]))))
        elif isinstance(item, dict) and isinstance(node.get("additionalProperties"), dict):
            stack += [(node["additionalProperties"], v, f"{where}.{k}") for k, v in item.items()]
        elif isinstance(item, list) and isinstance(node.get("items"), dict):
            stack += [(node["items"], v, f"{where}[{i}]") for i, v in enumerate(item)]
    return out


def parse_spec(kind: str, spec: Any, prefix: str = "spec") -> tuple[BaseModel | None, list[Problem]]:
    info = KINDS[kind]
    unknown = _unknown_null_fields(_spec_schema(kind), spec, prefix)
    spec = normalize(spec)
    if spec is None:
        return None, [Problem(prefix, "required field is missing")]
    if unknown:
        _, problems = parse_spec(kind, spec, prefix)
        return None, unknown + problems
    try:
        # JSON + strict + aliases only: the typing the API server applies ("1" is not a number
        # there either) and its field names (camelCase; `split_by` is an unknown field).
        text = json.dumps(spec, default=_json_default)
        model = info.spec.model_validate_json(text, strict=True, by_alias=True, by_name=False)
    except ValidationError as exc:
        return None, from_validation_error(exc, info.spec, prefix)
    except (TypeError, ValueError) as exc:  # not JSON data at all (a YAML-only type)
        return None, [Problem(prefix, f"not JSON data: {exc}")]
    return model, _CHECKS[kind](model, prefix)


# --- metadata and the object around the spec ----------------------------------------------

TOP_LEVEL_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
OBJECT_META_FIELDS = (
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
)
MAX_ANNOTATIONS_BYTES = 256 * 1024


def _dns_problem(path: str, value: Any, pattern: str, limit: int, what: str) -> list[Problem]:
    if not isinstance(value, str):
        return [Problem(path, f"must be a string, got {type(value).__name__}", "a string")]
    if len(value) > limit:
        return [Problem(path, f"too long ({len(value)} characters)", f"at most {limit} characters")]
    if not re.fullmatch(pattern, value):
        return [Problem(path, f"invalid value {value!r}", what)]
    return []


def _map_problems(path: str, value: Any, values_too: bool) -> list[Problem]:
    if not isinstance(value, dict):
        return [Problem(path, f"must be an object, got {type(value).__name__}", "an object")]
    out: list[Problem] = []
    for k, v in value.items():
        prefix_part = k.split("/", 1)[0] if "/" in k else ""
        # Kubernetes checks annotation keys lower-cased, label keys as written.
        if not re.fullmatch(QUALIFIED_NAME_PATTERN, k if values_too else k.lower()) or len(prefix_part) > 253:
            out.append(Problem(path, f"invalid key {k!r}", _PATTERN_HINTS[QUALIFIED_NAME_PATTERN]))
        if v is not None and not isinstance(v, str):
            out.append(Problem(f"{path}.{k}", f"must be a string, got {type(v).__name__}", "a string"))
        elif values_too and isinstance(v, str) and (len(v) > 63 or not re.fullmatch(K8S_LABEL_VALUE_PATTERN, v)):
            out.append(Problem(path, f"invalid value {v!r} of {k!r}", _PATTERN_HINTS[K8S_LABEL_VALUE_PATTERN]))
    if not values_too and sum(len(k) + len(v or "") for k, v in value.items()) > MAX_ANNOTATIONS_BYTES:
        out.append(Problem(path, "too large", f"at most {MAX_ANNOTATIONS_BYTES} bytes in all"))
    return out


def metadata_problems(meta: Any) -> list[Problem]:
    """The checks the API server applies to ObjectMeta before anything else sees the object."""
    if meta is None:
        return [Problem("metadata.name", "required field is missing")]
    if not isinstance(meta, dict):
        return [Problem("metadata", f"must be an object, got {type(meta).__name__}", "an object")]
    p = [
        Problem(f"metadata.{k}", "unknown field", ", ".join(OBJECT_META_FIELDS))
        for k in meta
        if k not in OBJECT_META_FIELDS
    ]
    name, generate = meta.get("name"), meta.get("generateName")
    if name in (None, "") and generate in (None, ""):
        p.append(Problem("metadata.name", "required field is missing"))
    elif name not in (None, ""):
        p += _dns_problem("metadata.name", name, K8S_NAME_PATTERN, 253, _PATTERN_HINTS[K8S_NAME_PATTERN])
    else:
        stem = generate.rstrip("-") if isinstance(generate, str) else generate
        p += _dns_problem("metadata.generateName", stem, K8S_NAME_PATTERN, 253, _PATTERN_HINTS[K8S_NAME_PATTERN])
    if meta.get("namespace") is not None:
        p += _dns_problem(
            "metadata.namespace", meta["namespace"], NAMESPACE_PATTERN, 63, _PATTERN_HINTS[NAMESPACE_PATTERN]
        )
    if meta.get("labels") is not None:
        p += _map_problems("metadata.labels", meta["labels"], values_too=True)
    if meta.get("annotations") is not None:
        p += _map_problems("metadata.annotations", meta["annotations"], values_too=False)
    return p


def parse_object(doc: Any) -> Parsed:
    """Validate one manifest of one of the three kinds; never raises for bad input."""
    if not isinstance(doc, dict):
        return Parsed("", "", None, None, [Problem("", f"document must be a mapping, got {type(doc).__name__}")])
    kind = doc.get("kind")
    raw_meta = doc.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    name = meta.get("name") or meta.get("generateName") or ""
    ns = meta.get("namespace")
    problems: list[Problem] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"unknown apiVersion {doc.get('apiVersion')!r}", API_VERSION))
    if kind not in KINDS:
        problems.append(Problem("kind", f"unknown kind {kind!r}", ", ".join(KINDS)))
        return Parsed(str(kind or ""), str(name), ns if isinstance(ns, str) else None, None, problems)
    problems += [
        Problem(str(k), "unknown field", ", ".join(TOP_LEVEL_FIELDS)) for k in doc if k not in TOP_LEVEL_FIELDS
    ]
    problems += metadata_problems(normalize(raw_meta) if isinstance(raw_meta, dict) else raw_meta)
    spec, spec_problems = parse_spec(str(kind), doc.get("spec"))
    return Parsed(str(kind), str(name), ns if isinstance(ns, str) else None, spec, problems + spec_problems)
