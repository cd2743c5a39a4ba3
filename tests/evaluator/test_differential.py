"""Differential: the evaluator (engine on fetched data) agrees with the rule's PromQL in Prometheus.

SEMANTICS §1: whatever compiles to PromQL must give the same answer as the engine on the same
data. Prometheus evaluates the compiled expression at every evaluation time (the oracle); the
evaluator runs cycle after cycle over the same backfilled samples.
"""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.helpers import MIN, T0, rule
from klaxon.evaluator import Evaluator
from klaxon.prom.client import PrometheusClient

DEVICES = ("d1", "d2", "d3", "d4")


def noisy_series() -> list:
    rng = np.random.default_rng(7)
    out = []
    for dev in DEVICES:
        # samples 15 s off the evaluation grid, one a minute, around the threshold
        pts = [(T0 + 15 + i * MIN, float(np.round(rng.uniform(60, 100), 1))) for i in range(120)]
        out.append(({"__name__": "load", "device": dev}, pts))
    return out


QUERY = {"metric": "load", "splitBy": ["device"], "window": "3m"}
X = "avg by (device) (avg_over_time(load[2m59s999ms]))"

CASES = {
    "static": ({"query": QUERY, "condition": {"operator": "gt", "threshold": 80}}, f"{X} > 80"),
    "n_of_m": (
        {
            "query": QUERY,
            "condition": {"operator": "gte", "threshold": 82.5},
            "trigger": {"requiredViolations": 3, "violationWindow": "5m"},
        },
        f"count_over_time(({X} >= 82.5)[4m59s999ms:1m]) >= 3",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_firing_series_match_the_promql_oracle(prometheus_server, case: str) -> None:
    body, oracle = CASES[case]
    prom = prometheus_server(series=noisy_series())
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule(case, body)])
        compared = firing_seen = 0
        for i in range(10, 110):
            t = T0 + i * MIN
            status = (await ev.cycle(t)).rules[f"default/{case}"].status
            if i < 16:  # warm-up: the evaluator's violation window fills up
                continue
            ours = {a["labels"]["device"] for a in status["activeSeries"] if a["state"] == "Firing"}
            theirs = {s.labels["device"] for s in await client.query(oracle, t)}
            assert ours == theirs, f"t=T0+{i}m: evaluator {sorted(ours)} vs Prometheus {sorted(theirs)}"
            compared += 1
            firing_seen += len(ours)
        assert compared == 94
        assert 0 < firing_seen < compared * len(DEVICES)  # the data exercises both outcomes


def two_metric_series() -> list:
    rng = np.random.default_rng(11)
    out = []
    for metric, lo, hi in (("load", 60, 100), ("mem", 40, 90)):
        for dev in DEVICES:
            pts = [(T0 + 15 + i * MIN, float(np.round(rng.uniform(lo, hi), 1))) for i in range(120)]
            out.append(({"__name__": metric, "device": dev}, pts))
    return out


def composite(logic: str) -> dict:
    return {
        "condition": {
            "type": "composite",
            "logic": logic,
            "conditions": [
                {"name": "busy", "query": QUERY, "operator": "gt", "threshold": 80},
                {
                    "name": "full",
                    "query": {"metric": "mem", "splitBy": ["device"], "window": "2m", "aggregation": "max"},
                    "operator": "gte",
                    "threshold": 75,
                },
            ],
        },
    }


@pytest.mark.parametrize("logic", ["all", "any"])
async def test_composite_rules_match_their_compiled_promql(prometheus_server, logic: str) -> None:
    """Each operand is queried on its own; the combination equals the compiled `C1 and/or C2`."""
    from evaluator.helpers import spec
    from klaxon.compile import compile_rule

    body = composite(logic)
    ref = rule(f"comp-{logic}", body)  # engine: evaluator
    compiled = compile_rule(ref.name, ref.namespace, spec(body))  # engine: auto -> prometheus
    assert compiled.engine == "prometheus"
    (alert,) = [r for r in compiled.groups[0]["rules"] if "alert" in r]
    assert "for" not in alert and "keep_firing_for" not in alert
    oracle = alert["expr"]
    prom = prometheus_server(series=two_metric_series())
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([ref])
        compared = firing_seen = 0
        for i in range(10, 110):
            t = T0 + i * MIN
            res = await ev.cycle(t)
            assert res.queries == 2  # one query per operand
            status = res.rules[ref.key].status
            ours = {a["labels"]["device"] for a in status["activeSeries"] if a["state"] == "Firing"}
            theirs = {s.labels["device"] for s in await client.query(oracle, t)}
            assert ours == theirs, f"t=T0+{i}m: evaluator {sorted(ours)} vs Prometheus {sorted(theirs)}"
            compared += 1
            firing_seen += len(ours)
        assert compared == 100
        assert 0 < firing_seen < compared * len(DEVICES)
