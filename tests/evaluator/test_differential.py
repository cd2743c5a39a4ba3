"""Differential: compiled PrometheusRule, evaluator and preview fire the same series at every evaluation.

SEMANTICS §1: whatever compiles to PromQL must give the same answer as the engine on the same
data. Hypothesis generates batches of valid AlertRules that compile fully to PromQL — metric and
raw-expr queries, every aggregation, with and without splitBy, scopes whose values are regex
metacharacters (with decoy series an unescaped pattern would admit), every operator, static
thresholds, bands, warning/critical levels, absence and composite conditions, `for`, M-of-V
counting and delayed recovery — with random series. Each batch runs in one Prometheus (one
backfill) and one `promtool test rules`; see support/differential.py for how.

Deterministic in CI: derandomized, no example database, no shrinking (each run takes seconds; the
failure names the rule, the evaluation and both sides instead).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, example, given, settings

from support.differential import EVALS, SAMPLES, Case, batches, run_batch
from support.prometheus import PROMTOOL

BATCHES = 4
BATCH_SIZE = 56  # 224 generated rules


def _continuous(values: list[float]) -> dict[int, float]:
    return {i: values[i % len(values)] for i in range(SAMPLES)}


def _sum_avg_regression() -> list[Case]:
    """Issue 14: a raw expr with `aggregation: sum` and `splitBy: [job]` was `sum by (job)` when compiled
    and `avg by (job)` in the evaluator. Two series of job j0 at 6 and 7: the sum (13) is above 10, the
    average (6.5) is not; job j1 alone at 4 stays below either way."""
    series = {"m": [
        ({"job": "j0", "dev": "a", "env": "prod"}, _continuous([6.0])),
        ({"job": "j0", "dev": "b", "env": "prod"}, _continuous([7.0])),
        ({"job": "j1", "dev": "c", "env": "prod"}, _continuous([4.0])),
    ]}
    rising = [float(v) for v in np.repeat(np.arange(0, 10), 16)]
    return [
        Case({"query": {"expr": "{m}", "aggregation": "sum", "splitBy": ["job"]},
              "condition": {"operator": "gt", "threshold": 10}}, series, why="expr, sum by job"),
        Case({"query": {"expr": "{m}", "aggregation": "max", "splitBy": ["job"]},
              "condition": {"operator": "gte", "threshold": 7}}, series, why="expr, max by job"),
        Case({"query": {"metric": "{m}", "aggregation": "sum", "splitBy": ["job"], "window": "1m"},
              "condition": {"operator": "gt", "threshold": 40}}, series, why="metric, sum by job"),
        # only dev "a.b" is in scope; the decoys (50) would lift the average if the scope were a raw regex
        Case({"query": {"metric": "{m}", "scope": {"dev": ["a.b", "c|d"]}, "window": "1m"},
              "condition": {"operator": "gt", "threshold": 5}},
             {"m": [({"job": "j0", "dev": "a.b", "env": "prod"}, _continuous(rising)),
                    *(({"job": "j0", "dev": d, "env": "prod"}, _continuous([50.0])) for d in ("axb", "c", "d"))]},
             why="scope values are literal"),
    ]


def test_differential_compiled_evaluator_preview(prometheus_server) -> None:
    done: list[int] = []
    stats: dict[str, float] = {}

    @settings(max_examples=BATCHES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], print_blob=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example, HealthCheck.function_scoped_fixture])
    @given(batch=batches(BATCH_SIZE))
    @example(batch=_sum_avg_regression())
    def check(batch: list[Case]) -> None:
        with tempfile.TemporaryDirectory(prefix="klaxon-diff-") as d:
            out = run_batch(batch, prometheus_server, Path(d), PROMTOOL)
        if batch[0].why:  # the explicit regression cases must fire, or they test nothing
            assert out.rules_firing == len(batch), out
            return
        done.append(out.rules)
        for k in ("rules_firing", "rules_quiet", "firing_points", "compared_points"):
            stats[k] = stats.get(k, 0) + getattr(out, k)

    check()
    assert sum(done) >= 200, done
    # the data exercise both outcomes: most rules fire at some point, most are quiet at some point
    assert stats["rules_firing"] >= 0.4 * sum(done), stats
    assert stats["rules_quiet"] >= 0.6 * sum(done), stats
    assert stats["compared_points"] == sum(done) * EVALS
