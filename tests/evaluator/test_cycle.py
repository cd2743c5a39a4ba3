"""Evaluator cycles over a real Prometheus with backfilled data."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.helpers import MIN, T0, Recorder, minutes, rule
from klaxon.api.alertrule_status import ActiveSeries, AlertRuleStatus
from klaxon.compile.engine_rule import engine_rule
from klaxon.compile.query import value_query
from klaxon.engine import compute_bounds, step
from klaxon.engine.types import SeriesState
from klaxon.evaluator import Evaluator
from klaxon.prom.client import PrometheusClient

START, END = T0, T0 + 120 * MIN
HOT = T0 + 30 * MIN  # device a runs hot from here


def cpu_series() -> list:
    return [
        ({"__name__": "cpu", "device": "a", "site": "s1"}, minutes(START, END, lambda t: 90.0 if t >= HOT else 10.0)),
        ({"__name__": "cpu", "device": "b", "site": "s1"}, minutes(START, END, 10.0)),
        ({"__name__": "cpu", "device": "c", "site": "s1"}, minutes(START, END, 50.0)),
        # same device name on another site: the selector must keep it out
        ({"__name__": "cpu", "device": "a", "site": "s2"}, minutes(START, END, 1000.0)),
        # a value that needs escaping in a matcher
        ({"__name__": "cpu", "device": "q", "site": 'we"ird\\'}, minutes(START, END, 95.0)),
        ({"__name__": "mem", "device": "x"}, minutes(START, T0 + 40 * MIN, 90.0)),
        ({"__name__": "mem", "device": "y"}, minutes(START, END, 90.0)),
    ]


def assert_valid_status(status: dict) -> None:
    """The status fits the AlertRule CRD's status schema (the pydantic model it is generated from)."""
    known = {f.alias or n for n, f in AlertRuleStatus.model_fields.items()}
    assert set(status) <= known, set(status) - known
    series_fields = {f.alias or n for n, f in ActiveSeries.model_fields.items()}
    for item in status["activeSeries"]:
        assert set(item) <= series_fields
    AlertRuleStatus.model_validate(status)


STATIC = {
    "query": {"metric": "cpu", "selector": {"site": "s1"}, "splitBy": ["device"], "window": "5m"},
    "condition": {"operator": "gt", "threshold": 80},
}


@pytest.fixture
def cpu(prometheus_server):
    return prometheus_server(series=cpu_series())


async def test_static_threshold_split_by_fires_the_right_series(cpu) -> None:
    rec = Recorder()
    async with PrometheusClient(cpu.url) as client:
        ev = Evaluator(client, notifier=rec)
        ev.set_rules([rule("hot", STATIC)])
        t = HOT + 10 * MIN + 30
        res = await ev.cycle(t)
        status = res.rules["default/hot"].status
        assert status["state"] == "Firing" and status["level"] == "warning"
        assert status["activeSeriesCount"] == 1
        (active,) = status["activeSeries"]
        assert active["labels"] == {"device": "a"} and active["value"] == 90.0
        assert active["engineState"]["state"] == "Firing"
        assert status["lastEvaluation"]["value"] == 90.0
        assert status["firingSince"] is not None
        states = ev.states("uid-default-hot")
        by_device = {dict(k)["device"]: s.state for k, s in states.items()}
        assert by_device == {"a": "Firing", "b": "Inactive", "c": "Inactive"}
        assert [(n.labels, n.transition.to_state) for n in rec.seen] == [({"device": "a"}, "Firing")]
        assert_valid_status(status)
        # before device a ran hot nothing fires
        ev2 = Evaluator(client)
        ev2.set_rules([rule("hot", STATIC)])
        early = await ev2.cycle(HOT - 10 * MIN)
        assert early.rules["default/hot"].status["state"] == "Inactive"


async def test_selector_values_are_escaped(cpu) -> None:
    body = {**STATIC, "query": {**STATIC["query"], "selector": {"site": 'we"ird\\'}}}
    async with PrometheusClient(cpu.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("weird", body)])
        status = (await ev.cycle(HOT)).rules["default/weird"].status
        assert status["state"] == "Firing"
        assert status["activeSeries"][0]["labels"] == {"device": "q"}


async def test_scope_lists_match_literally(cpu) -> None:
    body = {**STATIC, "query": {**STATIC["query"], "selector": None, "scope": {"device": ["b", "c"]}}}
    body["query"] = {k: v for k, v in body["query"].items() if v is not None}
    async with PrometheusClient(cpu.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("scoped", {**body, "condition": {"operator": "gt", "threshold": 5}})])
        await ev.cycle(HOT + 10 * MIN)
        assert {dict(k)["device"] for k in ev.states("uid-default-scoped")} == {"b", "c"}


async def test_rules_sharing_a_query_share_one_http_request(cpu) -> None:
    other = {**STATIC, "condition": {"operator": "lt", "threshold": 20}}
    different = {**STATIC, "query": {**STATIC["query"], "window": "10m"}}
    async with PrometheusClient(cpu.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("hot", STATIC), rule("cold", other), rule("slow", different)])
        before = cpu.http_requests("/api/v1/query")
        res = await ev.cycle(HOT + 10 * MIN)
        after = cpu.http_requests("/api/v1/query")
        assert res.queries == 2 and client.requests == 2
        assert after - before == 2
        assert res.rules["default/hot"].status["state"] == "Firing"
        cold = res.rules["default/cold"].status
        assert cold["state"] == "Firing" and {tuple(a["labels"].values()) for a in cold["activeSeries"]} == {("b",)}


async def test_no_series_at_all_is_no_data(cpu) -> None:
    body = {**STATIC, "query": {"metric": "does_not_exist", "window": "5m"}}
    async with PrometheusClient(cpu.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("nothing", body)])
        status = (await ev.cycle(HOT)).rules["default/nothing"].status
        assert status["state"] == "NoData"


async def test_missing_series_resolves_after_two_evaluations(cpu) -> None:
    gone = T0 + 40 * MIN  # device x stops reporting; y goes on
    mem = {
        "query": {"metric": "mem", "splitBy": ["device"], "window": "5m"},
        "condition": {"operator": "gt", "threshold": 80},
    }
    rec = Recorder()
    async with PrometheusClient(cpu.url) as client:
        ev = Evaluator(client, notifier=rec)
        ev.set_rules([rule("mem", mem)])
        assert (await ev.cycle(T0 + 20 * MIN)).rules["default/mem"].status["activeSeriesCount"] == 2
        first = await ev.cycle(gone + 6 * MIN)  # x's window is empty: one missing sample
        assert first.rules["default/mem"].status["activeSeriesCount"] == 2
        second = await ev.cycle(gone + 7 * MIN)
        status = second.rules["default/mem"].status
        assert status["state"] == "Firing" and [a["labels"] for a in status["activeSeries"]] == [{"device": "y"}]
        resolved = [(n.labels, n.transition.to_state, n.transition.reason) for n in rec.seen[2:]]
        assert resolved == [({"device": "x"}, "Inactive", "MissingSeries")]


def test_value_query_shape() -> None:
    from evaluator.helpers import spec

    q = spec(STATIC).query
    assert q is not None
    assert value_query(q, 60.0) == 'avg by (device) (avg_over_time(cpu{site="s1"}[4m59s999ms]))'


# -- dynamic -------------------------------------------------------------------------------

WEEK = 7 * 86400.0
T_DYN = T0 + 30 * MIN


def lat_series() -> list:
    pts: list[tuple[float, float]] = []
    # baseline windows (t - k·7d - 10m, t - k·7d] for k = 1, 2: values 100, 110, 90, 100, ...
    for k, vals in ((2, (90.0, 100.0)), (1, (100.0, 110.0))):
        end = T_DYN - k * WEEK
        pts += [(end - 9 * MIN + i * MIN, vals[i % 2]) for i in range(10)]
    pts += minutes(T0, T0 + 60 * MIN, 200.0)
    return [({"__name__": "latency", "svc": "api"}, pts)]


DYNAMIC = {
    "query": {"metric": "latency", "selector": {"svc": "api"}, "window": "10m"},
    "condition": {"type": "dynamic", "dynamic": {"mode": "stddev", "stddevMultiplier": 2, "lookbackWeeks": 2}},
}


async def test_dynamic_stddev_rule_uses_raw_weekly_baselines(prometheus_server) -> None:
    prom = prometheus_server(series=lat_series())
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("lat", DYNAMIC)])
        res = await ev.cycle(T_DYN)
        assert res.queries == 3  # the value + one raw query per lookback week
        status = res.rules["default/lat"].status
        assert status["state"] == "Firing" and status["lastEvaluation"]["value"] == 200.0

    # the same decision straight from the engine on the same raw samples
    er = engine_rule(ev.rules[0].spec, key="default/lat")
    (_labels, pts) = lat_series()[0]
    t = np.array([p[0] for p in pts])
    v = np.array([p[1] for p in pts])
    b = compute_bounds(er, np.array([T_DYN]), t, v).at(0)
    assert b.expected == pytest.approx(100.0) and b.n_points == 20
    assert b.upper["warning"] == pytest.approx(100 + 2 * np.sqrt(50))
    new, trs = step(er, SeriesState(), T_DYN, 200.0, b)
    assert new.state == "Firing" and [tr.to_state for tr in trs] == ["Firing"]


async def test_dynamic_rule_inside_the_band_stays_inactive(prometheus_server) -> None:
    series = lat_series()
    labels, pts = series[0]
    pts = [(t, 105.0 if t >= T0 else v) for t, v in pts]
    prom = prometheus_server(series=[(labels, pts)])
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("lat", DYNAMIC)])
        status = (await ev.cycle(T_DYN)).rules["default/lat"].status
        assert status["state"] == "Inactive" and status["lastEvaluation"]["value"] == 105.0


@pytest.mark.parametrize(
    "query",
    [
        {"metric": "cpu", "selector": {"site": 'we"ird\\\n'}, "splitBy": ["device"], "window": "5m"},
        {"metric": "cpu", "scope": {"device": ["a.b", "c|d", "e"]}, "window": "90s", "aggregation": "p95"},
        {"metric": "cpu", "splitBy": ["device", "site"], "window": "10m", "aggregation": "count"},
        {"expr": 'sum by (device) (rate(x{a="b"}[5m]))', "splitBy": ["device"]},
    ],
)
def test_evaluator_queries_the_value_the_compiler_compiles(query: dict) -> None:
    """One implementation of escaping and aggregation: the evaluator's value is the compiled rule's X."""
    from evaluator.helpers import spec
    from klaxon.compile import compile_rule

    s = spec({"query": query, "condition": {"operator": "gt", "threshold": 80}})
    assert s.query is not None
    res = compile_rule("r", "default", s)
    (alert,) = [r for r in res.groups[0]["rules"] if "alert" in r]
    assert alert["expr"] == f"{value_query(s.query, 60.0)} > 80"
