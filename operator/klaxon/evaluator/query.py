"""PromQL the evaluator sends for a rule's query (SEMANTICS §2: `M{sel}` = metric with matchers, `G` = splitBy).

Mirrors the compiler's building blocks (escaping, the left-open window) so the evaluator and
the generated PrometheusRule query the very same value; when `klaxon.compile.promql` is on the
branch these helpers should be replaced by it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from klaxon.api.alertrule import Query
from klaxon.api.common import format_duration, parse_duration

_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_STRING_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\v": "\\v",
}
_OVER_TIME = {"avg": "avg", "min": "min", "max": "max", "sum": "sum", "count": "count", "last": "last"}
_OUTER = {"min": "min", "max": "max", "sum": "sum", "count": "sum"}
_MS = 0.001


def string_literal(value: str) -> str:
    """`value` as a double-quoted PromQL string (Go escapes; control characters as \\xNN)."""
    out = []
    for ch in value:
        esc = _STRING_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def regex_quote(value: str) -> str:
    """RE2 pattern matching exactly `value` (Go's regexp.QuoteMeta)."""
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in value)


def number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def window(seconds: float) -> str:
    """`[W]` selecting the left-open (t-W, t] on Prometheus 2.x (closed ranges, ms timestamps) and 3.x."""
    return format_duration(max(seconds - _MS, _MS))


def matchers(selector: Mapping[str, str] | None, scope: Mapping[str, Sequence[str]] | None) -> list[str]:
    out = [f"{name}={string_literal(value)}" for name, value in sorted((selector or {}).items())]
    for name, values in sorted((scope or {}).items()):
        unique = sorted(set(values))
        if len(unique) == 1:
            out.append(f"{name}={string_literal(unique[0])}")
        else:
            out.append(f"{name}=~{string_literal('|'.join(regex_quote(v) for v in unique))}")
    return out


def series_selector(q: Query) -> str:
    """`M{sel}` for a metric query, `(expr)` for a raw expression."""
    if q.metric is None:
        return f"({q.expr or ''})"
    inner = ",".join(matchers(q.selector, q.scope))
    return f"{q.metric}{{{inner}}}" if inner else q.metric


def raw_range(q: Query, seconds: float, step_s: float) -> str:
    """The raw samples in (t-seconds, t]: `M{sel}[W]`, or a subquery `(expr)[W:step]` for a raw expression."""
    if q.metric is not None:
        return f"{series_selector(q)}[{window(seconds)}]"
    return f"{series_selector(q)}[{window(seconds)}:{format_duration(step_s)}]"


def _aggregate(op: str, labels: Sequence[str], expr: str) -> str:
    return f"{op} by ({', '.join(labels)}) ({expr})" if labels else f"{op}({expr})"


def value_query(q: Query, step_s: float = 60.0) -> str:
    """The value compared with the condition at t, one result per splitBy group.

    Metric: `avg by (G) (avg_over_time(M{sel}[W]))` (outer min/max/sum for min/max/sum, sum for
    count, avg otherwise). Raw expression: `(expr)`, aggregated by G when splitBy is set.
    """
    if q.metric is None:
        expr = series_selector(q)
        return _aggregate("avg", q.split_by, expr) if q.split_by else expr
    rng = raw_range(q, parse_duration(q.window), step_s)
    agg = q.aggregation
    inner = (
        f"quantile_over_time({number(int(agg[1:]) / 100)}, {rng})"
        if agg.startswith("p")
        else f"{_OVER_TIME[agg]}_over_time({rng})"
    )
    return _aggregate(_OUTER.get(agg, "avg"), q.split_by, inner)


def count_query(q: Query, step_s: float = 60.0) -> str:
    """Samples per group in (t-W, t]: the value of an absence rule (missing groups count 0)."""
    return _aggregate("sum", q.split_by, f"count_over_time({raw_range(q, parse_duration(q.window), step_s)})")
