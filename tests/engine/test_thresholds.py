"""SEMANTICS §1/§3: windows, aggregation, baselines, bands, low confidence."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from klaxon.engine import (
    DynamicSpec,
    EngineRule,
    LevelSpec,
    aggregate_windows,
    compute_bounds,
    point_violations,
)
from klaxon.engine._tz import shift_local_weeks
from klaxon.engine.thresholds import baseline

WEEK = 7 * 86400.0
T = 1_780_000_000.0  # evaluation time used by the §3 examples


def dyn_rule(mode="stddev", k=2, weeks=4, p=10.0, min_pts=1, suppress=True, direction="both", level=None):
    return EngineRule(
        kind="dynamic",
        direction=direction,
        levels={"warning": level or LevelSpec()},
        dynamic=DynamicSpec(
            mode=mode,
            stddev_multiplier=k,
            tolerance_percent=p,
            lookback_weeks=weeks,
            minimum_baseline_points=min_pts,
            suppress_low_confidence=suppress,
        ),
        window_s=300,
    )


def weekly_samples(values, weeks=(1, 2, 3, 4), at=T):
    """One sample per listed week, at t - k*7d (inside that week's window), sorted by time."""
    times = np.array([at - k * WEEK for k in weeks], dtype=float)
    order = np.argsort(times)
    return times[order], np.array(values, dtype=float)[order]


def bounds_at(rule, times, values, at=T):
    b = compute_bounds(rule, np.array([at]), times, values)
    return b.at(0)


def test_stddev_example_band_and_violation():
    rule = dyn_rule("stddev", k=2)
    pb = bounds_at(rule, *weekly_samples([100, 110, 90, 100]))
    assert pb.expected == 100
    assert pb.n_points == 4
    assert pb.lower["warning"] == pytest.approx(85.857864, abs=1e-6)
    assert pb.upper["warning"] == pytest.approx(114.142136, abs=1e-6)
    assert round(pb.lower["warning"], 2) == 85.86 and round(pb.upper["warning"], 2) == 114.14
    assert not pb.low_confidence
    assert point_violations(rule, 120, pb) == {"warning": True}
    assert point_violations(rule, 114.0, pb) == {"warning": False}


def test_percentage_example():
    rule = dyn_rule("percentage", p=10)
    pb = bounds_at(rule, *weekly_samples([100, 110, 90, 100]))
    assert (pb.lower["warning"], pb.upper["warning"]) == (90.0, 110.0)
    assert point_violations(rule, 110.0, pb) == {"warning": False}  # above is strict: x > u
    assert point_violations(rule, 110.5, pb) == {"warning": True}


def test_envelope_example():
    rule = dyn_rule("envelope", p=5)
    pb = bounds_at(rule, *weekly_samples([100, 110, 90, 100]))
    assert (pb.lower["warning"], pb.upper["warning"]) == (85.5, 115.5)


def test_direction_above_ignores_low_values():
    rule = dyn_rule("percentage", p=10, direction="above")
    pb = bounds_at(rule, *weekly_samples([100, 110, 90, 100]))
    assert point_violations(rule, 10.0, pb) == {"warning": False}
    below = dyn_rule("percentage", p=10, direction="below")
    assert point_violations(below, 10.0, bounds_at(below, *weekly_samples([100, 110, 90, 100]))) == {
        "warning": True
    }


def test_level_threshold_overrides_multiplier_per_level():
    rule = EngineRule(
        kind="dynamic",
        levels={"warning": LevelSpec(threshold=2), "critical": LevelSpec(threshold=3)},
        dynamic=DynamicSpec(mode="stddev", stddev_multiplier=99, lookback_weeks=4),
    )
    pb = bounds_at(rule, *weekly_samples([100, 110, 90, 100]))
    assert pb.upper["warning"] == pytest.approx(100 + 2 * np.sqrt(50))
    assert pb.upper["critical"] == pytest.approx(100 + 3 * np.sqrt(50))


def test_static_bounds_widen_a_dynamic_band():
    rule = dyn_rule("percentage", p=10, level=LevelSpec(upper=130, lower=95))
    pb = bounds_at(rule, *weekly_samples([100, 110, 90, 100]))
    assert (pb.lower["warning"], pb.upper["warning"]) == (90.0, 130.0)
    assert point_violations(rule, 125, pb) == {"warning": False}


def test_population_stddev_not_sample():
    b = baseline(np.array([T]), *weekly_samples([1, 2, 3, 4]), weeks=4, window_s=300, timezone=None)
    assert b.std[0] == pytest.approx(np.std([1, 2, 3, 4]))  # ddof=0
    assert b.weeks[0] == 4


def test_baseline_windows_are_left_open_per_week():
    w = 300.0
    times = np.array([T - WEEK - w, T - WEEK - w + 1, T - WEEK, T - WEEK + 1])
    b = baseline(np.array([T]), times, np.array([1.0, 2.0, 3.0, 4.0]), weeks=1, window_s=w, timezone=None)
    assert b.n[0] == 2  # (t-7d-W, t-7d]: excludes the left edge and anything after t-7d
    assert b.mean[0] == 2.5


def test_baseline_uses_only_past_weeks():
    times = np.array([T, T - 60])
    b = baseline(np.array([T]), times, np.array([1.0, 2.0]), weeks=4, window_s=300, timezone=None)
    assert b.n[0] == 0
    assert np.isnan(b.mean[0])


@pytest.mark.parametrize(
    ("values", "weeks", "min_pts", "mode", "low"),
    [
        ([100, 110, 90, 100], (1, 2, 3, 4), 1, "stddev", False),
        ([100, 110, 90, 100], (1, 2, 3, 4), 5, "stddev", True),  # n < minimumBaselinePoints
        ([100], (1,), 1, "stddev", True),  # 1 week < ceil(4/2)
        ([100, 110], (1, 3), 1, "stddev", False),  # 2 weeks = ceil(4/2)
        ([7, 7, 7, 7], (1, 2, 3, 4), 1, "stddev", True),  # sigma = 0
        ([0.1, 0.1, 0.1], (1, 2, 3), 1, "stddev", True),  # sigma = 0 despite rounding of the mean
        ([-1, 1, -1, 1], (1, 2, 3, 4), 1, "percentage", True),  # e = 0
        ([-1, 1, -1, 1], (1, 2, 3, 4), 1, "envelope", False),
    ],
)
def test_low_confidence(values, weeks, min_pts, mode, low):
    rule = dyn_rule(mode, min_pts=min_pts)
    assert bounds_at(rule, *weekly_samples(values, weeks)).low_confidence is low


def test_low_confidence_suppresses_only_when_asked():
    times, values = weekly_samples([100], (1,))
    quiet = dyn_rule("percentage", p=10, suppress=True)
    loud = dyn_rule("percentage", p=10, suppress=False)
    assert point_violations(quiet, 500, bounds_at(quiet, times, values)) == {"warning": False}
    assert point_violations(loud, 500, bounds_at(loud, times, values)) == {"warning": True}


def test_no_baseline_means_no_violation_without_guard_rails():
    rule = dyn_rule("stddev", suppress=False)
    pb = bounds_at(rule, np.empty(0), np.empty(0))
    assert np.isnan(pb.upper["warning"]) and pb.low_confidence
    assert point_violations(rule, 1e9, pb) == {"warning": False}


def test_static_threshold_bounds_follow_operator():
    gt = EngineRule(kind="threshold", operator="gt", levels={"warning": LevelSpec(threshold=5)})
    lt = EngineRule(kind="threshold", operator="lt", levels={"warning": LevelSpec(threshold=5)})
    b_gt, b_lt = bounds_at(gt, np.empty(0), np.empty(0)), bounds_at(lt, np.empty(0), np.empty(0))
    assert b_gt.upper["warning"] == 5 and np.isnan(b_gt.lower["warning"])
    assert b_lt.lower["warning"] == 5 and np.isnan(b_lt.upper["warning"])
    assert point_violations(gt, 5, b_gt) == {"warning": False}
    ge = EngineRule(kind="threshold", operator="gte", levels={"warning": LevelSpec(threshold=5)})
    assert point_violations(ge, 5, b_gt) == {"warning": True}
    ne = EngineRule(kind="threshold", operator="ne", levels={"warning": LevelSpec(threshold=5)})
    assert point_violations(ne, 5.0, b_gt) == {"warning": False}
    assert point_violations(ne, 5.5, b_gt) == {"warning": True}


def test_static_band_both_directions():
    rule = EngineRule(kind="threshold", levels={"warning": LevelSpec(upper=10, lower=0)})
    pb = bounds_at(rule, np.empty(0), np.empty(0))
    assert [point_violations(rule, x, pb)["warning"] for x in (-0.1, 0, 5, 10, 10.1)] == [
        True,
        False,
        False,
        False,
        True,
    ]


def test_band_next_to_a_threshold_violates_too():
    """`X < T or X > U or X < L` as compiled: a level's threshold does not switch the band off."""
    rule = EngineRule(kind="threshold", operator="lt", levels={"warning": LevelSpec(threshold=5, upper=20, lower=-9)})
    pb = bounds_at(rule, np.empty(0), np.empty(0))
    assert [point_violations(rule, x, pb)["warning"] for x in (-10, 4, 5, 20, 20.5)] == [True, True, False, False, True]


# --- aggregation -------------------------------------------------------------------------------


def test_aggregate_windows_left_open():
    st = np.array([0.0, 60, 120, 180, 240, 300])
    sv = np.array([1.0, 2, 3, 4, 5, 6])
    out = aggregate_windows(np.array([300.0, 305.0, 1000.0]), st, sv, 300, "avg")
    assert out[0] == pytest.approx(np.mean([2, 3, 4, 5, 6]))  # 0 is excluded: (t-W, t]
    assert out[1] == pytest.approx(np.mean([2, 3, 4, 5, 6]))
    assert np.isnan(out[2])


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("avg", 4.0),
        ("sum", 20.0),
        ("min", 1.0),
        ("max", 9.0),
        ("count", 5.0),
        ("last", 2.0),
        ("p50", 3.0),
        ("p90", float(np.percentile([5, 1, 3, 9, 2], 90))),
        ("p99", float(np.percentile([5, 1, 3, 9, 2], 99))),
    ],
)
def test_aggregations(agg, expected):
    st = np.array([10.0, 20, 30, 40, 50])
    sv = np.array([5.0, 1, 3, 9, 2])
    assert aggregate_windows(np.array([50.0]), st, sv, 60, agg)[0] == pytest.approx(expected)


def test_aggregation_matches_brute_force_on_random_data():
    rng = np.random.default_rng(7)
    st = np.sort(rng.uniform(0, 10_000, 3000))
    sv = rng.normal(10, 3, st.size)
    et = np.arange(0, 10_000, 37.0)
    for agg, fn in [
        ("avg", np.mean),
        ("max", np.max),
        ("min", np.min),
        ("p95", lambda v: np.percentile(v, 95)),
    ]:
        got = aggregate_windows(et, st, sv, 120, agg)
        for i, t in enumerate(et):
            sel = sv[(st > t - 120) & (st <= t)]
            if sel.size == 0:
                assert np.isnan(got[i])
            else:
                assert got[i] == pytest.approx(fn(sel), rel=1e-12)


def test_nan_samples_are_missing():
    out = aggregate_windows(np.array([100.0]), np.array([50.0, 60.0]), np.array([np.nan, 4.0]), 300, "count")
    assert out[0] == 1


def test_unsorted_samples_are_sorted():
    out = aggregate_windows(
        np.array([100.0]), np.array([90.0, 10.0, 50.0]), np.array([3.0, 1.0, 2.0]), 300, "last"
    )
    assert out[0] == 3


# --- weeks in a time zone ----------------------------------------------------------------------


def test_weeks_counted_in_local_time_across_dst():
    berlin = ZoneInfo("Europe/Berlin")
    t = datetime(2026, 4, 2, 12, 0, tzinfo=berlin)  # one week after the spring-forward (29 March)
    shifted = shift_local_weeks("Europe/Berlin", np.array([t.timestamp()]), 1)[0]
    assert datetime.fromtimestamp(shifted, berlin) == datetime(2026, 3, 26, 12, 0, tzinfo=berlin)
    assert t.timestamp() - shifted == WEEK - 3600  # one hour less than a fixed 168h
    assert shift_local_weeks(None, np.array([t.timestamp()]), 1)[0] == t.timestamp() - WEEK


def test_week_shift_matches_zoneinfo_fold0_everywhere():
    """Every 7 minutes over a spring and an autumn transition, incl. skipped and repeated times."""
    for zone in ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe"):
        z = ZoneInfo(zone)
        ts = np.concatenate(
            [
                np.arange(
                    datetime(2026, 3, 25, tzinfo=z).timestamp(),
                    datetime(2026, 4, 12, tzinfo=z).timestamp(),
                    420.0,
                ),
                np.arange(
                    datetime(2026, 10, 20, tzinfo=z).timestamp(),
                    datetime(2026, 11, 14, tzinfo=z).timestamp(),
                    420.0,
                ),
            ]
        )
        for k in (1, 2):
            got = shift_local_weeks(zone, ts, k)
            for t, g in zip(ts, got, strict=True):
                local = datetime.fromtimestamp(t, z).replace(tzinfo=None) - timedelta(weeks=k)
                want = local.replace(tzinfo=z, fold=0).timestamp()
                assert g == want, (zone, k, datetime.fromtimestamp(t, z))


def test_rule_timezone_drives_baseline_weeks():
    berlin = ZoneInfo("Europe/Berlin")
    t = datetime(2026, 4, 2, 12, 0, tzinfo=berlin).timestamp()
    local_week_ago = datetime(2026, 3, 26, 12, 0, tzinfo=berlin).timestamp()
    rule = EngineRule(
        kind="dynamic",
        levels={"warning": LevelSpec()},
        dynamic=DynamicSpec(mode="percentage", lookback_weeks=1),
        timezone="Europe/Berlin",
        window_s=60,
    )
    b = compute_bounds(rule, np.array([t]), np.array([local_week_ago]), np.array([42.0]))
    assert b.n_points[0] == 1 and b.expected[0] == 42
    utc_rule = EngineRule(kind="dynamic", levels=rule.levels, dynamic=rule.dynamic, window_s=60)
    assert (
        compute_bounds(utc_rule, np.array([t]), np.array([local_week_ago]), np.array([42.0])).n_points[0] == 0
    )
