"""The PromQL of a rule's query: one builder for the compiler, the evaluator and preview.

SEMANTICS §2, with the choices it leaves open:

- Value ``X`` of a metric query: ``OUTER by (G) (AGG_over_time(M{sel}[W]))``, G = splitBy (an
  empty G aggregates every series into one). OUTER is the aggregation itself for min, max
  and sum, ``sum`` for count (samples per group) and ``avg`` for avg, last and pNN.
- A raw ``expr`` is used as written, in parentheses: it carries its own ranges, so ``window``
  does not apply to its value. With splitBy its series are combined per group by the same
  OUTER as a metric's, so ``aggregation: sum`` sums them. Without splitBy every series of
  the expr is its own instance (``group_labels`` is None: the labels are the expr's).
- Raw samples of a raw expr are the expr evaluated every evaluation interval (a subquery).
- Windows are written ``W-1ms`` so they select (t-W, t] on Prometheus 2.x and 3.x.
"""

from __future__ import annotations

from ..api.alertrule import Query
from ..api.common import parse_duration
from .promql import aggregate, duration, matchers, number, paren, selector, window

# A group that vanished is remembered this long (at least) by the per-group absence query.
ABSENCE_MEMORY_SECONDS = 3600.0

_OVER_TIME = {"avg": "avg", "min": "min", "max": "max", "sum": "sum", "count": "count", "last": "last"}
_OUTER = {"min": "min", "max": "max", "sum": "sum", "count": "sum"}


def outer(aggregation: str) -> str:
    """How the series of one splitBy group combine: min/max/sum as such, sum for count, avg otherwise."""
    return _OUTER.get(aggregation, "avg")


def quantile(aggregation: str) -> float | None:
    """The quantile of a ``pNN`` aggregation (0.NN), None for the others."""
    return int(aggregation[1:]) / 100 if aggregation.startswith("p") else None


def over_time(aggregation: str, rng: str) -> str:
    """``AGG_over_time(rng)``; ``pNN`` is ``quantile_over_time(0.NN, rng)``."""
    q = quantile(aggregation)
    if q is not None:
        return f"quantile_over_time({number(q)}, {rng})"
    return f"{_OVER_TIME[aggregation]}_over_time({rng})"


def group_labels(q: Query) -> list[str] | None:
    """The labels of the query's value: splitBy, or None when unknown (raw expr without splitBy)."""
    if q.metric is None and not q.split_by:
        return None
    return list(q.split_by)


def series_selector(q: Query) -> str:
    """``M{sel}`` for a metric query (every label value quoted), ``(expr)`` for a raw expression."""
    if q.metric is None:
        return paren(q.expr or "")
    return selector(q.metric, matchers(q.selector, q.scope))


def raw_range(q: Query, seconds: float, step_s: float, offset: str = "") -> str:
    """The query's raw samples in (t-seconds, t], optionally shifted back by ``offset`` (``1w``):
    ``M{sel}[W]``, or the subquery ``(expr)[W:f]`` for a raw expression."""
    off = f" offset {offset}" if offset else ""
    if q.metric is not None:
        return f"{series_selector(q)}[{window(seconds)}]{off}"
    return f"{series_selector(q)}[{window(seconds)}:{duration(step_s)}]{off}"


def value_query(q: Query, step_s: float) -> str:
    """``X``: the value compared with the condition at t, one result per splitBy group.

    ``step_s`` is the evaluation interval (the step of a raw expression's subqueries).
    """
    if q.metric is None:
        expr = series_selector(q)
        return aggregate(outer(q.aggregation), q.split_by, expr) if q.split_by else expr
    rng = raw_range(q, parse_duration(q.window), step_s)
    return aggregate(outer(q.aggregation), q.split_by, over_time(q.aggregation, rng))


def absence_labels(q: Query) -> dict[str, str]:
    """The labels of a whole-selector absence: those ``absent_over_time`` gives its sample, i.e. the
    equality matchers of a metric query (selector, one-value scopes; none for a raw expr)."""
    if q.metric is None:
        return {}
    pairs = [*(q.selector or {}).items(), *((k, vs[0]) for k, vs in (q.scope or {}).items() if len(set(vs)) == 1)]
    names = [k for k, _ in pairs]
    return {k: v for k, v in sorted(pairs) if names.count(k) == 1}  # a name matched twice is dropped, as there


def count_query(q: Query, step_s: float) -> str:
    """Samples per group in (t-W, t]: the value an absence rule watches (a missing group counts 0).

    Without splitBy the one count carries ``absence_labels``, as the compiled absence alert does.
    """
    by = q.split_by or list(absence_labels(q))
    return aggregate("sum", by, f"count_over_time({raw_range(q, parse_duration(q.window), step_s)})")


def absence_query(q: Query, step_s: float) -> str:
    """What the compiled rule alerts on for an absence condition (SEMANTICS §2).

    Whole selector: ``absent_over_time``. Per group: a group seen within max(1h, 2·W) but
    not within W; a group gone for longer is forgotten (PromQL keeps no memory).
    """
    w = parse_duration(q.window)
    if not q.split_by:
        return f"absent_over_time({raw_range(q, w, step_s)})"
    memory = max(ABSENCE_MEMORY_SECONDS, 2 * w)
    seen = aggregate("group", q.split_by, f"present_over_time({raw_range(q, memory, step_s)})")
    recent = aggregate("group", q.split_by, f"present_over_time({raw_range(q, w, step_s)})")
    return f"{seen} unless {recent}"
