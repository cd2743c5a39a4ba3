"""The per-series state machine of SEMANTICS §4: one evaluation at a time.

`step` is the only place where states change; the evaluator calls it once per series and
evaluation, and `replay` calls it for every evaluation that could change anything.

Reading of the table used here:
- A level's condition `w_L` is its point violation, or ≥ requiredViolations point violations
  in `(t - V, t]`; it is *active* once it has held at every evaluation in `[t - for_L, t]`.
- From Inactive/Pending/NoData/Error a level must be active to fire. Once in alarm
  (Firing/Recovering) the alarm holds while `w_L` of the current or a lower level holds
  (Prometheus' `for` is not re-applied, hence "Recovering → Firing, no Pending"); moving up
  to a more severe level needs that level active.
- A missing sample (NaN) is neither violation nor normal: counters hold. Two missed
  evaluations in a row end Pending/Firing/Recovering with reason MissingSeries.
- NoData policy: NoData → state NoData; KeepLast → state held; Alerting/OK → the evaluation
  counts as a violation / a normal point at every level (Alerting thus honours `for` and
  N-of-M, and reaches the most severe level). Error policy: Error → state Error; KeepLast → held.
- An alarm outlives an outage: entering NoData/Error from Firing/Recovering keeps the level and
  the counters (as over missing samples), and when data returns the series goes on as an alarm —
  Firing if a level's condition holds (no `for` again, as Recovering → Firing), else Recovering
  and then Inactive by the recovery rule. So an outage never ends one episode and starts another.
- `since` is when the state (by name) was entered: escalation keeps it, Recovering → Firing resets it.
- Muted and Disabled are rule-level states; `step` treats a series in them as Inactive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np

from klaxon.engine.schedule import in_schedule
from klaxon.engine.thresholds import OPERATORS, PointBounds, compute_bounds, is_suppressed, point_violations
from klaxon.engine.types import (
    ALARM_STATES,
    SEVERITY,
    EngineRule,
    EvalStatus,
    Level,
    SeriesState,
    State,
    Transition,
)

_EPS = 1e-6
_OUTAGE = ("NoData", "Error")
_RANK: Mapping[str, int] = {
    "Firing": 5,
    "Recovering": 4,
    "Pending": 3,
    "Error": 2,
    "NoData": 2,
    "Inactive": 0,
    "Muted": 0,
    "Disabled": 0,
}


def in_alarm(state: SeriesState) -> bool:
    """Firing or Recovering, or an alarm held through an outage (NoData/Error entered from one)."""
    return state.state in ALARM_STATES or (state.state in _OUTAGE and state.level is not None)


def default_bounds(rule: EngineRule, t: float) -> PointBounds:
    """Bounds of a rule without baseline data (static bands; a dynamic rule gets only its guard rails)."""
    return compute_bounds(rule, np.array([t]), np.empty(0), np.empty(0)).at(0)


def recovery_ok(rule: EngineRule, value: float) -> bool:
    """Whether the value passes the recovery threshold (always, without one or without a value)."""
    thr = rule.recovery.threshold
    if thr is None or not math.isfinite(value):
        return True
    return not OPERATORS[rule.operator](value, thr)


def step(
    rule: EngineRule,
    state: SeriesState,
    t: float,
    value: float,
    bounds: PointBounds | None = None,
    *,
    status: EvalStatus = "ok",
) -> tuple[SeriesState, list[Transition]]:
    """One evaluation of one series: the value at t (NaN = missing) against the bounds at t."""
    if status != "ok" or not math.isfinite(value):
        return step_flags(rule, state, t, None, value=value, status=status)
    pb = bounds if bounds is not None else default_bounds(rule, t)
    return step_flags(
        rule,
        state,
        t,
        point_violations(rule, value, pb),
        value=value,
        passes_recovery=recovery_ok(rule, value),
    )


def _changed(
    state: SeriesState, new: SeriesState, t: float, reason: str, notify: bool, outside: bool
) -> tuple[SeriesState, list[Transition]]:
    tr = Transition(
        t=t,
        from_state=state.state,
        to_state=new.state,
        level=new.level,
        reason=reason,
        from_level=state.level,
        notify=notify and not outside,
    )
    return replace(new, reason=reason), [tr]


def _enter_policy_state(
    state: SeriesState, t: float, to: State, outside: bool
) -> tuple[SeriesState, list[Transition]]:
    """NoData / Error, reported (and notified) once. An alarm is held: its level and counters stay;
    anything else restarts its counters."""
    if state.state == to:
        return replace(state, last_eval_t=t), []
    if in_alarm(state):
        new = replace(state, state=to, since=t, last_eval_t=t)
    else:
        new = SeriesState(state=to, since=t, last_value=state.last_value, last_eval_t=t)
    return _changed(state, new, t, to, True, outside)


def step_flags(
    rule: EngineRule,
    state: SeriesState,
    t: float,
    violations: Mapping[str, bool] | None,
    *,
    value: float = math.nan,
    passes_recovery: bool = True,
    status: EvalStatus = "ok",
) -> tuple[SeriesState, list[Transition]]:
    """`step` from precomputed point violations `b_L(t)` (None = missing sample).

    Composite rules and the replay fast path enter here.
    """
    if state.state in ("Muted", "Disabled"):
        # Rule-level display states; a series in them is an Inactive series.
        state = replace(state, state="Inactive", level=None)
    outside = rule.schedule is not None and not in_schedule(t, rule.schedule)
    if status == "error":
        if rule.on_error == "KeepLast":
            return replace(state, last_eval_t=t), []
        return _enter_policy_state(state, t, "Error", outside)
    if status == "no_data":
        if rule.no_data == "KeepLast":
            return replace(state, last_eval_t=t), []
        if rule.no_data == "NoData":
            return _enter_policy_state(state, t, "NoData", outside)
        violations = {lv: rule.no_data == "Alerting" for lv in rule.levels}
        value = math.nan
    elif violations is None:
        missing = state.missing_count + 1
        if missing >= 2 and state.state in ("Pending", "Firing", "Recovering"):
            new = SeriesState(
                state="Inactive", since=t, last_value=state.last_value, last_eval_t=t, missing_count=missing
            )
            return _changed(state, new, t, "MissingSeries", state.state in ALARM_STATES, outside)
        return replace(state, last_eval_t=t, missing_count=missing), []
    return _evaluate(rule, state, t, violations, value, passes_recovery, outside)


def _evaluate(
    rule: EngineRule,
    state: SeriesState,
    t: float,
    b: Mapping[str, bool],
    value: float,
    passes_recovery: bool,
    outside: bool,
) -> tuple[SeriesState, list[Transition]]:
    held, history, cand, active = _levels_held(rule, state, t, b)
    any_b = any(bool(b.get(lv, False)) for lv in rule.levels)
    normal = not cand and passes_recovery
    nc = min(state.normal_count + 1, rule.recovery.normal_count) if normal else 0
    cur = replace(
        state,
        held_since=held,
        violations=history,
        last_violation_t=t if any_b else state.last_violation_t,
        normal_count=nc,
        last_value=value if math.isfinite(value) else state.last_value,
        last_eval_t=t,
        missing_count=0,
    )
    if in_alarm(state):
        return _from_alarm(rule, state, cur, t, cand, active, outside)
    if active:
        new = replace(cur, state="Firing", level=active[0], since=t)
        return _changed(state, new, t, "Triggered", True, outside)
    if cand:
        if state.state == "Pending":
            return replace(cur, level=cand[0]), []
        new = replace(cur, state="Pending", level=cand[0], since=t, pending_since=t)
        return _changed(state, new, t, "ConditionMet", False, outside)
    if state.state == "Inactive":
        return cur, []
    # Leaving NoData/Error resolves what entering them notified.
    reason = "ConditionBroken" if state.state == "Pending" else "DataReturned"
    new = replace(cur, state="Inactive", level=None, since=t, pending_since=None)
    return _changed(state, new, t, reason, state.state != "Pending", outside)


def _levels_held(
    rule: EngineRule, state: SeriesState, t: float, b: Mapping[str, bool]
) -> tuple[dict[str, float], dict[str, tuple[float, ...]], list[Level], list[Level]]:
    """Per level: since when it holds, its violation history, and whether it is a candidate
    (its trigger holds) or active (held for its `for` too); candidates most severe first."""
    held: dict[str, float] = {}
    history: dict[str, tuple[float, ...]] = {}
    cand: list[Level] = []
    active: list[Level] = []
    for lv in rule.ordered_levels:
        spec = rule.levels[lv]
        bl = bool(b.get(lv, False))
        if spec.violation_window_s is not None:
            kept = tuple(x for x in state.violations.get(lv, ()) if x > t - spec.violation_window_s)
            h = (*kept, t) if bl else kept
            if h:
                history[lv] = h
            w = len(h) >= spec.required_violations
        else:
            w = bl
        if not w:
            continue
        held[lv] = state.held_since.get(lv, t)
        cand.append(lv)
        if t - held[lv] >= spec.for_s - _EPS:
            active.append(lv)
    return held, history, cand, active


def _from_alarm(
    rule: EngineRule,
    state: SeriesState,
    cur: SeriesState,
    t: float,
    cand: list[Level],
    active: list[Level],
    outside: bool,
) -> tuple[SeriesState, list[Transition]]:
    """The next state of a Firing or Recovering series (or one that was, before an outage)."""
    assert state.level is not None
    rank = SEVERITY[state.level]
    target = next((lv for lv in cand if lv in active or SEVERITY[lv] <= rank), None)
    if target is not None:
        if state.state != "Firing":  # Recovering, or an alarm back from an outage
            new = replace(cur, state="Firing", level=target, since=t)
            reason = "Retriggered" if state.state == "Recovering" else "DataReturned"
            return _changed(state, new, t, reason, target != state.level, outside)
        if target == state.level:
            return cur, []
        reason = "Escalated" if SEVERITY[target] > rank else "Deescalated"
        return _changed(state, replace(cur, level=target), t, reason, True, outside)
    window = rule.recovery.window_s
    quiet = window is None or cur.last_violation_t is None or cur.last_violation_t <= t - window
    if cur.normal_count >= rule.recovery.normal_count and quiet:
        new = replace(cur, state="Inactive", level=None, since=t, pending_since=None)
        return _changed(state, new, t, "Recovered", True, outside)
    if state.state != "Recovering":
        new = replace(cur, state="Recovering", since=t)
        reason = "ConditionCleared" if state.state == "Firing" else "DataReturned"
        return _changed(state, new, t, reason, False, outside)
    return cur, []


def disable(state: SeriesState, t: float) -> tuple[SeriesState, list[Transition]]:
    """Disabling a rule: its series go Inactive with reason Disabled (an alarm is resolved)."""
    new = SeriesState(state="Inactive", since=t, last_value=state.last_value, last_eval_t=t)
    if state.state == "Inactive":
        return replace(new, since=state.since, reason="Disabled"), []
    return _changed(state, new, t, "Disabled", in_alarm(state), False)


def rule_state(series_states: Iterable[SeriesState | State]) -> State:
    """Rule-level state: the most severe over its series (Firing > Recovering > Pending > Error/NoData)."""
    worst: State = "Inactive"
    for s in series_states:
        name: State = s.state if isinstance(s, SeriesState) else s
        if _RANK[name] > _RANK[worst]:
            worst = name
    return worst


def evaluation_reason(
    rule: EngineRule, t: float, low_confidence: bool, status: EvalStatus, missing: bool
) -> str | None:
    """Why this evaluation is special (shown on the point / CR), independent of transitions."""
    if status == "error":
        return "Error"
    if status == "no_data":
        return "NoData"
    if missing:
        return "MissingSample"
    if is_suppressed(rule, low_confidence):
        return "LowConfidence"
    if rule.schedule is not None and not in_schedule(t, rule.schedule):
        return "OutsideSchedule"
    return None
