"""SEMANTICS §7: replay on the t_k grid, equal to stepping the evaluator by hand."""

import json
import math

import numpy as np
import pytest

from klaxon.engine import (
    DynamicSpec,
    EngineRule,
    LevelSpec,
    RecoverySpec,
    Schedule,
    ScheduleWindow,
    SeriesState,
    aggregate_windows,
    compute_bounds,
    default_warmup,
    eval_grid,
    grid_offset,
    replay,
    replay_composite,
    replay_many,
    step,
)

WEEK = 7 * 86400.0
F = 60.0
T0 = 1_779_999_980.0  # on the 1m grid with offset 20s


def static_rule(**kw):
    base = dict(
        kind="threshold",
        operator="gt",
        levels={"warning": LevelSpec(threshold=50, required_violations=3, violation_window_s=300)},
        recovery=RecoverySpec(normal_count=3),
        interval_s=F,
        window_s=F,
    )
    base.update(kw)
    return EngineRule(**base)


def test_worked_example_replay():
    b = [0, 1, 0, 1, 1, 0, 0, 0, 0]
    times = T0 + F * np.arange(len(b)) - 1  # one sample just before each evaluation
    res = replay(static_rule(offset_s=20), times, [100.0 * x for x in b], T0, T0 + 8 * F, warmup=0)
    assert [p.t for p in res.points] == list(T0 + F * np.arange(9))
    assert [p.state for p in res.points] == ["Inactive"] * 4 + [
        "Firing",
        "Firing",
        "Recovering",
        "Recovering",
        "Inactive",
    ]
    assert [p.is_alarm_active for p in res.points] == [False] * 4 + [True] * 4 + [False]
    assert [tr.t - T0 for tr in res.transitions] == [240, 360, 480]
    s = res.summary
    assert (s.points, s.violations, s.alarms, s.time_in_alarm_s, s.low_confidence_points) == (
        9,
        3,
        1,
        240.0,
        0,
    )


def test_grid_and_offset():
    assert eval_grid(100, 300, 60, 20).tolist() == [140, 200, 260]
    off = grid_offset("default/high-latency", 60)
    assert off == grid_offset("default/high-latency", 60)
    assert 0 <= off < 60 and off == int(off)


def test_default_warmup():
    r = EngineRule(
        kind="dynamic",
        levels={"warning": LevelSpec(for_s=600), "critical": LevelSpec(threshold=4, for_s=900)},
        dynamic=DynamicSpec(lookback_weeks=3),
        recovery=RecoverySpec(window_s=1200),
    )
    assert default_warmup(r) == 3 * WEEK
    assert default_warmup(static_rule(recovery=RecoverySpec(window_s=1200))) == 1200


def test_warmup_state_carries_into_range():
    """An alarm raised during warmup is already active at `from`."""
    times = T0 + F * np.arange(10) - 1
    values = [100.0] * 5 + [100.0] * 5
    res = replay(static_rule(offset_s=20), times, values, T0 + 6 * F, T0 + 9 * F, warmup=6 * F)
    assert [p.state for p in res.points] == ["Firing"] * 4
    assert res.transitions == ()  # the transition happened before `from`
    assert res.summary.alarms == 1


def dynamic_rule(**kw):
    base = dict(
        kind="dynamic",
        direction="both",
        levels={
            "warning": LevelSpec(threshold=2.5, required_violations=2, violation_window_s=300, for_s=60),
            "critical": LevelSpec(threshold=4.0, required_violations=3, violation_window_s=300, for_s=120),
        },
        dynamic=DynamicSpec(mode="stddev", lookback_weeks=2, minimum_baseline_points=3),
        recovery=RecoverySpec(normal_count=3, window_s=300),
        interval_s=F,
        window_s=300.0,
        offset_s=20,
    )
    base.update(kw)
    return EngineRule(**base)


def synthetic(days, seed, gaps=True, spikes=40):
    rng = np.random.default_rng(seed)
    t = T0 - 2 * WEEK + 30 * np.arange(int((days * 86400 + 2 * WEEK) / 30))
    v = 100 + 10 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 2, t.size)
    for s in rng.integers(0, t.size - 40, spikes):
        v[s : s + rng.integers(2, 40)] += rng.choice([-1, 1]) * rng.uniform(10, 40)
    if gaps:
        for s in rng.integers(0, t.size - 60, 6):
            v[s : s + rng.integers(5, 60)] = np.nan
    return t, v


def by_hand(rule, times, values, start, end, warmup):
    """The evaluator's loop: aggregate, bounds and `step` per evaluation, nothing shared with replay."""
    grid = eval_grid(start - warmup, end, rule.interval_s, rule.offset_s)
    x = aggregate_windows(grid, times, values, rule.window_s, rule.aggregation)
    bounds = compute_bounds(rule, grid, times, values)
    state, states, transitions = SeriesState(), [], []
    for i, t in enumerate(grid):
        status = "ok" if math.isfinite(x[i]) else "no_data"
        state, trs = step(rule, state, float(t), float(x[i]), bounds.at(i), status=status)
        states.append((float(t), state.state, state.level))
        transitions += trs
    return [s for s in states if s[0] >= start], [tr for tr in transitions if tr.t >= start], state


@pytest.mark.parametrize("seed", [1, 2])
def test_replay_equals_stepping_by_hand(seed):
    t, v = synthetic(2, seed)
    rule = dynamic_rule()
    start, end = T0, T0 + 2 * 86400 - 60
    res = replay(rule, t, v, start, end, warmup=3600)
    states, transitions, final = by_hand(rule, t, v, start, end, 3600)
    assert [(p.t, p.state, p.level) for p in res.points] == states
    assert list(res.transitions) == transitions
    assert res.final_state == final
    assert len(transitions) > 10  # the data really exercises the state machine


RULES = {
    "dynamic": dynamic_rule(),
    "dynamic-tz-schedule": dynamic_rule(
        timezone="Europe/Berlin",
        schedule=Schedule("Europe/Berlin", (ScheduleWindow(frozenset({0, 1, 2, 3, 4}), 8 * 60, 20 * 60),)),
    ),
    "static-band-keep-last": EngineRule(
        kind="threshold",
        direction="both",
        levels={"warning": LevelSpec(upper=120, lower=85, for_s=120)},
        recovery=RecoverySpec(normal_count=2, threshold=None),
        no_data="KeepLast",
        window_s=120,
    ),
    "static-alerting-nodata": EngineRule(
        kind="threshold",
        operator="gte",
        levels={
            "warning": LevelSpec(threshold=115, required_violations=2, violation_window_s=240),
            "critical": LevelSpec(threshold=130, required_violations=2, violation_window_s=240, for_s=60),
        },
        recovery=RecoverySpec(normal_count=4, threshold=110),
        no_data="Alerting",
        window_s=60,
    ),
    "static-ok-nodata-p95": EngineRule(
        kind="threshold",
        operator="lt",
        levels={"critical": LevelSpec(threshold=90)},
        no_data="OK",
        aggregation="p95",
        window_s=180,
    ),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_fast_path_equals_step_function(name):
    rule = RULES[name]
    t, v = synthetic(3, seed=sorted(RULES).index(name) + 11)
    start, end = T0, T0 + 3 * 86400
    fast = replay(rule, t, v, start, end)
    slow = replay(rule, t, v, start, end, fast=False)
    assert [p.to_dict() for p in fast.points] == [p.to_dict() for p in slow.points]
    assert fast.transitions == slow.transitions
    assert fast.final_state == slow.final_state
    assert fast.summary == slow.summary
    assert fast.transitions


def test_replay_many_missing_vs_no_data():
    rule = static_rule(
        levels={"warning": LevelSpec(threshold=50)}, recovery=RecoverySpec(normal_count=5), offset_s=20
    )
    grid = T0 + F * np.arange(8)
    a_vals = [100, 100, np.nan, np.nan, np.nan, 100, np.nan, 100]
    b_vals = [1, 1, 1, 1, 1, 1, np.nan, 1]
    res = replay_many(rule, {"a": (grid - 1, a_vals), "b": (grid - 1, b_vals)}, T0, T0 + 7 * F, warmup=0)
    a = res["a"]
    assert [p.state for p in a.points] == [
        "Firing",
        "Firing",
        "Firing",
        "Inactive",
        "Inactive",
        "Firing",
        "NoData",
        "Firing",
    ]
    assert [p.reason for p in a.points][2:4] == ["MissingSample", "MissingSeries"]
    assert [p.state for p in res["b"].points][6] == "NoData"


def test_replay_many_series_starts_when_first_seen():
    rule = static_rule(levels={"warning": LevelSpec(threshold=50)}, offset_s=20)
    grid = T0 + F * np.arange(4)
    res = replay_many(
        rule,
        {"old": (grid - 1, [1, 1, 1, 1]), "new": (grid[2:] - 1, [100, 100])},
        T0,
        T0 + 3 * F,
        warmup=0,
    )
    assert [p.state for p in res["new"].points] == ["Inactive", "Inactive", "Firing", "Firing"]
    assert [p.reason for p in res["new"].points][:2] == [None, None]


def test_single_series_gap_is_no_data():
    res = replay(
        static_rule(offset_s=20), T0 + F * np.array([0, 3]) - 1, [1.0, 1.0], T0, T0 + 3 * F, warmup=0
    )
    assert [p.state for p in res.points] == ["Inactive", "NoData", "NoData", "Inactive"]


def test_low_confidence_points_are_counted_and_marked():
    rule = dynamic_rule(dynamic=DynamicSpec(mode="stddev", lookback_weeks=2, minimum_baseline_points=1000))
    t, v = synthetic(1, seed=5, gaps=False)
    res = replay(rule, t, v, T0, T0 + 3600, warmup=0)
    assert res.summary.low_confidence_points == len(res.points) == 61
    assert {p.reason for p in res.points} == {"LowConfidence"}
    assert res.summary.violations == 0


def test_composite_all_and_any():
    a = EngineRule(
        kind="threshold", operator="gt", levels={"warning": LevelSpec(threshold=50)}, window_s=F, offset_s=20
    )
    b = EngineRule(
        kind="threshold", operator="lt", levels={"warning": LevelSpec(threshold=10)}, window_s=F, offset_s=20
    )
    grid = T0 + F * np.arange(5)
    xa = (grid - 1, [100, 100, 1, 100, np.nan])
    xb = (grid - 1, [5, 50, 5, np.nan, np.nan])
    both = EngineRule(
        kind="composite",
        levels={"critical": LevelSpec()},
        children=(a, b),
        logic="all",
        window_s=F,
        offset_s=20,
        no_data="KeepLast",
    )
    res = replay_composite(both, [xa, xb], T0, T0 + 4 * F, warmup=0)
    assert [p.is_violation for p in res.rule.points] == [True, False, False, False, False]
    # point 4: a true, b missing -> unknown (missing sample); point 5: both missing -> no data (kept)
    assert [p.state for p in res.rule.points] == ["Firing", "Inactive", "Inactive", "Inactive", "Inactive"]
    assert [p.reason for p in res.rule.points][3:] == ["MissingSample", "NoData"]
    assert [p.is_violation for p in res.children[1].points] == [True, False, True, False, False]
    either = EngineRule(
        kind="composite",
        levels={"critical": LevelSpec()},
        children=(a, b),
        logic="any",
        window_s=F,
        offset_s=20,
    )
    res = replay_composite(either, [xa, xb], T0, T0 + 4 * F, warmup=0)
    assert [p.is_violation for p in res.rule.points] == [True, True, True, True, False]
    slow = replay_composite(either, [xa, xb], T0, T0 + 4 * F, warmup=0, fast=False)
    assert [p.to_dict() for p in slow.rule.points] == [p.to_dict() for p in res.rule.points]


def test_to_dict_is_json():
    t, v = synthetic(1, seed=9)
    res = replay(dynamic_rule(), t, v, T0, T0 + 6 * 3600)
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    p = doc["points"][0]
    assert set(p) == {
        "t",
        "time",
        "value",
        "expected",
        "lower",
        "upper",
        "baselinePoints",
        "lowConfidence",
        "isViolation",
        "level",
        "state",
        "isAlarmActive",
        "reason",
    }
    assert p["time"].endswith("Z") and p["t"] == T0
    assert doc["summary"]["points"] == 361


def test_replay_rejects_bad_arguments():
    with pytest.raises(ValueError):
        replay(static_rule(), [], [], 10, 0)
    with pytest.raises(ValueError):
        replay_composite(static_rule(), [], 0, 10)
