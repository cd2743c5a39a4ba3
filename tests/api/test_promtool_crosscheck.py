"""Klaxon's PromQL and template verdicts against the real `promtool check rules`, case by case.

Each table is judged by one promtool run (one alerting rule per case). The only accepted
differences are what newer Prometheus releases added (the installed promtool may be older):
they are listed with the reason, and the test checks promtool still refuses them for that reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from klaxon.api import gotemplate
from klaxon.api.manifests import load_file
from klaxon.api.syntax import promql_problem
from support.promtool import verdicts

from .corpus import VALID

TEMPLATES = [
    # valid
    "Instance {{ $labels.instance }} is down",
    "{{ $value | humanize }}",
    "{{ if $value }}x{{ end }}",
    "{{ range $i, $v := $labels }}{{ $i }}={{ $v }} {{ end }}",
    "{{ $x := 1 }}{{ $x }}",
    "}} plain text {",
    "{{- $value -}}",
    "{{/* a comment */}}",
    "{{- /* trimmed comment */ -}}",
    "{{ `raw {{ string` }}",
    "{{ 0x1F }} {{ 1e3 }} {{ 1_000 }} {{ 0b101 }} {{ 0o17 }} {{ 017 }} {{ .5 }} {{ -1 }} {{ 'a' }} {{ '\\n' }}",
    '{{ printf "%s" $labels.a }}',
    '{{ $labels.a | toUpper | printf "%s" }}',
    "{{ (humanize $value) }}",
    "{{ with $labels.x }}{{ . }}{{ else }}none{{ end }}",
    "{{ if $value }}a{{ else if $labels }}b{{ else }}c{{ end }}",
    "{{ range $labels }}{{ break }}{{ end }}",
    "{{ range $labels }}{{ continue }}{{ end }}",
    '{{ define "x" }}y{{ end }}{{ template "x" }}',
    '{{ block "b" . }}x{{ end }}',
    '{{ $labels.instance | reReplaceAll "(.*):.*" "$1" }}',
    "{{ .Labels.job }} {{ $externalLabels.region }} {{ $externalURL }} {{ $.Value }}",
    '{{ stripPort "a:1" }} {{ parseDuration "1m" }} {{ humanizeDuration $value }} {{ title "x" }}',
    '{{ index $labels "a" }} {{ len $labels }} {{ html "x" }} {{ js "x" }} {{ slice "abc" 1 }}',
    "{{ $value = 3 }}",
    "{{ len | }}",
    "{{ nil }}",
    "{{ with $x := $labels }}{{ $x }}{{ end }}",
    '{{ query "up" | first | value }}',
    '{{ range query "up" }}{{ .Labels.instance }}{{ end }}',
    "{{\n$value\n}}",
    "{{ `a\nb` }}",
    "{ $labels.instance }}",
    "{{{ $value }}}",
    "{{ and }} {{ call }}",
    # invalid
    "Instance {{ $labels.instance is down",
    "{{ foo }}",
    "{{ $nope }}",
    "{{ if $value }}x",
    "{{ end }}",
    "{{ else }}",
    "{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}",
    "{{ }}",
    "{{ /* spaced comment */ }}",
    "{{/* c */ }}",
    '{{ "unterminated }}',
    "{{ 1.2.3 }}",
    "{{ 5x }}",
    "{{ 09 }}",
    "{{ 1 | 2 }}",
    "{{ (humanize $value }}",
    "{{ humanize $value) }}",
    "{{ if 1 }}{{ else }}{{ else }}{{ end }}",
    "{{ break }}",
    "{{ continue }}",
    "{{ if true }}{{ break }}{{ end }}",
    "{{ template x }}",
    "{{ true.x }}",
    "{{ range $k, $v, $w := $labels }}{{ end }}",
    "{{ if $a, $b := 1 }}{{ end }}",
    "{{ | len }}",
    '{{ define "a" }}{{ $labels }}{{ end }}',
    '{{ "\\q" }}',
    "{{ 'ab' }}",
    "{{ () }}",
    "{{ if }}{{ end }}",
    "{{ range }}{{ end }}",
    "{{ else if }}",
    "{{ range $labels }}{{ else if true }}{{ end }}",
    "{{ with $labels }}{{ else if true }}{{ end }}",
    "{{ range $labels }}{{ else if true }}{{ end }}{{ end }}",
    "{{ $labels.instance }",
    "{{ humanize $value }} {{",
    "{{ $value := }}",
    "{{ := 1 }}",
    '{{ "a\nb" }}',
    '{{ tmpl "x" }}',
    "{{ $value ! 1 }}",
    "{{ lower $labels.owner }}",
]
# Functions and syntax of newer Prometheus (Go) releases than the installed promtool may know.
NEWER_TEMPLATES = {
    "{{ toDuration 5 }}": "toDuration: Prometheus 2.45",
    "{{ now }}": "now: Prometheus 2.45",
    "{{ (now).Unix }}": "now: Prometheus 2.45",
    '{{ urlQueryEscape "a b" }}': "urlQueryEscape: Prometheus 3.x",
    "{{ with $labels }}{{ else with $value }}{{ end }}": "else with: Go 1.23",
}

EXPRESSIONS = [
    # valid
    "up == 0", "up offset -5m", "up @ 100", "up @ start()", "histogram_quantile(0.9, rate(x[5m]))", "up[5m:1m]",
    "up[5m:]", "x and on() y", 'label_replace(up, "a", "$1", "b", "(.*)")', "absent_over_time(up[5m])", "x[1d]",
    "x[5m1s]", 'up{a="b",}', '"abc"', "quantile(2, up)", "present_over_time(up[5m])", "group(up)", "up{}",
    "x == bool y", "(((((up)))))", "up #comment\n > 1", "x > bool 1", "1 > bool 2", "-up", "--up", "+up",
    "up unless ignoring(a) down", "a / on(x) group_left(y) b", "sum without (a) (x)", "sum(x) without (a)",
    'count_values("v", up)', "topk(3, up)", "max_over_time(up[5m:30s])", "predict_linear(up[1h], 3600)", "time()",
    "vector(1)", "scalar(up)", "clamp(up, 0, 1)", "last_over_time(up[5m])", "day_of_week()", "histogram_count(up)",
    "histogram_fraction(0, 1, up)", "sort_desc(up)", "up ^ 2 ^ 3", "atan2(up, up)", "up atan2 up", "pi()",
    'label_join(up, "a", ",", "b")', "up[5m] offset 1h", "rate(up[5m] @ 100)", 'up{__name__=~"a.*"}',
    '{__name__="up"}', '{a=~".+"}', "1", "-1", "0x10", "1e3", "Inf", "-Inf", "NaN", "up[1y]", "up[1w]",
    "up offset 1y", "sum(x) by ()", 'up{a=~"(?i)x"}', 'up{a=~"\\\\d"}', "rate(up[5m:1m])", "up > 1e308",
    "quantile_over_time(0.5, up[5m])", "holt_winters(up[5m], 0.5, 0.5)", "`raw`", "'single'",
    "sum(rate(x[5m])) by (job)", "max_over_time(up[30m:1m] @ end())",
    # invalid
    "rate(x[5m]", "rat(x[5m])", "sum(rate(x[5x]))", "x +* y", "foo bar", "sum by a (x)", "1 2", "x ^ ",
    'up{job="a}', "sum(x))", "up[5m", 'up{job=~"a("}', "up{a=b}", "rate(up)", "x[:1m]", "sum(rate(x[5m])) by (job",
    "abs()", "{}", "up\n and\n rat(x)", 'topk("a", up)', "up offset", "NaN > 1", "x[0m]", "x[5m] + 1",
    'up{job=~"a)"}', "count_values(1, up)", "up{a}", "rate(up[5m], 1)", "a / on(x) group_left(y) group_right b",
    "up[-5m]", '{a=""}', '{a=~".*"}', "x offset 5m offset 5m", "x @ 1 @ 2", "5m", "up - 5m", "up @ 5m", "1e400",
    "max_over_time(up[30m:1m]) @ end()", "info(up)", 'sort_by_label(up,"a")', "limitk(2, up)",
    "mad_over_time(up[5m])", "double_exponential_smoothing(up[5m],0.5,0.5)", "ts_of_max_over_time(up[5m])",
]  # fmt: skip
# Functions Prometheus 3.x has outside the experimental flag; older promtool calls them unknown.
NEWER_EXPRESSIONS = {"histogram_avg(up)": "Prometheus 3.0", "histogram_stddev(up)": "Prometheus 3.0"}


def _compare(items: list[str], ours: list[str | None], theirs: list[str | None]) -> list[str]:
    return [
        f"{item!r}: klaxon {'accepts' if mine is None else 'refuses: ' + mine}; "
        f"promtool {'accepts' if real is None else 'refuses: ' + real}"
        for item, mine, real in zip(items, ours, theirs, strict=True)
        if (mine is None) != (real is None)
    ]


@pytest.mark.parametrize("where", ["annotation", "label"])
def test_templates_agree_with_promtool(where: str) -> None:
    cases = TEMPLATES + list(NEWER_TEMPLATES)
    real = verdicts(cases, where)
    ours = [gotemplate.problem(t) for t in cases]
    table = dict(zip(cases, zip(ours, real, strict=True), strict=True))
    assert sum(1 for mine, _ in table.values() if mine is None) >= 30
    assert sum(1 for mine, _ in table.values() if mine is not None) >= 30
    assert _compare(TEMPLATES, ours[: len(TEMPLATES)], real[: len(TEMPLATES)]) == []
    for case, why in NEWER_TEMPLATES.items():
        mine, theirs = table[case]
        assert mine is None, f"{case!r} ({why}) should be accepted: {mine}"
        assert theirs is not None, f"promtool now accepts {case!r}: move it to TEMPLATES"


def test_expressions_agree_with_promtool() -> None:
    cases = EXPRESSIONS + list(NEWER_EXPRESSIONS)
    real = verdicts(cases, "expr")
    ours = [promql_problem(e) for e in cases]
    assert sum(1 for mine in ours if mine is None) >= 60 and sum(1 for mine in ours if mine is not None) >= 40
    assert _compare(EXPRESSIONS, ours[: len(EXPRESSIONS)], real[: len(EXPRESSIONS)]) == []
    for case, mine, theirs in zip(NEWER_EXPRESSIONS, ours[len(EXPRESSIONS) :], real[len(EXPRESSIONS) :], strict=True):
        assert mine is None and theirs is not None and "unknown function" in theirs, (case, mine, theirs)


def test_positions_match_promtool_where_it_names_one() -> None:
    """promtool says `1:C: parse error` for these; Klaxon points at the same column."""
    cases = {"up - 5m": 6, "up @ 5m": 6, "x +* y": 4, "foo bar": 5, "rat(x[5m])": 1, "sum(rate(x[5x]))": 12}
    for expr, column in cases.items():
        problem = promql_problem(expr)
        assert problem is not None and f"line 1, column {column}:" in problem, (expr, problem)


def _valid_corpus_items() -> tuple[list[str], list[str]]:
    exprs: list[str] = []
    templates: list[str] = []
    for path in VALID:
        for doc in load_file(Path(path)):
            spec = (doc.body or {}).get("spec") or {}
            if doc.body.get("kind") != "AlertRule":
                continue
            queries = [spec.get("query") or {}] + [
                c.get("query") or {} for c in (spec.get("condition") or {}).get("conditions") or []
            ]
            exprs += [q["expr"] for q in queries if q.get("expr")]
            templates += [v for v in {**(spec.get("labels") or {}), **(spec.get("annotations") or {})}.values() if v]
    return exprs, templates


def test_promtool_accepts_the_valid_corpus() -> None:
    exprs, templates = _valid_corpus_items()
    assert len(exprs) >= 3 and len(templates) >= 5
    assert [e for e, v in zip(exprs, verdicts(exprs, "expr"), strict=True) if v] == []
    assert [t for t, v in zip(templates, verdicts(templates, "annotation"), strict=True) if v] == []
