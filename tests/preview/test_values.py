"""The value of a query computed from data files, as its PromQL (klaxon.compile.query) defines it.

tests/evaluator/test_differential.py checks the same against a real Prometheus over generated
rules; these are the worked cases.
"""

from __future__ import annotations

import numpy as np
import pytest

from klaxon.api.alertrule import AlertRuleSpec
from klaxon.compile.engine_rule import engine_rule
from klaxon.preview.data import RawSeries
from klaxon.preview.run import FileSource, LoadedRule, PreviewError, group, run_preview, sample_values

T = 1782259200.0  # on the minute
GRID = np.array([T + 120])


def spec(query: dict, condition: dict | None = None) -> AlertRuleSpec:
    return AlertRuleSpec.model_validate({"query": query, "condition": condition or {"threshold": 1}})


def value(query: dict, series: list[RawSeries], condition: dict | None = None) -> list[float]:
    s = spec(query, condition)
    assert s.query is not None
    rule = engine_rule(s)
    return [float(sample_values(s.query, rule, GRID, m)[0]) for m in group(series, list(s.query.split_by))]


# host a: four samples of 10 in the last 2 minutes; host b: one sample of 0 (and an older 7)
A = RawSeries({"__name__": "m", "host": "a"}, T + np.array([30.0, 60, 90, 120]), np.full(4, 10.0))
B = RawSeries({"__name__": "m", "host": "b"}, T + np.array([-60.0, 120]), np.array([7.0, 0.0]))


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("avg", 5.0),  # avg by () of the per-series averages (10, 0), not the pooled mean 8
        ("sum", 40.0),  # sum of per-series sums
        ("count", 5.0),  # sum of per-series counts
        ("min", 0.0),
        ("max", 10.0),
        ("last", 5.0),  # avg of the series' last samples
        ("p50", 5.0),  # avg of the per-series medians (10, 0)
    ],
)
def test_metric_value_is_outer_of_each_series_over_time(aggregation: str, expected: float) -> None:
    assert value({"metric": "m", "window": "2m", "aggregation": aggregation}, [A, B]) == [expected]


def test_split_members_aggregate_their_own_series() -> None:
    assert value({"metric": "m", "window": "2m", "splitBy": ["host"]}, [A, B]) == [10.0, 0.0]


def test_raw_expr_data_are_its_values_without_a_window() -> None:
    """A raw expr is compared as it is at t (its latest value in the 5m lookback), not averaged over
    `window`; with splitBy its series combine by the rule's aggregation."""
    assert value({"expr": "m", "window": "2m"}, [B]) == [0.0]
    old = RawSeries({"host": "c"}, np.array([T - 100]), np.array([3.0]))  # 220 s old: still seen
    assert value({"expr": "m", "aggregation": "sum", "splitBy": ["job"]}, [A, B, old]) == [13.0]


def test_absence_counts_every_series_of_the_member() -> None:
    assert value({"metric": "m", "window": "2m"}, [A, B], {"type": "absence"}) == [5.0]


def test_composite_operand_with_several_series_is_refused() -> None:
    s = AlertRuleSpec.model_validate({"condition": {"type": "composite", "conditions": [
        {"name": "x", "query": {"metric": "m", "splitBy": ["host"]}, "threshold": 1},
        {"name": "y", "query": {"metric": "n"}, "threshold": 1},
    ]}})
    n = RawSeries({"__name__": "n"}, np.array([T]), np.array([1.0]))
    with pytest.raises(PreviewError, match=r"operand 'x' has 2 series .*one instance"):
        run_preview(LoadedRule("r", "default", s, "x.yaml"), FileSource([A, B, n]).fetch)
