"""SEMANTICS §4 cross-field validation."""

from klaxon.engine import (
    DynamicSpec,
    EngineRule,
    LevelSpec,
    RecoverySpec,
    Schedule,
    ScheduleWindow,
    validate_rule,
)


def rule(levels, **kw):
    return EngineRule(kind=kw.pop("kind", "threshold"), levels=levels, interval_s=60, **kw)


def test_valid_two_level_rule():
    r = rule(
        {
            "warning": LevelSpec(threshold=80, for_s=300, required_violations=3, violation_window_s=300),
            "critical": LevelSpec(threshold=90, for_s=600, required_violations=5, violation_window_s=300),
        },
        recovery=RecoverySpec(normal_count=3, window_s=300),
    )
    assert validate_rule(r) == []


def test_critical_must_be_stricter():
    gt = rule({"warning": LevelSpec(threshold=90), "critical": LevelSpec(threshold=90)})
    assert validate_rule(gt) == [
        "levels.critical.threshold: must be stricter (above) than levels.warning.threshold"
    ]
    lt = rule({"warning": LevelSpec(threshold=10), "critical": LevelSpec(threshold=20)}, operator="lt")
    assert validate_rule(lt) == [
        "levels.critical.threshold: must be stricter (below) than levels.warning.threshold"
    ]
    assert (
        validate_rule(
            rule({"warning": LevelSpec(threshold=10), "critical": LevelSpec(threshold=5)}, operator="lt")
        )
        == []
    )


def test_dynamic_critical_needs_larger_multiplier():
    d = DynamicSpec(mode="stddev", stddev_multiplier=3)
    bad = rule({"warning": LevelSpec(threshold=3), "critical": LevelSpec()}, kind="dynamic", dynamic=d)
    assert validate_rule(bad) == [
        "levels.critical.threshold: must be stricter (above) than levels.warning.threshold"
    ]
    ok = rule({"warning": LevelSpec(threshold=2), "critical": LevelSpec()}, kind="dynamic", dynamic=d)
    assert validate_rule(ok) == []


def test_for_critical_at_least_for_warning():
    r = rule({"warning": LevelSpec(threshold=80, for_s=600), "critical": LevelSpec(threshold=90, for_s=300)})
    assert validate_rule(r) == ["levels.critical.for: must be at least levels.warning.for"]


def test_critical_count_must_imply_warning():
    r = rule(
        {
            "warning": LevelSpec(threshold=80, required_violations=3, violation_window_s=300),
            "critical": LevelSpec(threshold=90, required_violations=4, violation_window_s=600),
        }
    )
    assert len(validate_rule(r)) == 1 and "requiredViolations" in validate_rule(r)[0]


def test_recovery_window_must_outlast_trigger():
    levels = {"warning": LevelSpec(threshold=80, required_violations=3, violation_window_s=300)}
    # V/f - M + 1 = 5 - 3 + 1 = 3 evaluations = 180 s
    assert validate_rule(rule(levels, recovery=RecoverySpec(window_s=180))) == []
    errs = validate_rule(rule(levels, recovery=RecoverySpec(window_s=120)))
    assert len(errs) == 1 and errs[0].startswith("recovery.window: 120s") and "at least 180s" in errs[0]


def test_recovery_threshold_side():
    base = {"warning": LevelSpec(threshold=80)}
    assert validate_rule(rule(base, recovery=RecoverySpec(threshold=70))) == []
    assert validate_rule(rule(base, recovery=RecoverySpec(threshold=85))) == [
        "recovery.threshold: must be at or below the trigger threshold 80"
    ]


def test_unreachable_counts_and_missing_fields():
    errs = validate_rule(
        rule({"warning": LevelSpec(threshold=1, required_violations=6, violation_window_s=300)})
    )
    assert errs == [
        "levels.warning.requiredViolations: 6 can never be reached: "
        "the window holds 5 evaluations at interval 60s"
    ]
    assert validate_rule(rule({"warning": LevelSpec(required_violations=2)})) == [
        "levels.warning.violationWindow: required when requiredViolations > 1",
        "levels.warning: set threshold, or upper/lower for a band",
    ]
    assert validate_rule(rule({})) == ["levels: at least one of warning, critical is required"]
    assert validate_rule(rule({"warning": LevelSpec()}, kind="dynamic")) == [
        "condition.dynamic: required for a dynamic rule"
    ]


def test_band_and_direction():
    assert validate_rule(rule({"warning": LevelSpec(upper=1, lower=2)})) == [
        "levels.warning: lower must be below upper"
    ]
    assert validate_rule(rule({"warning": LevelSpec(lower=2)}, direction="above")) == [
        "levels.warning.upper: required with direction above"
    ]


def test_time_zone_and_composite():
    sched = Schedule("Mars/Olympus", (ScheduleWindow(frozenset({0}), 0, 60),))
    assert validate_rule(rule({"warning": LevelSpec(threshold=1)}, schedule=sched)) == [
        "timezone: 'Mars/Olympus' is not an IANA time zone (e.g. Europe/Berlin)"
    ]
    child = rule({"warning": LevelSpec()})
    comp = rule({"critical": LevelSpec()}, kind="composite", children=(child,))
    assert validate_rule(comp) == [
        "condition.conditions[0].levels.warning: set threshold, or upper/lower for a band"
    ]
