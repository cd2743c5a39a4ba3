"""Unit tests of the compiler: escaping, names, engine choice, labels, hashing, purity."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.compile import (
    alert_name_for,
    build_prometheus_rule,
    compile_rule,
    evaluator_reasons,
    name_for,
    regex_quote,
    string_literal,
)
from klaxon.compile.promql import number, template_text, window

K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
BASE: dict[str, Any] = {"query": {"metric": "m"}, "condition": {"threshold": 1}}


def spec(**over: Any) -> AlertRuleSpec:
    return AlertRuleSpec.model_validate({**BASE, **over})


def alerts(result: Any) -> list[dict[str, Any]]:
    return [r for g in result.groups for r in g["rules"] if "alert" in r]


# --- escaping ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "literal"), [
    ("plain", '"plain"'),
    ('a"b', '"a\\"b"'),
    ("a\\b", '"a\\\\b"'),
    ("line\nbreak\r\t", '"line\\nbreak\\r\\t"'),
    ("\x00\x1f\x7f", '"\\x00\\x1f\\x7f"'),
    ("ünïcødé ✓", '"ünïcødé ✓"'),
    ("}{,=~", '"}{,=~"'),
])
def test_string_literal(value: str, literal: str) -> None:
    assert string_literal(value) == literal


def test_regex_quote_is_go_quote_meta() -> None:
    assert regex_quote(r"\.+*?()|[]{}^$") == r"\\\.\+\*\?\(\)\|\[\]\{\}\^\$"
    assert regex_quote("a-b c/d#e&f~g") == "a-b c/d#e&f~g"  # RE2 needs no escape for these
    for value in ["a.*", "x|y", "(a)", "[x]", "a{2}", "^$", "new\nline", 'q"\\']:
        assert re.fullmatch(regex_quote(value), value)
        assert not re.fullmatch(regex_quote(value), value + "x")
    assert not re.fullmatch(regex_quote("a.*"), "abc")


def test_scope_values_are_regex_then_string_escaped() -> None:
    r = compile_rule("r", "ns", spec(query={"metric": "m", "scope": {"t": ["a.*", 'b"\\']}}))
    assert 't=~"a\\\\.\\\\*|b\\"\\\\\\\\"' in alerts(r)[0]["expr"]


def test_numbers_round_trip() -> None:
    assert [number(v) for v in (1.0, -2.0, 0.85, 1e-7, 1e20, float("inf"), float("-inf"), float("nan"))] == [
        "1", "-2", "0.85", "1e-07", "1e+20", "+Inf", "-Inf", "NaN"]


def test_window_is_left_open() -> None:
    assert window(300) == "4m59s999ms"
    assert window(3600) == "59m59s999ms"


def test_template_text_keeps_braces_literal() -> None:
    assert template_text("a {{ b }}") == 'a {{ "{{" }} b }}'


# --- names -------------------------------------------------------------------------------------

def test_name_for_short_and_long() -> None:
    assert name_for("cpu-high") == "klaxon-cpu-high"
    long_a, long_b = "x" * 60 + "-a", "x" * 60 + "-b"
    na, nb = name_for(long_a), name_for(long_b)
    assert len(na) <= 63 and len(nb) <= 63 and na != nb
    assert K8S_NAME.match(na) and K8S_NAME.match(nb)
    assert name_for(long_a) == na  # stable
    dotted = "a." * 40 + "z"
    assert K8S_NAME.match(name_for(dotted)) and len(name_for(dotted)) <= 63


def test_alert_name_is_a_metric_name() -> None:
    assert alert_name_for("model-accuracy-low") == "ModelAccuracyLow"
    assert alert_name_for("web.api-5xx") == "WebApi5xx"
    assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", alert_name_for("5xx-errors"))


# --- engine choice -----------------------------------------------------------------------------

EVALUATOR_ONLY: list[tuple[dict[str, Any], str]] = [
    ({"schedule": {"windows": [{"start": "08:00", "end": "18:00"}]}}, "spec.schedule"),
    ({"recovery": {"threshold": 0.5}}, "spec.recovery.threshold"),
    ({"recovery": {"normalCount": 3, "window": "10m"}},
     "spec.recovery.normalCount with spec.recovery.window"),
    ({"trigger": {"requiredViolations": 2, "violationWindow": "5m"}, "recovery": {"window": "10m"}},
     "spec.recovery.window with spec.trigger.requiredViolations"),
    ({"condition": {"operator": "gt"}, "recovery": {"normalCount": 2},
      "levels": {"warning": {"threshold": 1}, "critical": {"threshold": 2}}},
     "spec.levels with spec.recovery"),
    ({"noData": "KeepLast"}, "spec.noData"),
    ({"noData": "Alerting"}, "spec.noData"),
    ({"onError": "KeepLast"}, "spec.onError"),
]


@pytest.mark.parametrize(("over", "feature"), EVALUATOR_ONLY, ids=[f for _, f in EVALUATOR_ONLY])
def test_evaluator_only_features(over: dict[str, Any], feature: str) -> None:
    s = spec(**over)
    r = compile_rule("r", "ns", s)
    assert r.engine == "evaluator" and not r.problems
    assert any(feature in reason for reason in r.evaluator_reasons), r.evaluator_reasons
    assert r.prometheus_rule is None and r.groups == []  # no baselines: nothing for Prometheus

    strict = compile_rule("r", "ns", spec(**over, evaluation={"engine": "prometheus"}))
    assert strict.prometheus_rule is None
    assert strict.problems and all(
        p.startswith("spec.evaluation.engine: rule needs the evaluator for ") and
        p.endswith(" (allowed: auto, evaluator)") for p in strict.problems)
    assert any(feature in p for p in strict.problems)


@pytest.mark.parametrize("over", [
    {"recovery": {"normalCount": 5}},
    {"recovery": {"window": "10m"}},
    {"trigger": {"requiredViolations": 3, "violationWindow": "5m"}, "recovery": {"normalCount": 3}},
    {"condition": {"operator": "gt"}, "levels": {"warning": {"threshold": 1}, "critical": {"threshold": 2}}},
    {"mute": {"reason": "deploy"}},
    {"noData": "NoData", "onError": "Error"},
])
def test_exact_in_promql(over: dict[str, Any]) -> None:
    r = compile_rule("r", "ns", spec(**over, evaluation={"engine": "prometheus"}))
    assert r.engine == "prometheus" and r.evaluator_reasons == [] and r.problems == []
    assert alerts(r)


def test_event_rule_has_no_prometheusrule() -> None:
    s = AlertRuleSpec.model_validate({"events": {"objectTypes": ["person"]}})
    r = compile_rule("r", "ns", s)
    assert r.engine == "evaluator" and r.prometheus_rule is None and r.groups == []
    assert r.evaluator_reasons == ["event rules (spec.events)"]
    assert evaluator_reasons(s) == r.evaluator_reasons


def test_evaluator_rule_keeps_baseline_recording_rules() -> None:
    s = spec(condition={"type": "dynamic", "dynamic": {"mode": "stddev"}}, noData="KeepLast")
    r = compile_rule("r", "ns", s)
    assert r.engine == "evaluator"
    assert r.prometheus_rule is not None
    rules = r.groups[0]["rules"]
    assert rules and all("record" in x for x in rules)


def test_engine_evaluator_requested_explicitly() -> None:
    r = compile_rule("r", "ns", spec(evaluation={"engine": "evaluator"}))
    assert r.engine == "evaluator" and r.evaluator_reasons == [] and r.prometheus_rule is None


def test_disabled_rule_has_no_alerting_rules() -> None:
    assert compile_rule("r", "ns", spec(enabled=False)).prometheus_rule is None


def test_invalid_spec_returns_problems_without_raising() -> None:
    r = compile_rule("r", "ns", AlertRuleSpec.model_validate({"query": {"metric": "m"},
                                                              "condition": {"type": "threshold"}}))
    assert r.prometheus_rule is None
    assert any("threshold" in p for p in r.problems)


def test_extra_problems() -> None:
    r = compile_rule("r", "ns", spec(labels={"__x": "y"}, query={"metric": "m"}))
    assert "spec.labels: label names starting with __ are reserved for Prometheus: __x" in r.problems
    r = compile_rule("r", "ns", spec(query={"expr": "rate(x[5m]"}))
    assert r.prometheus_rule is None
    assert any(p.startswith("spec.query.expr: invalid PromQL at line 1, column 5: unclosed") for p in r.problems)


# --- rule fields -------------------------------------------------------------------------------

def test_keep_firing_for_and_for() -> None:
    r = compile_rule("r", "ns", spec(recovery={"normalCount": 3}, trigger={"for": "90s"}))
    assert alerts(r)[0]["keep_firing_for"] == "2m" and alerts(r)[0]["for"] == "1m30s"
    r = compile_rule("r", "ns", spec(recovery={"window": "10m"}, evaluation={"interval": "30s"}))
    assert alerts(r)[0]["keep_firing_for"] == "9m30s"
    r = compile_rule("r", "ns", spec(recovery={"window": "10m"}, trigger={"violationWindow": "4m"}))
    assert alerts(r)[0]["keep_firing_for"] == "6m"
    r = compile_rule("r", "ns", spec())
    assert "keep_firing_for" not in alerts(r)[0] and "for" not in alerts(r)[0]


def test_interval_precedence() -> None:
    cfg = AlertConfigSpec.model_validate({"defaults": {"interval": "2m"}})
    assert compile_rule("r", "ns", spec(), cfg).groups[0]["interval"] == "2m"
    assert compile_rule("r", "ns", spec(evaluation={"interval": "15s"}), cfg).groups[0]["interval"] == "15s"
    assert compile_rule("r", "ns", spec()).groups[0]["interval"] == "1m"


def test_labels_and_metadata() -> None:
    cfg = AlertConfigSpec.model_validate({"prometheusRule": {"labels": {"release": "kps"},
                                                             "annotations": {"team": "x"}}})
    r = compile_rule("r", "ns", spec(labels={"team": "a", "severity": "nope", "klaxon_rule": "x"},
                                     severity="critical"), cfg, uid="1234")
    pr = r.prometheus_rule
    assert pr is not None
    meta = pr["metadata"]
    assert meta["name"] == "klaxon-r" and meta["namespace"] == "ns"
    assert meta["labels"] == {"app.kubernetes.io/managed-by": "klaxon", "klaxon.dev/alertrule": "r",
                              "klaxon.dev/alertrule-uid": "1234", "release": "kps"}
    assert meta["annotations"]["team"] == "x"
    assert "ownerReferences" not in meta
    assert alerts(r)[0]["labels"] == {"klaxon_namespace": "ns", "klaxon_rule": "r", "severity": "critical",
                                      "team": "a"}
    assert pr["spec"]["groups"] == r.groups


def test_input_hash_tracks_the_output() -> None:
    a = build_prometheus_rule("r", "ns", spec())
    b = build_prometheus_rule("r", "ns", spec())
    c = build_prometheus_rule("r", "ns", spec(condition={"threshold": 2}))
    assert a is not None and b is not None and c is not None
    h = "klaxon.dev/input-hash"
    assert a["metadata"]["annotations"][h] == b["metadata"]["annotations"][h]
    assert a["metadata"]["annotations"][h] != c["metadata"]["annotations"][h]
    assert re.fullmatch(r"[0-9a-f]{64}", a["metadata"]["annotations"][h])


def test_default_annotations() -> None:
    r = compile_rule("r", "ns", spec(description="Uses {{ x }}", query={"metric": "m", "splitBy": ["host"]}))
    ann = alerts(r)[0]["annotations"]
    assert ann["summary"] == "ns/r is warning host={{ $labels.host }}: value {{ $value | humanize }}"
    assert ann["description"] == 'Uses {{ "{{" }} x }}'


def test_raw_expr_is_parenthesized() -> None:
    r = compile_rule("r", "ns", spec(query={"expr": "a or b"}))
    assert alerts(r)[0]["expr"] == "(a or b) > 1"


# --- purity ------------------------------------------------------------------------------------

def test_compile_package_imports_only_stdlib_api_and_engine() -> None:
    import sys

    pkg = Path(__file__).resolve().parents[2] / "operator" / "klaxon" / "compile"
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 1:
                    assert module in ("", "engine_rule", "promql", "prometheusrule", "query"), (path, module)
                elif node.level == 2:
                    assert module.split(".")[0] in ("api", "engine"), (path, module)
                else:
                    assert node.level == 0 and module.split(".")[0] in sys.stdlib_module_names, (path, module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in sys.stdlib_module_names, (path, alias.name)


def test_trigger_is_checked_against_the_configs_default_interval() -> None:
    from klaxon.api import AlertConfigSpec, AlertRuleSpec
    from klaxon.compile import compile_rule

    spec = AlertRuleSpec.model_validate(
        {"query": {"metric": "up"}, "condition": {"threshold": 1},
         "trigger": {"requiredViolations": 5, "violationWindow": "5m"}}
    )
    assert compile_rule("r", "ns", spec).problems == []  # 5 evaluations of 1m fit in 5m
    slow = AlertConfigSpec.model_validate({"defaults": {"interval": "2m"}})
    (problem,) = compile_rule("r", "ns", spec, slow).problems
    assert problem.startswith("spec.trigger.requiredViolations: 5 violations cannot fit in 5m at one evaluation per 2m")


def test_a_level_without_for_inherits_trigger_for() -> None:
    """Level.for defaults to trigger.for, as level.violations defaults to trigger.requiredViolations."""
    r = compile_rule("r", "ns", spec(condition={"operator": "gt"}, trigger={"for": "5m"},
                                     levels={"warning": {"threshold": 1}, "critical": {"threshold": 2, "for": "10m"}}))
    assert [(a["labels"]["severity"], a.get("for")) for a in alerts(r)] == [("warning", "5m"), ("critical", "10m")]
    r = compile_rule("r", "ns", spec(condition={"operator": "gt"},
                                     levels={"warning": {"threshold": 1}, "critical": {"threshold": 2}}))
    assert [(a["labels"]["severity"], a.get("for")) for a in alerts(r)] == [("warning", None), ("critical", None)]


