"""TEMPORARY stand-in for klaxon.compile.compile_rule until the compile branch lands (delete then)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec


@dataclass
class CompileResult:
    prometheus_rule: dict[str, Any] | None
    groups: list[dict[str, Any]] = field(default_factory=list)
    engine: Literal["prometheus", "evaluator"] = "prometheus"
    evaluator_reasons: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def compile_rule(name: str, namespace: str, spec: AlertRuleSpec, config: AlertConfigSpec | None = None,
                 uid: str | None = None) -> CompileResult:
    if spec.events is not None or spec.schedule is not None:
        return CompileResult(None, engine="evaluator", evaluator_reasons=["event rules and schedules need state"])
    expr = spec.query.expr if spec.query and spec.query.expr else f"{spec.query.metric if spec.query else 'up'}"
    cond = spec.condition
    op = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "==", "ne": "!="}[cond.operator if cond else "gt"]
    threshold = cond.threshold if cond is not None and cond.threshold is not None else 0
    groups = [{"name": f"klaxon.{namespace}.{name}", "rules": [
        {"alert": name, "expr": f"({expr}) {op} {threshold:g}", "for": spec.trigger.for_ or "0s",
         "labels": {"severity": spec.severity, **spec.labels}, "annotations": dict(spec.annotations)}]}]
    inputs = json.dumps([spec.dump(), config.dump() if config else None, uid], sort_keys=True, default=str)
    labels = dict(config.prometheus_rule.labels) if config else {}
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": f"klaxon-{name}", "namespace": namespace,
                         "labels": {**labels, "klaxon.dev/alertrule": name},
                         "annotations": {"klaxon.dev/input-hash": hashlib.sha256(inputs.encode()).hexdigest()[:16]}},
            "spec": {"groups": groups}}
    return CompileResult(rule, groups)
