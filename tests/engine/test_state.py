"""SEMANTICS §4: the per-series state machine, one row of the table at a time."""

import json
import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from klaxon.engine import (
    EngineRule,
    LevelSpec,
    RecoverySpec,
    Schedule,
    ScheduleWindow,
    SeriesState,
    disable,
    rule_state,
    step,
)

NAN = math.nan
F = 60.0


def rule(levels=None, **kw):
    return EngineRule(
        kind="threshold",
        operator="gt",
        levels=levels or {"warning": LevelSpec(threshold=80)},
        interval_s=F,
        **kw,
    )


TWO = {"warning": LevelSpec(threshold=80), "critical": LevelSpec(threshold=90)}


def run(r, values, state=None, statuses=None, t0=0.0):
    """Step through values at t0, t0+f, ...; returns per-point (state, level) and all transitions."""
    state = state or SeriesState()
    trace, transitions = [], []
    for i, v in enumerate(values):
        status = statuses[i] if statuses else "ok"
        state, trs = step(r, state, t0 + i * F, v, status=status)
        trace.append((state.state, state.level))
        transitions += trs
    return trace, transitions, state


def names(trace):
    return [s for s, _ in trace]


def test_worked_example_by_stepping():
    """f=1m, V=5m, M=3, normalCount=3: b = 0,1,0,1,1 fires at the 5th point; Inactive at the 9th."""
    r = rule(
        {"warning": LevelSpec(threshold=50, required_violations=3, violation_window_s=300)},
        recovery=RecoverySpec(normal_count=3),
    )
    trace, trs, _ = run(r, [0, 100, 0, 100, 100, 0, 0, 0, 0])
    assert names(trace) == ["Inactive"] * 4 + ["Firing", "Firing", "Recovering", "Recovering", "Inactive"]
    assert [(tr.t, tr.from_state, tr.to_state, tr.reason, tr.notify) for tr in trs] == [
        (240.0, "Inactive", "Firing", "Triggered", True),
        (360.0, "Firing", "Recovering", "ConditionCleared", False),
        (480.0, "Recovering", "Inactive", "Recovered", True),
    ]


def test_inactive_to_firing_when_for_is_zero():
    trace, trs, _ = run(rule(), [10, 85])
    assert trace == [("Inactive", None), ("Firing", "warning")]
    assert trs[0].notify and trs[0].level == "warning"


def test_inactive_to_pending_then_firing_after_for():
    r = rule({"warning": LevelSpec(threshold=80, for_s=120)})
    trace, trs, state = run(r, [85, 85, 85])
    assert names(trace) == ["Pending", "Pending", "Firing"]
    assert [(tr.to_state, tr.notify) for tr in trs] == [("Pending", False), ("Firing", True)]
    assert state.pending_since == 0.0 and state.since == 120.0


def test_pending_condition_broken_goes_inactive_and_resets_for():
    r = rule({"warning": LevelSpec(threshold=80, for_s=120)})
    trace, trs, _ = run(r, [85, 85, 10, 85, 85, 85])
    assert names(trace) == ["Pending", "Pending", "Inactive", "Pending", "Pending", "Firing"]
    assert trs[1].reason == "ConditionBroken" and not trs[1].notify


def test_n_of_m_within_window():
    r = rule({"warning": LevelSpec(threshold=80, required_violations=2, violation_window_s=180)})
    # violations at 0 and 180 are 3 minutes apart: never two inside (t-3m, t]
    trace, _, _ = run(r, [85, 0, 0, 85, 0, 85])
    assert names(trace) == ["Inactive"] * 5 + ["Firing"]


def test_missing_sample_is_neither_violation_nor_normal():
    r = rule({"warning": LevelSpec(threshold=80, for_s=120)}, recovery=RecoverySpec(normal_count=2))
    trace, _, state = run(r, [85, NAN, 85])
    assert names(trace) == ["Pending", "Pending", "Firing"]  # held through the gap, for counted on time
    trace, _, _ = run(r, [10, NAN, 10], state=state, t0=180)
    assert names(trace) == ["Recovering", "Recovering", "Inactive"]  # the gap did not count as normal


def test_pending_warning_escalates_to_firing_critical():
    r = rule({"warning": LevelSpec(threshold=80, for_s=300), "critical": LevelSpec(threshold=90, for_s=300)})
    # warning holds from t=0, critical only from t=60: warning is active first at 300
    trace, trs, _ = run(r, [85, 95, 95, 95, 95, 95, 95])
    assert trace[:5] == [("Pending", "warning")] + [("Pending", "critical")] * 4
    assert trace[5] == ("Firing", "warning")
    assert trace[6] == ("Firing", "critical")
    assert [(tr.from_state, tr.to_state, tr.level, tr.reason) for tr in trs] == [
        ("Inactive", "Pending", "warning", "ConditionMet"),
        ("Pending", "Firing", "warning", "Triggered"),
        ("Firing", "Firing", "critical", "Escalated"),
    ]


def test_pending_to_firing_critical_directly():
    r = rule({"warning": LevelSpec(threshold=80, for_s=60), "critical": LevelSpec(threshold=90, for_s=60)})
    trace, trs, _ = run(r, [95, 95])
    assert trace == [("Pending", "critical"), ("Firing", "critical")]
    assert trs[-1].notify


def test_firing_warning_escalates_and_deescalates():
    trace, trs, _ = run(rule(TWO), [85, 95, 85, 10])
    assert trace == [("Firing", "warning"), ("Firing", "critical"), ("Firing", "warning"), ("Inactive", None)]
    assert [(tr.reason, tr.from_level, tr.level, tr.notify) for tr in trs] == [
        ("Triggered", None, "warning", True),
        ("Escalated", "warning", "critical", True),
        ("Deescalated", "critical", "warning", True),
        ("Recovered", "warning", None, True),
    ]


def test_critical_is_evaluated_first():
    trace, trs, _ = run(rule(TWO), [95])
    assert trace == [("Firing", "critical")]
    assert len(trs) == 1


def test_firing_to_recovering_to_inactive_after_normal_count():
    r = rule(recovery=RecoverySpec(normal_count=3))
    trace, trs, _ = run(r, [85, 10, 10, 10])
    assert names(trace) == ["Firing", "Recovering", "Recovering", "Inactive"]
    assert [tr.notify for tr in trs] == [True, False, True]


def test_normal_count_one_resolves_immediately():
    trace, trs, _ = run(rule(), [85, 10])
    assert names(trace) == ["Firing", "Inactive"]
    assert trs[-1].from_state == "Firing" and trs[-1].reason == "Recovered"


def test_recovering_back_to_firing_without_pending():
    r = rule({"warning": LevelSpec(threshold=80, for_s=120)}, recovery=RecoverySpec(normal_count=3))
    trace, trs, _ = run(r, [85, 85, 85, 10, 85])
    assert names(trace) == ["Pending", "Pending", "Firing", "Recovering", "Firing"]
    assert trs[-1].reason == "Retriggered" and trs[-1].notify is False  # same level: no notification


def test_recovering_back_to_firing_at_another_level_notifies():
    r = rule(TWO, recovery=RecoverySpec(normal_count=3))
    _, trs, _ = run(r, [85, 10, 95])
    assert (trs[-1].from_state, trs[-1].to_state, trs[-1].level, trs[-1].notify) == (
        "Recovering",
        "Firing",
        "critical",
        True,
    )


def test_recovery_window_requires_quiet_period():
    r = rule(
        {"warning": LevelSpec(threshold=80, required_violations=2, violation_window_s=180)},
        recovery=RecoverySpec(normal_count=1, window_s=300),
    )
    trace, trs, _ = run(r, [85, 85, 10, 10, 10, 10, 10, 10])
    # last violation at t=60; the window (t-5m, t] is clear of it from t=360
    assert names(trace) == [
        "Inactive",
        "Firing",
        "Firing",
        "Recovering",
        "Recovering",
        "Recovering",
        "Inactive",
        "Inactive",
    ]
    assert trs[-1].t == 360.0


def test_recovery_threshold_datadog_style():
    r = rule(recovery=RecoverySpec(normal_count=1, threshold=70))
    trace, _, _ = run(r, [85, 75, 75, 65])
    assert names(trace) == ["Firing", "Recovering", "Recovering", "Inactive"]


def test_query_error_policies():
    trace, trs, _ = run(rule(), [85, NAN, 85], statuses=["ok", "error", "ok"])
    assert trace == [("Firing", "warning"), ("Error", "warning"), ("Firing", "warning")]  # the alarm is held
    assert [(tr.to_state, tr.reason, tr.notify) for tr in trs] == [
        ("Firing", "Triggered", True),
        ("Error", "Error", True),
        ("Firing", "DataReturned", False),  # the same episode, at the same level: nothing new to say
    ]
    trace, trs, _ = run(
        rule(on_error="KeepLast"), [85, NAN, NAN, 85], statuses=["ok", "error", "error", "ok"]
    )
    assert names(trace) == ["Firing"] * 4 and len(trs) == 1


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("NoData", ["Firing", "NoData", "NoData", "Inactive"]),
        ("KeepLast", ["Firing", "Firing", "Firing", "Inactive"]),
        ("Alerting", ["Firing", "Firing", "Firing", "Inactive"]),
        ("OK", ["Firing", "Inactive", "Inactive", "Inactive"]),
    ],
)
def test_no_data_policies(policy, expected):
    trace, trs, _ = run(rule(no_data=policy), [85, NAN, NAN, 10], statuses=["ok", "no_data", "no_data", "ok"])
    assert names(trace) == expected
    if policy == "NoData":
        assert [(tr.to_state, tr.reason, tr.notify) for tr in trs[1:]] == [
            ("NoData", "NoData", True),
            ("Inactive", "Recovered", True),  # the held alarm resolves by the recovery rule
        ]


@pytest.mark.parametrize("outage", ["error", "no_data"])
def test_an_outage_inside_an_alarm_holds_it_and_never_starts_a_second_one(outage):
    """Firing → Error/NoData → data again: Firing at once if a level still holds (no `for` again),
    else Recovering and Inactive by the recovery rule; a new episode only after Inactive."""
    r = rule({"warning": LevelSpec(threshold=80, for_s=120)}, recovery=RecoverySpec(normal_count=2))
    statuses = ["ok", "ok", "ok", outage, outage, "ok", "ok", "ok", "ok"]
    trace, trs, _ = run(r, [85, 85, 85, NAN, NAN, 85, 10, 10, 10], statuses=statuses)
    held = "Error" if outage == "error" else "NoData"
    assert names(trace) == ["Pending", "Pending", "Firing", held, held, "Firing", "Recovering", "Inactive", "Inactive"]
    starts = [tr for tr in trs if tr.to_state == "Firing" and tr.from_state in ("Inactive", "Pending")]
    assert len(starts) == 1
    assert [(tr.from_state, tr.to_state, tr.notify) for tr in trs if tr.notify] == [
        ("Pending", "Firing", True),
        ("Firing", held, True),
        ("Recovering", "Inactive", True),
    ]


def test_an_outage_that_ends_below_the_threshold_recovers_by_the_recovery_rule():
    r = rule(recovery=RecoverySpec(normal_count=3))
    trace, trs, _ = run(r, [85, NAN, 10, 10, 10], statuses=["ok", "error", "ok", "ok", "ok"])
    assert names(trace) == ["Firing", "Error", "Recovering", "Recovering", "Inactive"]
    assert (trs[-1].from_state, trs[-1].reason, trs[-1].notify) == ("Recovering", "Recovered", True)


def test_an_outage_keeps_the_violation_count_and_level():
    r = rule(
        {
            "warning": LevelSpec(threshold=80, required_violations=2, violation_window_s=600),
            "critical": LevelSpec(threshold=90, required_violations=2, violation_window_s=600),
        }
    )
    trace, trs, _ = run(r, [95, 95, NAN, 85], statuses=["ok", "ok", "error", "ok"])
    # two critical violations before the outage still count: one more at warning keeps it firing
    assert trace == [("Inactive", None), ("Firing", "critical"), ("Error", "critical"), ("Firing", "critical")]
    assert trs[-1].notify is False


def test_a_changed_level_after_an_outage_is_notified():
    _, trs, _ = run(rule(TWO), [95, NAN, 85], statuses=["ok", "error", "ok"])
    assert (trs[-1].from_state, trs[-1].to_state, trs[-1].from_level, trs[-1].level, trs[-1].notify) == (
        "Error",
        "Firing",
        "critical",
        "warning",
        True,
    )


def test_an_outage_outside_an_alarm_restarts_the_counters():
    r = rule({"warning": LevelSpec(threshold=80, for_s=120)})
    trace, _, _ = run(r, [85, 85, NAN, 85, 10], statuses=["ok", "ok", "error", "ok", "ok"])
    assert trace == [("Pending", "warning"), ("Pending", "warning"), ("Error", None), ("Pending", "warning"),
                     ("Inactive", None)]


def test_disabling_during_an_outage_that_holds_an_alarm_resolves_it():
    _, _, st = run(rule(), [85, NAN], statuses=["ok", "error"])
    new, trs = disable(st, 300.0)
    assert new.state == "Inactive" and trs and trs[0].notify


def test_no_data_alerting_fires_from_inactive():
    trace, _, _ = run(rule(no_data="Alerting"), [NAN], statuses=["no_data"])
    assert trace == [("Firing", "warning")]


def test_missing_series_two_evaluations_resolves():
    r = rule(recovery=RecoverySpec(normal_count=5))
    trace, trs, state = run(r, [85, NAN, NAN, NAN])
    assert names(trace) == ["Firing", "Firing", "Inactive", "Inactive"]
    assert (trs[-1].t, trs[-1].from_state, trs[-1].reason, trs[-1].notify) == (
        120.0,
        "Firing",
        "MissingSeries",
        True,
    )
    assert state.reason == "MissingSeries"


def test_one_missing_evaluation_keeps_firing():
    trace, trs, _ = run(rule(), [85, NAN, 85])
    assert names(trace) == ["Firing"] * 3 and len(trs) == 1


def test_outside_schedule_keeps_state_but_gates_notifications():
    berlin = ZoneInfo("Europe/Berlin")
    sched = Schedule("Europe/Berlin", (ScheduleWindow(frozenset({0}), 9 * 60, 17 * 60),))
    r = rule(schedule=sched)
    monday_8 = datetime(2026, 6, 1, 8, 59, tzinfo=berlin).timestamp()
    trace, trs, _ = run(r, [85, 10, 85], t0=monday_8)
    assert names(trace) == ["Firing", "Inactive", "Firing"]
    assert [tr.notify for tr in trs] == [False, True, True]


def test_absence_rule_fires_on_empty_window():
    r = EngineRule(kind="absence", levels={"critical": LevelSpec(for_s=60)}, interval_s=F)
    trace, _, _ = run(r, [3, 0, 0, 1])
    assert names(trace) == ["Inactive", "Pending", "Firing", "Inactive"]


def test_rule_state_is_most_severe():
    s = SeriesState
    assert rule_state([]) == "Inactive"
    assert rule_state([s(), s(state="NoData"), s(state="Pending")]) == "Pending"
    assert rule_state([s(state="Recovering"), s(state="Firing")]) == "Firing"
    assert rule_state(["Error", "Inactive"]) == "Error"
    assert rule_state(["Recovering", "Pending", "NoData"]) == "Recovering"


def test_series_state_round_trips_through_json():
    r = rule(
        {
            "warning": LevelSpec(threshold=80, required_violations=2, violation_window_s=300, for_s=60),
            "critical": LevelSpec(threshold=90, required_violations=2, violation_window_s=300, for_s=60),
        },
        recovery=RecoverySpec(normal_count=3, window_s=300),
    )
    _, _, state = run(r, [85, 95, 95, 95, 10])
    assert state.violations and state.last_violation_t == 180.0
    restored = SeriesState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    # and the restored state continues exactly like the original
    assert run(r, [10, 95, 10], state=restored, t0=300)[:2] == run(r, [10, 95, 10], state=state, t0=300)[:2]


def test_series_state_from_dict_rejects_unknown_state():
    with pytest.raises(ValueError, match="state"):
        SeriesState.from_dict({"state": "Exploded"})


def test_escalation_keeps_firing_since():
    _, _, state = run(rule(TWO), [85, 95])
    assert (state.state, state.level, state.since) == ("Firing", "critical", 0.0)


def test_disable_resolves_an_alarm():
    _, _, firing = run(rule(), [85])
    state, trs = disable(firing, 60.0)
    assert (state.state, state.reason) == ("Inactive", "Disabled")
    assert [(tr.from_state, tr.to_state, tr.reason, tr.notify) for tr in trs] == [
        ("Firing", "Inactive", "Disabled", True)
    ]
    assert disable(SeriesState(), 60.0)[1] == []
    # a series handed back in a display state continues as Inactive
    trace, trs, _ = run(rule(), [10, 85], state=SeriesState(state="Disabled"))
    assert names(trace) == ["Inactive", "Firing"] and trs[0].from_state == "Inactive"
