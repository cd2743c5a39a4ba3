"""Preview / backtest (SEMANTICS §7): the evaluator's evaluation replayed on the `t_k` grid.

Values and bounds are computed for the whole grid at once; the state machine is the same
`step` the evaluator calls. Most evaluations of a healthy series change nothing (Inactive,
no violation, no counting window holding), so the fast path skips such runs with one bulk
update and calls `step_flags` only where the state could move. `fast=False` calls the
public `step` at every evaluation; tests assert both paths agree.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from klaxon.engine.schedule import in_schedule_array
from klaxon.engine.state import evaluation_reason, recovery_ok, step, step_flags
from klaxon.engine.thresholds import (
    OPERATORS,
    Bounds,
    aggregate_windows,
    compute_bounds,
    violation_arrays,
    window_counts,
)
from klaxon.engine.types import (
    ALARM_STATES,
    WEEK_S,
    CompositeReplayResult,
    EngineRule,
    EvalStatus,
    Level,
    Points,
    ReplayResult,
    ReplaySummary,
    SeriesState,
    State,
    Transition,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Series = tuple[npt.ArrayLike, npt.ArrayLike]

# Per-evaluation status of a series in a replay.
_OK, _MISSING, _NO_DATA, _SKIP = 0, 1, 2, 3


def grid_offset(key: str, interval_s: float) -> float:
    """`hash(rule) mod f` in whole seconds, stable across processes (unlike `hash()`)."""
    digest = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    return float(digest % max(1, int(interval_s)))


def eval_grid(start: float, end: float, interval_s: float, offset_s: float = 0.0) -> FloatArray:
    """All `t_k = k·f + offset` in `[start, end]`."""
    k0 = math.ceil((start - offset_s) / interval_s)
    k1 = math.floor((end - offset_s) / interval_s)
    return np.arange(k0, k1 + 1, dtype=np.float64) * interval_s + offset_s


def default_warmup(rule: EngineRule) -> float:
    """max(K weeks, V, R, for) so the state at `from` is what a running evaluator would have."""
    parts = [0.0, rule.recovery.window_s or 0.0]
    if rule.kind == "dynamic" and rule.dynamic is not None:
        parts.append(rule.dynamic.lookback_weeks * WEEK_S)
    for spec in rule.levels.values():
        parts += [spec.for_s, spec.violation_window_s or 0.0]
    parts += [default_warmup(child) for child in rule.children]
    return max(parts)


@dataclass(frozen=True)
class _Inputs:
    """Everything the state machine consumes for one series, aligned with the grid."""

    times: FloatArray
    values: FloatArray
    flags: Mapping[str, BoolArray]
    status: npt.NDArray[np.int8]
    low_conf: BoolArray
    bounds: Bounds | None  # None for composite rules (flags come from the children)


def _passes(rule: EngineRule, values: FloatArray) -> BoolArray:
    thr = rule.recovery.threshold
    if thr is None:
        return np.ones(values.shape, bool)
    with np.errstate(invalid="ignore"):
        fails = np.asarray(OPERATORS[rule.operator](values, thr), dtype=bool) & np.isfinite(values)
    return ~fails


def _eval_reasons(rule: EngineRule, inp: _Inputs) -> list[str | None]:
    """`evaluation_reason` for every point, vectorised."""
    out = np.full(inp.times.shape, None, dtype=object)
    if rule.schedule is not None:
        out[~in_schedule_array(inp.times, rule.schedule)] = "OutsideSchedule"
    if rule.kind == "dynamic" and rule.dynamic is not None and rule.dynamic.suppress_low_confidence:
        out[inp.low_conf] = "LowConfidence"
    out[inp.status == _MISSING] = "MissingSample"
    out[inp.status == _NO_DATA] = "NoData"
    out[inp.status == _SKIP] = None
    return list(out)


def _quiet(rule: EngineRule, inp: _Inputs) -> BoolArray:
    """Evaluations at which `step` from Inactive provably stays Inactive with no transition.

    The windowed counts here count every point violation `step` could have recorded
    (its history is a subset, being cleared on resets), so they never undercount.
    """
    n = inp.times.shape[0]
    effective = {lv: inp.flags[lv] & (inp.status == _OK) for lv in rule.levels}
    if rule.no_data == "Alerting":
        effective = {lv: f | (inp.status == _NO_DATA) for lv, f in effective.items()}
    any_b = np.zeros(n, bool)
    any_w = np.zeros(n, bool)
    for lv, spec in rule.levels.items():
        b = effective[lv]
        any_b |= b
        if spec.violation_window_s is None:
            any_w |= b
            continue
        cum = np.concatenate(([0], np.cumsum(b)))
        first = np.searchsorted(inp.times, inp.times - spec.violation_window_s, side="right")
        any_w |= (cum[1:] - cum[first]) >= spec.required_violations
    quiet: BoolArray = (inp.status == _OK) & ~any_b & ~any_w & _passes(rule, inp.values)
    return quiet


def _run(
    rule: EngineRule, inp: _Inputs, fast: bool
) -> tuple[list[State], list[Level | None], list[str | None], list[Transition], SeriesState]:
    """Drive the state machine over the grid; per-point state, level and reason."""
    n = inp.times.shape[0]
    states: list[State] = ["Inactive"] * n
    levels: list[Level | None] = [None] * n
    reasons: list[str | None] = _eval_reasons(rule, inp) if fast else [None] * n
    transitions: list[Transition] = []
    state = SeriesState()
    quiet = _quiet(rule, inp) if fast else np.zeros(n, bool)
    loud = np.flatnonzero(~quiet)
    windows = {lv: s.violation_window_s for lv, s in rule.levels.items() if s.violation_window_s is not None}
    i = 0
    while i < n:
        if quiet[i] and state.state == "Inactive":
            pos = int(np.searchsorted(loud, i))
            j = int(loud[pos]) if pos < loud.shape[0] else n
            last = inp.times[j - 1]
            kept = {
                lv: tuple(x for x in state.violations.get(lv, ()) if x > last - win)
                for lv, win in windows.items()
            }
            state = replace(
                state,
                held_since={},
                violations={lv: h for lv, h in kept.items() if h},
                normal_count=min(state.normal_count + (j - i), rule.recovery.normal_count),
                last_value=float(inp.values[j - 1]) if np.isfinite(inp.values[j - 1]) else state.last_value,
                last_eval_t=float(last),
                missing_count=0,
            )
            i = j
            continue
        code = int(inp.status[i])
        t = float(inp.times[i])
        if code != _SKIP:
            status: EvalStatus = "no_data" if code == _NO_DATA else "ok"
            x = float(inp.values[i]) if code == _OK else math.nan
            if not fast and inp.bounds is not None:
                state, trs = step(rule, state, t, x, inp.bounds.at(i), status=status)
            else:
                flags = {lv: bool(f[i]) for lv, f in inp.flags.items()} if code == _OK else None
                state, trs = step_flags(
                    rule, state, t, flags, value=x, passes_recovery=recovery_ok(rule, x), status=status
                )
            if not fast:
                low = bool(inp.low_conf[i])
                reasons[i] = evaluation_reason(rule, t, low, status, code == _MISSING)
            if trs:
                transitions += trs
                reasons[i] = trs[-1].reason
        states[i] = state.state
        levels[i] = state.level
        i += 1
    return states, levels, reasons, transitions, state


def _held(tr: Transition) -> bool:
    """The transition continues an alarm: from Firing/Recovering, or from an outage that held one."""
    return tr.from_state in ALARM_STATES or (tr.from_state in ("NoData", "Error") and tr.from_level is not None)


def _summarise(points: Points, transitions: Sequence[Transition], interval_s: float) -> ReplaySummary:
    alarm = points.is_alarm_active
    starts = sum(1 for tr in transitions if tr.to_state in ALARM_STATES and not _held(tr))
    already = int(
        bool(alarm.size and alarm[0])
        and not any(
            tr.t == points.t[0] and not _held(tr) and tr.to_state in ALARM_STATES
            for tr in transitions
        )
    )
    return ReplaySummary(
        points=len(points),
        violations=int(points.is_violation.sum()),
        alarms=starts + already,
        time_in_alarm_s=float(alarm.sum()) * interval_s,
        low_confidence_points=int(points.low_confidence.sum()),
    )


def _finish(rule: EngineRule, inp: _Inputs, start: float, fast: bool) -> ReplayResult:
    states, levels, reasons, transitions, final = _run(rule, inp, fast)
    first = int(np.searchsorted(inp.times, start, side="left"))
    keep = slice(first, None)
    n = inp.times.shape[0]
    bounds = inp.bounds
    lead = rule.ordered_levels[-1]  # the least severe level's band: where a point stops being normal
    nan = np.full(n, np.nan)
    violation = np.zeros(n, bool)
    for f in inp.flags.values():
        violation |= f
    violation &= inp.status == _OK
    points = Points(
        t=inp.times[keep],
        value=np.where(inp.status == _OK, inp.values, np.nan)[keep],
        expected=(bounds.expected if bounds is not None else nan)[keep],
        lower=(bounds.lower[lead] if bounds is not None else nan)[keep],
        upper=(bounds.upper[lead] if bounds is not None else nan)[keep],
        baseline_points=(bounds.n_points if bounds is not None else np.zeros(n, np.int64))[keep],
        low_confidence=inp.low_conf[keep],
        is_violation=violation[keep],
        level=levels[first:],
        state=states[first:],
        reason=reasons[first:],
        bands={}
        if bounds is None
        else {lv: (bounds.lower[lv][keep], bounds.upper[lv][keep]) for lv in rule.ordered_levels},
    )
    shown = tuple(tr for tr in transitions if tr.t >= start)
    return ReplayResult(points, shown, _summarise(points, shown, rule.interval_s), final)


def _values(
    rule: EngineRule, grid: FloatArray, times: npt.ArrayLike, values: npt.ArrayLike, x: npt.ArrayLike | None = None
) -> FloatArray:
    """The value on the grid: ``x`` when the caller computed it (NaN where absent), else from the samples."""
    if x is not None:
        out = np.asarray(x, dtype=np.float64)
        if out.shape != grid.shape:
            raise ValueError(f"replay: {out.shape[0]} values for {grid.shape[0]} evaluations")
        # an absence rule's value is a sample count: no result is a count of 0
        return np.where(np.isfinite(out), out, 0.0) if rule.kind == "absence" else out
    if rule.kind == "absence":
        return window_counts(grid, times, rule.window_s).astype(np.float64)
    return aggregate_windows(grid, times, values, rule.window_s, rule.aggregation)


def _inputs(
    rule: EngineRule, grid: FloatArray, data: Series, x: FloatArray, status: npt.NDArray[np.int8]
) -> _Inputs:
    bounds = compute_bounds(rule, grid, *data)
    return _Inputs(grid, x, violation_arrays(rule, x, bounds), status, bounds.low_conf, bounds)


def replay_grid(rule: EngineRule, start: float, end: float, warmup: float | None = None) -> FloatArray:
    """The evaluation times a replay of ``[start, end]`` steps through (warmup included)."""
    if end < start:
        raise ValueError("replay: end is before start")
    w = default_warmup(rule) if warmup is None else warmup
    return eval_grid(start - w, end, rule.interval_s, rule.offset_s)


def _grid(rule: EngineRule, start: float, end: float, warmup: float | None) -> FloatArray:
    if rule.kind == "composite":
        raise ValueError("replay: composite rules need one series per condition; use replay_composite")
    return replay_grid(rule, start, end, warmup)


def replay(
    rule: EngineRule,
    sample_times: npt.ArrayLike,
    sample_values: npt.ArrayLike,
    start: float,
    end: float,
    warmup: float | None = None,
    *,
    fast: bool = True,
    x: npt.ArrayLike | None = None,
) -> ReplayResult:
    """Replay one series (the rule's only series: an empty window is "no series at all" → NoData policy).

    ``x``: the value at every time of ``replay_grid`` when the caller has it (a query's result);
    the samples then serve the baseline only.
    """
    grid = _grid(rule, start, end, warmup)
    data = (sample_times, sample_values)
    x = _values(rule, grid, *data, x)
    status = np.where(np.isfinite(x), _OK, _NO_DATA).astype(np.int8)
    return _finish(rule, _inputs(rule, grid, data, x, status), start, fast)


def replay_many(
    rule: EngineRule,
    series: Mapping[str, Series],
    start: float,
    end: float,
    warmup: float | None = None,
    *,
    fast: bool = True,
    values: Mapping[str, npt.ArrayLike] | None = None,
) -> dict[str, ReplayResult]:
    """Replay every series of a split rule as the evaluator sees them.

    A series is evaluated from its first appearance. While others return, its empty window is
    a missing sample (MissingSeries after two); when none returns, each gets the NoData policy.
    ``values``: per series, the value at every time of ``replay_grid`` (as ``replay``'s ``x``).
    """
    grid = _grid(rule, start, end, warmup)
    xs = {key: _values(rule, grid, *data, (values or {}).get(key)) for key, data in series.items()}
    present = {key: (x > 0) if rule.kind == "absence" else np.isfinite(x) for key, x in xs.items()}
    any_present = np.zeros(grid.shape, bool)
    for p in present.values():
        any_present |= p
    out: dict[str, ReplayResult] = {}
    for key, data in series.items():
        p = present[key]
        known = np.logical_or.accumulate(p)
        status = np.full(grid.shape, _SKIP, np.int8)
        if rule.kind == "absence":
            status[known] = _OK
        else:
            status[known & p] = _OK
            status[known & ~p & any_present] = _MISSING
            status[known & ~any_present] = _NO_DATA
        out[key] = _finish(rule, _inputs(rule, grid, data, xs[key], status), start, fast)
    return out


def replay_composite(
    rule: EngineRule,
    inputs: Sequence[Series],
    start: float,
    end: float,
    warmup: float | None = None,
    *,
    fast: bool = True,
    values: Sequence[npt.ArrayLike | None] | None = None,
) -> CompositeReplayResult:
    """Replay a composite rule: each child's point violation, combined per timestamp by `logic`.

    Three-valued: a missing child is unknown, so `all` is false if any child is false and
    `any` true if any child is true; otherwise unknown makes the point missing (NoData when
    every child is missing). The rule's own levels and recovery then apply. ``values``: per
    child, its value at every time of ``replay_grid`` (as ``replay``'s ``x``), or None.
    """
    if rule.kind != "composite" or len(inputs) != len(rule.children):
        raise ValueError("replay_composite: needs a composite rule and one series per child")
    grid = replay_grid(rule, start, end, warmup)
    children = []
    truth: list[BoolArray] = []
    known: list[BoolArray] = []
    given = list(values) if values is not None else [None] * len(inputs)
    if len(given) != len(inputs):
        raise ValueError("replay_composite: needs one value array (or None) per child")
    for child, data, xc in zip(rule.children, inputs, given, strict=True):
        x = _values(child, grid, *data, xc)
        ok = np.isfinite(x)
        inp = _inputs(child, grid, data, x, np.where(ok, _OK, _NO_DATA).astype(np.int8))
        b = np.zeros(grid.shape, bool)
        for f in inp.flags.values():
            b |= f
        truth.append(b & ok)
        known.append(ok)
        children.append(_finish(child, inp, start, fast))
    t_all = np.stack(truth)
    k_all = np.stack(known)
    if rule.logic == "all":
        value = ~np.any(k_all & ~t_all, axis=0)
        decided = ~value | np.all(k_all, axis=0)
    else:
        value = np.any(t_all, axis=0)
        decided = value | np.all(k_all, axis=0)
    status = np.where(decided, _OK, np.where(np.any(k_all, axis=0), _MISSING, _NO_DATA)).astype(np.int8)
    flags = {lv: value & decided for lv in rule.levels}
    inp = _Inputs(grid, np.full(grid.shape, np.nan), flags, status, np.zeros(grid.shape, bool), None)
    return CompositeReplayResult(tuple(children), _finish(rule, inp, start, fast))
