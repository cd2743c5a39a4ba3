"""PromQL the evaluator sends for a rule's query (SEMANTICS §2: `M{sel}` = metric with matchers, `G` = splitBy).

Built from the compiler's own building blocks (`klaxon.compile.promql`: escaping, matchers,
the left-open window), so the evaluator and the generated PrometheusRule query the very
same value with one implementation of escaping.
"""

from __future__ import annotations

from klaxon.api.alertrule import Query
from klaxon.api.common import format_duration, parse_duration
from klaxon.compile.promql import aggregate, matchers, outer, over_time, paren, selector, window


def series_selector(q: Query) -> str:
    """`M{sel}` for a metric query, `(expr)` for a raw expression."""
    if q.metric is None:
        return paren(q.expr or "")
    return selector(q.metric, matchers(q.selector, q.scope))


def raw_range(q: Query, seconds: float, step_s: float) -> str:
    """The raw samples in (t-seconds, t]: `M{sel}[W]`, or a subquery `(expr)[W:step]` for a raw expression."""
    if q.metric is not None:
        return f"{series_selector(q)}[{window(seconds)}]"
    return f"{series_selector(q)}[{window(seconds)}:{format_duration(step_s)}]"


def value_query(q: Query, step_s: float = 60.0) -> str:
    """The value compared with the condition at t, one result per splitBy group.

    Metric: `avg by (G) (avg_over_time(M{sel}[W]))` (outer min/max/sum for min/max/sum, sum for
    count, avg otherwise). Raw expression: `(expr)`, aggregated by G when splitBy is set.
    """
    if q.metric is None:
        expr = series_selector(q)
        return aggregate("avg", q.split_by, expr) if q.split_by else expr
    rng = raw_range(q, parse_duration(q.window), step_s)
    return aggregate(outer(q.aggregation), q.split_by, over_time(q.aggregation, rng))


def count_query(q: Query, step_s: float = 60.0) -> str:
    """Samples per group in (t-W, t]: the value of an absence rule (missing groups count 0)."""
    return aggregate("sum", q.split_by, f"count_over_time({raw_range(q, parse_duration(q.window), step_s)})")
