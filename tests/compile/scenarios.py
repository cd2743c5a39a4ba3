"""Behaviour scenarios for ``promtool test rules``: every compiled mode, with exact timelines.

Unless a scenario says otherwise: f = 1m, one input sample per minute from t = 0, and
``window: 1m`` so the value X(t) is the sample at t. A timeline has one character per
evaluation step from ``start``: ``.`` nothing, ``P`` pending, ``F`` firing.
"""

from __future__ import annotations

from typing import Any

from compile_harness import Scenario, seq

H = {"host": "a"}
WARN = {"host": "a", "severity": "warning"}
CRIT = {"host": "a", "severity": "critical"}


def rule(condition: dict[str, Any], *, metric: str = "m", split: list[str] | None = None,
         window: str = "1m", **extra: Any) -> dict[str, Any]:
    q: dict[str, Any] = {"metric": metric, "window": window}
    if split is not None:
        q["splitBy"] = split
    q.update(extra.pop("query", {}))
    return {"query": q, "condition": condition, "annotations": {"summary": "s"}, **extra}


def vals(*values: Any) -> str:
    return " ".join(str(v) for v in values)


def hourly(points: dict[int, float], last: int) -> str:
    """Values for an input interval of 1h: ``points[h]`` at hour h, missing elsewhere up to ``last``."""
    runs: list[tuple[Any, int]] = []
    for h in range(last + 1):
        v: Any = points.get(h, "_")
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return seq(*runs)


WEEK = 168  # hours


def weekly(weeks: dict[int, float], current: list[float], hours: int = 10, k_max: int = 4) -> str:
    """Hourly data: week k ago (1..k_max) holds weeks[k] for ``hours`` hours; then ``current``."""
    start = k_max * WEEK
    points: dict[int, float] = {}
    for k, v in weeks.items():
        for j in range(hours):
            points[start - k * WEEK + j] = v
    for j, v in enumerate(current):
        points[start + j] = v
    return hourly(points, start + len(current) - 1)


def dynamic_rule(dyn: dict[str, Any], **cond: Any) -> dict[str, Any]:
    return rule({"type": "dynamic", "dynamic": dyn, **cond}, window="1h", split=["host"],
                evaluation={"interval": "1h"})


def dyn(id: str, spec: dict[str, Any], weeks: dict[int, float], current: list[float],
        expect: list[tuple[dict[str, str], str]], k_max: int = 4) -> Scenario:
    return Scenario(id, spec, [('m{host="a"}', weekly(weeks, current, k_max=k_max))], expect,
                    interval="1h", start=k_max * WEEK)


SCENARIOS: list[Scenario] = [
    # --- static thresholds -----------------------------------------------------------------
    Scenario("static_gt_for", rule({"operator": "gt", "threshold": 5}, split=["host"], trigger={"for": "2m"}),
             [('m{host="a"}', vals(0, 0, 6, 6, 6, 6, 0, 0))], [(H, "..PPFF..")]),
    Scenario("static_gt_strict", rule({"operator": "gt", "threshold": 5}, split=["host"]),
             [('m{host="a"}', vals(4, 5, 6, 5, 4))], [(H, "..F..")]),
    Scenario("static_gte_inclusive", rule({"operator": "gte", "threshold": 5}, split=["host"]),
             [('m{host="a"}', vals(4, 5, 6, 5, 4))], [(H, ".FFF.")]),
    Scenario("static_lt", rule({"operator": "lt", "threshold": 0.85}, split=["host"]),
             [('m{host="a"}', vals(0.9, 0.85, 0.84, 0.86, 0.5))], [(H, "..F.F")]),
    Scenario("static_lte", rule({"operator": "lte", "threshold": 10}, split=["host"]),
             [('m{host="a"}', vals(11, 10, 9, 10.5))], [(H, ".FF.")]),
    Scenario("static_eq", rule({"operator": "eq", "threshold": 3}, split=["host"]),
             [('m{host="a"}', vals(1, 3, 3, 2.999, 3))], [(H, ".FF.F")]),
    Scenario("static_ne", rule({"operator": "ne", "threshold": 0}, split=["host"]),
             [('m{host="a"}', vals(0, 1, 0, -1, 0))], [(H, ".F.F.")]),
    Scenario("band_both", rule({"type": "threshold", "upper": 10, "lower": 2}, split=["host"]),
             [('m{host="a"}', vals(5, 11, 10, 2, 1, 5))], [(H, ".F..F.")]),
    Scenario("band_lower_only_missing_sample", rule({"type": "threshold", "lower": 2}, split=["host"]),
             [('m{host="a"}', vals(5, 1, "_", 1, 3))], [(H, ".F.F.")]),
    Scenario("for_breaks_reset",
             rule({"operator": "gt", "threshold": 5}, split=["host"], trigger={"for": "3m"}),
             [('m{host="a"}', vals(6, 6, 0, 6, 6, 6, 6, 0))], [(H, "PP.PPPF.")]),
    # --- scope, selector, splitBy, aggregations -------------------------------------------------
    Scenario(
        "scope_selector_split",
        rule({"operator": "lt", "threshold": 0.85}, metric="model_accuracy", split=["device_id"],
             query={"selector": {"model_id": "v7", "class": "scratch"},
                    "scope": {"device_id": ["cam-01", "cam-02"]}}),
        [('model_accuracy{model_id="v7",class="scratch",device_id="cam-01"}', vals(0.9, 0.8, 0.8)),
         ('model_accuracy{model_id="v7",class="scratch",device_id="cam-02"}', vals(0.8, 0.9, 0.8)),
         ('model_accuracy{model_id="v7",class="scratch",device_id="cam-03"}', vals(0.1, 0.1, 0.1)),
         ('model_accuracy{model_id="v7",class="dent",device_id="cam-01"}', vals(0.1, 0.1, 0.1)),
         ('model_accuracy{model_id="v8",class="scratch",device_id="cam-02"}', vals(0.1, 0.1, 0.1))],
        [({"device_id": "cam-01"}, ".FF"), ({"device_id": "cam-02"}, "F.F")],
    ),
    Scenario("split_avg_across_series", rule({"operator": "gt", "threshold": 5}, split=["host"]),
             [('m{host="a",pod="1"}', vals(4, 8, 0)), ('m{host="a",pod="2"}', vals(4, 4, 20))],
             [(H, ".FF")]),
    Scenario("no_split_single_instance", rule({"operator": "gt", "threshold": 5}),
             [('m{host="a"}', vals(4, 8, 0)), ('m{host="b"}', vals(4, 4, 20))],
             [({}, ".FF")]),
    Scenario("agg_max_window", rule({"operator": "gt", "threshold": 5}, split=["host"], window="3m",
                                    query={"aggregation": "max"}),
             [('m{host="a"}', vals(0, 9, 0, 0, 0, 0))], [(H, ".FFF..")]),
    Scenario("agg_sum_window", rule({"operator": "gte", "threshold": 6}, split=["host"], window="3m",
                                    query={"aggregation": "sum"}),
             [('m{host="a"}', vals(2, 2, 2, 2, 1, 3))], [(H, "..FF.F")]),
    Scenario("agg_count_window", rule({"operator": "lt", "threshold": 3}, split=["host"], window="3m",
                                      query={"aggregation": "count"}),
             [('m{host="a"}', vals(1, 1, 1, 1, "_", 1, 1, 1))], [(H, "FF..FFF.")]),
    Scenario("agg_p90_window", rule({"operator": "gt", "threshold": 5}, split=["host"], window="3m",
                                      query={"aggregation": "p90"}),
             [('m{host="a"}', vals(0, 10, 0, 0, 0))], [(H, ".FFF.")]),
    Scenario("agg_min_window", rule({"operator": "lt", "threshold": 2}, split=["host"], window="3m",
                                    query={"aggregation": "min"}),
             [('m{host="a"}', vals(5, 1, 5, 5, 5))], [(H, ".FFF.")]),
    Scenario("agg_last_window", rule({"operator": "gt", "threshold": 5}, split=["host"], window="3m",
                                     query={"aggregation": "last"}),
             [('m{host="a"}', vals(9, "_", "_", 0))], [(H, "FFF.")]),
    Scenario("raw_expr_split", {"query": {"expr": 'rate(c_total{job="x"}[2m]) * 60', "splitBy": ["host"],
                                          "aggregation": "sum"},
                                "condition": {"operator": "gt", "threshold": 2.5},
                                "annotations": {"summary": "s"}},
             [('c_total{job="x",host="a",pod="1"}', "0+1x10"),
              ('c_total{job="x",host="a",pod="2"}', "0+2x10"),
              ('c_total{job="y",host="a",pod="3"}', "0+100x10")],
             [(H, "..FFFFFFFFF")]),
    # --- absence -----------------------------------------------------------------------------
    Scenario("absence_whole",
             rule({"type": "absence"}, metric="hb", window="2m", query={"selector": {"job": "b"}}),
             [('hb{job="b"}', vals(1, 1, 1, "_", "_", "_", "_", 1, 1)), ('hb{job="c"}', "1x8")],
             [({"job": "b"}, "....FFF..")]),
    Scenario("absence_per_group", rule({"type": "absence"}, metric="hb", window="2m", split=["host"]),
             [('hb{host="a"}', "1x12"), ('hb{host="b"}', vals(1, 1, 1))],
             [({"host": "b"}, "....FFFFFFFFF")]),
    Scenario("absence_for_levels", {**rule({"type": "absence"}, metric="hb", window="1m"),
                                    "levels": {"warning": {"for": "1m"}, "critical": {"for": "3m"}}},
             [('hb', vals(1, 1, "_", "_", "_", "_", "_", 1))],
             [({"severity": "warning"}, "..PFFFF."), ({"severity": "critical"}, "..PPPFF.")]),
    # --- counting and recovery ---------------------------------------------------------------
    # SEMANTICS §4 worked example: f=1m, V=5m, M=3, normalCount=3; b = 0,1,0,1,1 at the points
    # 1..5 -> firing at the 5th; 0 (3 in window, firing), 0 (2: recovering), 0, 0 -> inactive.
    Scenario("worked_example_m_of_v", rule({"operator": "gt", "threshold": 5}, split=["host"],
                                           trigger={"requiredViolations": 3, "violationWindow": "5m"},
                                           recovery={"normalCount": 3}),
             [('m{host="a"}', vals(0, 0, 9, 0, 9, 9, 0, 0, 0, 0, 0))], [(H, ".....FFFF..")]),
    Scenario("violation_window_any", rule({"operator": "gt", "threshold": 5}, split=["host"],
                                          trigger={"violationWindow": "3m"}),
             [('m{host="a"}', vals(0, 9, 0, 0, 0, 0))], [(H, ".FFF..")]),
    Scenario("recovery_normal_count", rule({"operator": "gt", "threshold": 5}, split=["host"],
                                           recovery={"normalCount": 2}),
             [('m{host="a"}', vals(0, 6, 0, 0, 0))], [(H, ".FF..")]),
    Scenario("recovery_window", rule({"operator": "gt", "threshold": 5}, split=["host"],
                                     recovery={"window": "3m"}),
             [('m{host="a"}', vals(0, 6, 0, 0, 0, 0, 0))], [(H, ".FFF...")]),
    # One violation opens a 3m violation window; the quiet window of 5m then outlasts it.
    Scenario("recovery_window_with_violation_window",
             rule({"operator": "gt", "threshold": 5}, split=["host"], trigger={"violationWindow": "3m"},
                  recovery={"window": "5m"}),
             [('m{host="a"}', vals(0, 9, 0, 0, 0, 0, 0, 0, 0))], [(H, ".FFFFF...")]),
    Scenario("recovery_window_shorter_than_violation_window",
             rule({"operator": "gt", "threshold": 5}, split=["host"], trigger={"violationWindow": "4m"},
                  recovery={"window": "4m"}),
             [('m{host="a"}', vals(0, 9, 0, 9, 0, 0, 0, 0, 0))], [(H, ".FFFFFF..")]),
    Scenario("recovery_retrigger_no_pending", rule({"operator": "gt", "threshold": 5}, split=["host"],
                                                   trigger={"for": "1m"}, recovery={"normalCount": 2}),
             [('m{host="a"}', vals(0, 6, 6, 0, 6, 0, 0, 6, 0))], [(H, ".PFFFF.P.")]),
    Scenario("recovery_30s_interval", rule({"operator": "gt", "threshold": 5}, split=["host"],
                                           recovery={"normalCount": 3}, evaluation={"interval": "30s"},
                                           window="30s"),
             [('m{host="a"}', vals(0, 6, 0, 0, 0, 0))], [(H, ".FFF..")], interval="30s"),
    # --- levels ------------------------------------------------------------------------------
    Scenario("levels_static", {**rule({"operator": "gt"}, split=["host"]),
                               "levels": {"warning": {"threshold": 5},
                                          "critical": {"threshold": 10, "for": "1m"}}},
             [('m{host="a"}', vals(0, 6, 11, 11, 11, 6, 0))],
             [(WARN, ".FFFFF."), (CRIT, "..PFF..")]),
    Scenario("levels_violations", {**rule({"operator": "gt"}, split=["host"],
                                          trigger={"violationWindow": "3m"}),
                                   "levels": {"warning": {"threshold": 5},
                                              "critical": {"threshold": 10, "violations": 2}}},
             [('m{host="a"}', vals(0, 11, 0, 11, 0, 0, 0, 0, 0))],
             [({"host": "a", "severity": "warning"}, ".FFFFF..."),
              ({"host": "a", "severity": "critical"}, "...F.....")]),
    Scenario("levels_lt", {**rule({"operator": "lt"}, split=["host"]),
                           "levels": {"warning": {"threshold": 20, "operator": "lt"},
                                      "critical": {"threshold": 10, "operator": "lt"}}},
             [('m{host="a"}', vals(30, 15, 5, 20))],
             [(WARN, ".FF."), (CRIT, "..F.")]),
    # --- composite ---------------------------------------------------------------------------
    Scenario("composite_all", {"condition": {"type": "composite", "logic": "all", "conditions": [
        {"name": "lat", "query": {"metric": "lat", "window": "1m", "splitBy": ["host"]}, "operator": "gt",
         "threshold": 0.5},
        {"name": "err", "query": {"metric": "err", "window": "1m", "splitBy": ["host"]}, "operator": "gt",
         "threshold": 0.05}]}, "annotations": {"summary": "s"}},
        [('lat{host="a"}', vals(1, 1, 0, 1)), ('err{host="a"}', vals(0, 1, 1, 1)),
         ('lat{host="b"}', vals(1, 1, 1, 1)), ('err{host="c"}', vals(1, 1, 1, 1))],
        [({"host": "a"}, ".F.F")]),
    Scenario("composite_any", {"condition": {"type": "composite", "logic": "any", "conditions": [
        {"name": "lat", "query": {"metric": "lat", "window": "1m"}, "operator": "gt", "threshold": 0.5},
        {"name": "err", "query": {"metric": "err", "window": "1m"}, "operator": "gt", "threshold": 0.05}]},
        "annotations": {"summary": "s"}},
        [("lat", vals(0, 1, 0, 0)), ("err", vals(0, 0, 1, 0))],
        [({}, ".FF.")]),
    Scenario("composite_all_with_absence", {"condition": {"type": "composite", "logic": "all", "conditions": [
        {"name": "load", "query": {"metric": "load", "window": "1m"}, "operator": "gt", "threshold": 5},
        {"name": "hb", "type": "absence", "query": {"metric": "hb", "window": "1m"}}]},
        "annotations": {"summary": "s"}},
        [("load", vals(9, 9, 9, 0, 9)), ("hb", vals(1, "_", "_", "_", "_"))],
        [({}, ".FF.F")]),
    # --- dynamic (f = 1h, one sample per hour, window 1h) ------------------------------------
    # SEMANTICS §3: stddev, K=4, k=2, B={100,110,90,100}: band [85.86, 114.14]; 120 violates.
    dyn("dynamic_stddev_worked_example",
        dynamic_rule({"mode": "stddev", "stddevMultiplier": 2, "lookbackWeeks": 4,
                      "minimumBaselinePoints": 4}),
        {1: 100, 2: 110, 3: 90, 4: 100}, [100, 114, 115, 120, 85, 86, 100], [(H, "..FFF..")]),
    # Percentage e=100 p=10 -> [90, 110].
    dyn("dynamic_percentage_worked_example",
        dynamic_rule({"mode": "percentage", "tolerancePercent": 10, "lookbackWeeks": 2,
                      "minimumBaselinePoints": 2}),
        {1: 100, 2: 100}, [110, 111, 90, 89, 100], [(H, ".F.F.")], k_max=2),
    # Envelope min 90 max 110 p=5 -> [85.5, 115.5].
    dyn("dynamic_envelope_worked_example",
        dynamic_rule({"mode": "envelope", "tolerancePercent": 5, "lookbackWeeks": 2,
                      "minimumBaselinePoints": 2}),
        {1: 90, 2: 110}, [115.5, 115.6, 85.5, 85.4, 100], [(H, ".F.F.")], k_max=2),
    dyn("dynamic_direction_above_guard_rail",
        dynamic_rule({"mode": "stddev", "stddevMultiplier": 2, "direction": "above", "lookbackWeeks": 4,
                      "minimumBaselinePoints": 4}, upper=130),
        {1: 100, 2: 110, 3: 90, 4: 100}, [120, 130, 131, 50], [(H, "..F.")]),
    dyn("dynamic_direction_below_guard_rail",
        dynamic_rule({"mode": "stddev", "stddevMultiplier": 2, "direction": "below", "lookbackWeeks": 4,
                      "minimumBaselinePoints": 4}, lower=70),
        {1: 100, 2: 110, 3: 90, 4: 100}, [80, 70, 69, 200], [(H, "..F.")]),
    dyn("dynamic_low_confidence_zero_stddev",
        dynamic_rule({"mode": "stddev", "lookbackWeeks": 2, "minimumBaselinePoints": 2}),
        {1: 100, 2: 100}, [100, 200, 0], [(H, "...")], k_max=2),
    dyn("dynamic_low_confidence_not_suppressed",
        dynamic_rule({"mode": "stddev", "lookbackWeeks": 2, "minimumBaselinePoints": 2,
                      "suppressLowConfidence": False}),
        {1: 100, 2: 100}, [100, 200, 0], [(H, ".FF")], k_max=2),
    dyn("dynamic_low_confidence_few_weeks",
        dynamic_rule({"mode": "percentage", "lookbackWeeks": 4, "minimumBaselinePoints": 1}),
        {1: 100}, [100, 200, 0], [(H, "...")]),
    dyn("dynamic_low_confidence_few_points",
        dynamic_rule({"mode": "percentage", "lookbackWeeks": 2, "minimumBaselinePoints": 3}),
        {1: 100, 2: 100}, [100, 200, 0], [(H, "...")], k_max=2),
    dyn("dynamic_percentage_zero_expected",
        dynamic_rule({"mode": "percentage", "lookbackWeeks": 2, "minimumBaselinePoints": 2}),
        {1: 0, 2: 0}, [0, 5, -5], [(H, "...")], k_max=2),
    dyn("dynamic_levels",
        {**dynamic_rule({"mode": "stddev", "direction": "above", "lookbackWeeks": 4,
                         "minimumBaselinePoints": 4}),
         "levels": {"warning": {"threshold": 2}, "critical": {"threshold": 3}}},
        {1: 100, 2: 110, 3: 90, 4: 100}, [115, 122, 100, 121],
        [({"host": "a", "severity": "warning"}, "FF.F"), ({"host": "a", "severity": "critical"}, ".F..")]),
]

# --- escaping: user values must match literally, never as PromQL or regex syntax ----------------
ODD_APP = 'we"ird\\val\nue'
ODD_TAGS = ["a.*", "x|y", "b}c", 'q"\\', "n\nl"]
_ODD = {"app": ODD_APP}


def _odd_series(tag: str, app: str = ODD_APP) -> str:
    from compile_harness import metric_string

    return metric_string("m", {"app": app, "tag": tag})


INJECTION: list[Scenario] = [
    Scenario(
        "injection_selector_and_scope",
        rule({"operator": "gt", "threshold": 0}, split=["tag"],
             query={"selector": _ODD, "scope": {"tag": ODD_TAGS}},
             labels={"team": 'a"b\\c\nd}'}),
        # Every tag listed matches; "abc" and "x" would match if the scope regex were not
        # escaped, the other app values if the selector string were cut at a quote or a newline.
        [*((_odd_series(t), "1 1") for t in ODD_TAGS),
         (_odd_series("abc"), "1 1"), (_odd_series("x"), "1 1"), (_odd_series("y"), "1 1"),
         (_odd_series("a.*", app='we"ird\\val'), "1 1"), (_odd_series("a.*", app="we"), "1 1"),
         (_odd_series("a.*", app='we"ird\\\\val\nue'), "1 1")],
        [({"tag": t}, "FF") for t in ODD_TAGS],
    ),
    Scenario(
        "injection_single_scope_value",
        rule({"operator": "gt", "threshold": 0}, split=["tag"], query={"scope": {"tag": [".*"]}}),
        [('m{tag=".*"}', "1"), ('m{tag="anything"}', "1"), ('m{tag=""}', "1")],
        [({"tag": ".*"}, "F")],
    ),
    Scenario(
        "injection_absence_selector",
        rule({"type": "absence"}, metric="hb", window="1m", query={"selector": {"job": 'a"|.*'}}),
        [('hb{job="abc"}', "1 1 1"), ('hb{job="a\\"|.*"}', "1 _ 1")],
        [({"job": 'a"|.*'}, ".F.")],
    ),
    Scenario(
        "injection_dynamic_baseline",
        {**dynamic_rule({"mode": "percentage", "lookbackWeeks": 2, "minimumBaselinePoints": 1}),
         "query": {"metric": "m", "window": "1h", "splitBy": ["host"], "scope": {"host": ["a|b", "c.d"]}}},
        [('m{host="a|b"}', weekly({1: 100, 2: 100}, [100, 200], k_max=2)),
         ('m{host="a"}', weekly({1: 100, 2: 100}, [200, 200], k_max=2)),
         ('m{host="cxd"}', weekly({1: 100, 2: 100}, [200, 200], k_max=2))],
        [({"host": "a|b"}, ".F")],
        interval="1h", start=2 * WEEK,
    ),
    # A raw expr keeps its own precedence: without the parentheses `m1 or m2 > 5` fires on m1.
    Scenario("raw_expr_parenthesized",
             {"query": {"expr": "m1 or m2"}, "condition": {"operator": "gt", "threshold": 5},
              "annotations": {"summary": "s"}},
             [('m1{k="v"}', "1 9"), ('m2{k="w"}', "1 1")],
             [({"k": "v"}, ".F")]),
    # Annotations are templates: $labels/$value render; the description is literal text.
    Scenario("annotation_templating",
             {"query": {"metric": "m", "window": "1m", "splitBy": ["host"]},
              "condition": {"operator": "gt", "threshold": 5},
              "description": "Shows {{ braces }} literally",
              "annotations": {"summary": "host {{ $labels.host }} at {{ $value }}",
                              "runbook_url": "https://runbooks.example.com/x"}},
             [('m{host="a"}', "0 7")], [(H, ".F")],
             exp_annotations={"summary": "host a at 7", "description": "Shows {{ braces }} literally",
                              "runbook_url": "https://runbooks.example.com/x"}),
]
