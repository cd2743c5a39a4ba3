"""Run compiled rules through ``promtool test rules``: the real Prometheus rule engine as the oracle.

A scenario is a rule spec, synthetic input series and, per alert instance, a timeline with
one character per evaluation step: ``.`` no alert, ``P`` pending, ``F`` firing. Every step
is asserted (firing through ``alert_rule_test``, pending through the ``ALERTS`` series), so
each transition is pinned to its exact evaluation time, including the step before it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from klaxon.api.alertrule import AlertRuleSpec
from klaxon.api.common import parse_duration
from klaxon.compile import compile_rule, string_literal

NAME = "r"
NAMESPACE = "ns"


@dataclass
class Scenario:
    id: str
    spec: dict[str, Any]
    series: Sequence[tuple[str, str]]
    expect: Sequence[tuple[dict[str, str], str]]
    interval: str = "1m"
    start: int = 0  # the timeline's first character is evaluation step ``start``
    input_interval: str | None = None
    exp_annotations: dict[str, str] | None = None  # rendered annotations, when templated


def seq(*parts: tuple[Any, int]) -> str:
    """Input values from (value, count) runs; value ``_`` is a missing sample."""
    out = []
    for value, count in parts:
        if count <= 0:
            continue
        if value == "_":
            out.append(f"_x{count}")
        elif count == 1:
            out.append(str(value))
        else:
            out.append(f"{value}x{count - 1}")
    return " ".join(out)


def metric_string(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f"{k}={string_literal(v)}" for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def parse_timeline(text: str) -> str:
    return "".join(ch for ch in text if ch in ".PF")


def build_files(sc: Scenario, workdir: Path) -> tuple[Path, Path, dict[str, Any]]:
    spec = AlertRuleSpec.model_validate(sc.spec)
    result = compile_rule(NAME, NAMESPACE, spec)
    assert not result.problems, result.problems
    assert result.engine == "prometheus", result.evaluator_reasons
    groups = result.groups
    alerts = [r for r in groups[0]["rules"] if "alert" in r]
    alertname = alerts[0]["alert"]
    by_severity = {r["labels"]["severity"]: r for r in alerts}

    rules_path = workdir / f"{sc.id}.rules.yaml"
    rules_path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))

    f = parse_duration(sc.interval)
    timelines = [(labels, parse_timeline(tl)) for labels, tl in sc.expect]
    steps = max(len(tl) for _, tl in timelines)
    alert_tests = []
    promql_tests = []
    for i in range(steps):
        t = (sc.start + i) * f
        eval_time = f"{round(t)}s"
        firing, pending = [], []
        for labels, tl in timelines:
            state = tl[i] if i < len(tl) else "."
            severity = labels.get("severity", spec.severity)
            rule = by_severity[severity]
            full = {**rule["labels"], **labels}
            if state == "F":
                annotations = sc.exp_annotations
                if annotations is None:
                    annotations = rule.get("annotations", {})
                firing.append({"exp_labels": full, "exp_annotations": annotations})
            elif state == "P":
                pending.append({"labels": metric_string(
                    "ALERTS", {**full, "alertname": alertname, "alertstate": "pending"}), "value": 1})
        alert_tests.append({"eval_time": eval_time, "alertname": alertname, "exp_alerts": firing})
        promql_tests.append({
            "expr": f'ALERTS{{alertname="{alertname}",alertstate="pending"}}',
            "eval_time": eval_time,
            "exp_samples": pending,
        })
    test = {
        "rule_files": [rules_path.name],
        "evaluation_interval": sc.interval,
        "tests": [{
            "interval": sc.input_interval or sc.interval,
            "input_series": [{"series": s, "values": v} for s, v in sc.series],
            "alert_rule_test": alert_tests,
            "promql_expr_test": promql_tests,
        }],
    }
    test_path = workdir / f"{sc.id}.test.yaml"
    test_path.write_text(yaml.safe_dump(test, sort_keys=False, width=1000))
    return rules_path, test_path, {"groups": groups}


def run_promtool_test(promtool: str, test_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, "test", "rules", test_path.name], cwd=test_path.parent,
                          capture_output=True, text=True, timeout=600)


def run_promtool_check(promtool: str, rules_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, "check", "rules", str(rules_path)], capture_output=True, text=True,
                          timeout=120)
