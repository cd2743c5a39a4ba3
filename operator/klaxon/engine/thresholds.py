"""Window aggregation, baselines and threshold bands (SEMANTICS §1, §3), vectorised with numpy.

Windows are left-open `(t - W, t]` as in PromQL, so both edges are found with
`np.searchsorted(..., side="right")`. Per-window reductions gather the window members
into one flat array and reduce each window with `ufunc.reduceat`, in blocks so that long
windows never allocate more than `_GATHER_LIMIT` elements at once.
"""

from __future__ import annotations

import math
import operator as op
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from klaxon.engine._tz import shift_local_weeks
from klaxon.engine.types import Aggregation, EngineRule, LevelSpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_GATHER_LIMIT = 4_000_000
_QUANTILES: Mapping[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
OPERATORS: Mapping[str, Callable[[Any, Any], Any]] = {
    "gt": op.gt,
    "gte": op.ge,
    "lt": op.lt,
    "lte": op.le,
    "eq": op.eq,
    "ne": op.ne,
}


@dataclass(frozen=True)
class PointBounds:
    """Bounds in force at one evaluation; `lower`/`upper` per level, NaN where unbounded."""

    expected: float
    lower: Mapping[str, float]
    upper: Mapping[str, float]
    n_points: int
    low_confidence: bool


@dataclass(frozen=True)
class Bounds:
    """Bounds at every evaluation time (arrays aligned with the evaluation times)."""

    expected: FloatArray
    lower: Mapping[str, FloatArray]
    upper: Mapping[str, FloatArray]
    n_points: IntArray
    low_conf: BoolArray

    def at(self, i: int) -> PointBounds:
        return PointBounds(
            expected=float(self.expected[i]),
            lower={k: float(v[i]) for k, v in self.lower.items()},
            upper={k: float(v[i]) for k, v in self.upper.items()},
            n_points=int(self.n_points[i]),
            low_confidence=bool(self.low_conf[i]),
        )


def _clean(times: npt.ArrayLike, values: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Sorted samples without NaN (a NaN sample is a missing sample)."""
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape:
        raise ValueError("sample times and values must have the same length")
    keep = np.isfinite(v) & np.isfinite(t)
    t, v = t[keep], v[keep]
    if t.size > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
    return t, v


def window_edges(
    eval_times: FloatArray, sample_times: FloatArray, window_s: float
) -> tuple[IntArray, IntArray]:
    """Index range `[lo, hi)` of the samples in `(t - W, t]` for each t."""
    lo = np.searchsorted(sample_times, eval_times - window_s, side="right").astype(np.int64)
    hi = np.searchsorted(sample_times, eval_times, side="right").astype(np.int64)
    return lo, hi


def _blocks(sizes: IntArray) -> Iterator[slice]:
    """Consecutive row blocks whose summed sizes stay under the gather limit."""
    n = sizes.shape[0]
    per_row = int(sizes.max()) if n else 0
    step = max(1, _GATHER_LIMIT // max(1, per_row))
    for a in range(0, n, step):
        yield slice(a, min(n, a + step))


def _gather(lo: IntArray, hi: IntArray) -> IntArray:
    """Indices of the concatenation of the segments `[lo_i, hi_i)`."""
    n = hi - lo
    total = int(n.sum())
    starts = np.cumsum(n) - n
    idx: IntArray = np.arange(total, dtype=np.int64) + np.repeat(lo - starts, n)
    return idx


def _reduce(ufunc: np.ufunc, flat: FloatArray, n: IntArray) -> FloatArray:
    """`ufunc` over consecutive groups of sizes `n` of `flat`; NaN for empty groups."""
    out = np.full(n.shape, np.nan)
    nonempty = n > 0
    if flat.size:
        starts = (np.cumsum(n) - n)[nonempty]
        out[nonempty] = ufunc.reduceat(flat, starts)
    return out


def _quantile(flat: FloatArray, n: IntArray, q: float) -> FloatArray:
    """Linear-interpolated quantile per group, as Prometheus' `quantile_over_time`."""
    out = np.full(n.shape, np.nan)
    if not flat.size:
        return out
    owner = np.repeat(np.arange(n.size), n)
    srt = flat[np.lexsort((flat, owner))]
    nonempty = n > 0
    starts = (np.cumsum(n) - n)[nonempty]
    rank = q * (n[nonempty] - 1)
    below = np.floor(rank).astype(np.int64)
    above = np.minimum(below + 1, n[nonempty] - 1)
    w = rank - below
    out[nonempty] = srt[starts + below] * (1 - w) + srt[starts + above] * w
    return out


def aggregate_windows(
    eval_times: npt.ArrayLike,
    sample_times: npt.ArrayLike,
    values: npt.ArrayLike,
    window_s: float,
    agg: Aggregation,
) -> FloatArray:
    """Aggregate of the samples in `(t - W, t]` for each t; NaN where the window is empty."""
    et = np.asarray(eval_times, dtype=np.float64)
    st, sv = _clean(sample_times, values)
    lo, hi = window_edges(et, st, window_s)
    n = hi - lo
    if agg == "count":
        return np.where(n > 0, n.astype(np.float64), np.nan)
    if agg == "last":
        return np.where(n > 0, sv[np.maximum(hi - 1, 0)] if sv.size else np.nan, np.nan)
    out = np.full(et.shape, np.nan)
    for blk in _blocks(n):
        flat = sv[_gather(lo[blk], hi[blk])]
        nb = n[blk]
        if agg in _QUANTILES:
            out[blk] = _quantile(flat, nb, _QUANTILES[agg])
        elif agg == "min":
            out[blk] = _reduce(np.minimum, flat, nb)
        elif agg == "max":
            out[blk] = _reduce(np.maximum, flat, nb)
        else:
            s = _reduce(np.add, flat, nb)
            out[blk] = s if agg == "sum" else s / np.where(nb > 0, nb, 1)
    return out


def window_counts(eval_times: npt.ArrayLike, sample_times: npt.ArrayLike, window_s: float) -> IntArray:
    """Number of samples in `(t - W, t]` (0 where empty): the value of an absence rule."""
    et = np.asarray(eval_times, dtype=np.float64)
    st = np.sort(np.asarray(sample_times, dtype=np.float64))
    lo, hi = window_edges(et, st, window_s)
    return hi - lo


@dataclass(frozen=True)
class Baseline:
    """Statistics of the K weekly baseline windows at each evaluation time."""

    n: IntArray
    weeks: IntArray
    mean: FloatArray
    std: FloatArray
    min: FloatArray
    max: FloatArray


def baseline(
    eval_times: FloatArray,
    sample_times: FloatArray,
    sample_values: FloatArray,
    weeks: int,
    window_s: float,
    timezone: str | None,
) -> Baseline:
    """Pool the raw samples in `(t - k·7d - W, t - k·7d]`, k = 1..K, per t (population stddev).

    With a time zone, "k weeks earlier" is the same local wall-clock time (DST-aware).
    """
    et = np.asarray(eval_times, dtype=np.float64)
    ends = np.stack([shift_local_weeks(timezone, et, k) for k in range(1, weeks + 1)], axis=1)
    lo, hi = window_edges(ends.ravel(), sample_times, window_s)
    lo, hi = lo.reshape(ends.shape), hi.reshape(ends.shape)
    cnt = hi - lo
    n = cnt.sum(axis=1)
    mean = np.full(et.shape, np.nan)
    m2 = np.full(et.shape, np.nan)
    mn = np.full(et.shape, np.nan)
    mx = np.full(et.shape, np.nan)
    for blk in _blocks(n):
        flat = sample_values[_gather(lo[blk].ravel(), hi[blk].ravel())]
        nb = n[blk]
        safe = np.where(nb > 0, nb, 1)
        mean[blk] = _reduce(np.add, flat, nb) / safe
        mn[blk] = _reduce(np.minimum, flat, nb)
        mx[blk] = _reduce(np.maximum, flat, nb)
        centre = np.repeat(np.nan_to_num(mean[blk]), nb)
        m2[blk] = _reduce(np.add, (flat - centre) ** 2, nb) / safe
    constant = mn == mx  # exact zero spread, whatever the rounding of the mean
    std = np.where(constant, 0.0, np.sqrt(m2))
    mean = np.where(constant, mn, mean)
    return Baseline(n=n, weeks=(cnt > 0).sum(axis=1), mean=mean, std=std, min=mn, max=mx)


def _level_param(rule: EngineRule, spec: LevelSpec) -> float:
    dyn = rule.dynamic
    assert dyn is not None
    if spec.threshold is not None:
        return spec.threshold
    return dyn.stddev_multiplier if dyn.mode == "stddev" else dyn.tolerance_percent


def _guard(band: FloatArray, rail: float | None, widen: Callable[..., FloatArray]) -> FloatArray:
    return band if rail is None else widen(band, rail)


def compute_bounds(
    rule: EngineRule,
    eval_times: npt.ArrayLike,
    sample_times: npt.ArrayLike,
    sample_values: npt.ArrayLike,
) -> Bounds:
    """Expected value, per-level band, baseline size and low confidence at each t (SEMANTICS §3)."""
    et = np.asarray(eval_times, dtype=np.float64)
    nan = np.full(et.shape, np.nan)
    lower: dict[str, FloatArray] = {}
    upper: dict[str, FloatArray] = {}
    if rule.kind != "dynamic" or rule.dynamic is None:
        for name, spec in rule.levels.items():
            lo, up = spec.lower, spec.upper
            if rule.kind == "threshold" and spec.threshold is not None:
                lo = spec.threshold if rule.operator in ("lt", "lte", "eq", "ne") else None
                up = spec.threshold if rule.operator in ("gt", "gte", "eq", "ne") else None
            lower[name] = np.full(et.shape, np.nan if lo is None else lo)
            upper[name] = np.full(et.shape, np.nan if up is None else up)
        return Bounds(nan, lower, upper, np.zeros(et.shape, np.int64), np.zeros(et.shape, bool))

    dyn = rule.dynamic
    st, sv = _clean(sample_times, sample_values)
    window = dyn.window_s if dyn.window_s is not None else rule.window_s
    b = baseline(et, st, sv, dyn.lookback_weeks, window, rule.baseline_timezone)
    for name, spec in rule.levels.items():
        p = _level_param(rule, spec)
        lo_band: FloatArray
        up_band: FloatArray
        if dyn.mode == "percentage":
            lo_band, up_band = b.mean - np.abs(b.mean) * p / 100, b.mean + np.abs(b.mean) * p / 100
        elif dyn.mode == "stddev":
            lo_band, up_band = b.mean - p * b.std, b.mean + p * b.std
        else:
            lo_band, up_band = b.min - np.abs(b.min) * p / 100, b.max + np.abs(b.max) * p / 100
        lower[name] = _guard(lo_band, spec.lower, np.fmin)
        upper[name] = _guard(up_band, spec.upper, np.fmax)
    low = (b.n < dyn.minimum_baseline_points) | (b.weeks < math.ceil(dyn.lookback_weeks / 2))
    if dyn.mode == "stddev":
        low |= b.std == 0
    elif dyn.mode == "percentage":
        low |= b.mean == 0
    return Bounds(b.mean, lower, upper, b.n.astype(np.int64), low)


def level_violations(
    rule: EngineRule,
    level: str,
    x: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    low_conf: BoolArray,
) -> BoolArray:
    """Point violation `b_L` (vectorised); NaN values and NaN bounds never violate."""
    spec = rule.levels[level]
    with np.errstate(invalid="ignore"):
        if rule.kind == "absence":
            b = np.asarray(x == 0)
        elif rule.kind == "threshold" and spec.threshold is not None:
            b = np.asarray(OPERATORS[rule.operator](x, spec.threshold), dtype=bool)
            # a band set next to the threshold violates too (`X > T or X > U or X < L`, as compiled)
            if spec.upper is not None:
                b = b | np.asarray(x > spec.upper)
            if spec.lower is not None:
                b = b | np.asarray(x < spec.lower)
        else:
            above = np.asarray(x > upper) if rule.direction in ("above", "both") else np.zeros(x.shape, bool)
            below = np.asarray(x < lower) if rule.direction in ("below", "both") else np.zeros(x.shape, bool)
            b = above | below
    b = b & np.isfinite(x)
    if rule.kind == "dynamic" and rule.dynamic is not None and rule.dynamic.suppress_low_confidence:
        b = b & ~low_conf
    return b


def violation_arrays(rule: EngineRule, x: FloatArray, bounds: Bounds) -> dict[str, BoolArray]:
    """`b_L(t)` for every configured level."""
    return {
        lv: level_violations(rule, lv, x, bounds.lower[lv], bounds.upper[lv], bounds.low_conf)
        for lv in rule.levels
    }


def point_violations(rule: EngineRule, value: float, pb: PointBounds) -> dict[str, bool]:
    """`b_L(t)` at one evaluation, through the same code as the vectorised path."""
    x = np.array([value])
    low = np.array([pb.low_confidence])
    return {
        lv: bool(level_violations(rule, lv, x, np.array([pb.lower[lv]]), np.array([pb.upper[lv]]), low)[0])
        for lv in rule.levels
    }


def is_suppressed(rule: EngineRule, low_confidence: bool) -> bool:
    """A low-confidence point of a suppressing dynamic rule carries reason LowConfidence."""
    return bool(
        low_confidence
        and rule.kind == "dynamic"
        and rule.dynamic is not None
        and rule.dynamic.suppress_low_confidence
    )
