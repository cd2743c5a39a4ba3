"""klaxon.compile: AlertRule (+ AlertConfig) -> PrometheusRule, as pure functions (no I/O)."""

from .prometheusrule import (
    CompileResult,
    alert_name_for,
    build_prometheus_rule,
    compile_rule,
    engine_problems,
    evaluator_reasons,
    name_for,
    rule_file,
)
from .promql import regex_quote, string_literal

__all__ = [
    "CompileResult",
    "alert_name_for",
    "build_prometheus_rule",
    "compile_rule",
    "engine_problems",
    "evaluator_reasons",
    "name_for",
    "regex_quote",
    "rule_file",
    "string_literal",
]
