"""Composite rules: each operand's point violation per group of the common splitBy labels, and
how `all` / `any` combine them (three-valued, as `klaxon.engine.replay_composite`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from klaxon.api.alertrule import Query
from klaxon.compile.query import absence_labels
from klaxon.engine import compute_bounds, point_violations
from klaxon.engine.state import default_bounds
from klaxon.engine.types import EngineRule
from klaxon.evaluator.queries import QueryResult, pooled_baseline
from klaxon.evaluator.results import SeriesKey, series_key
from klaxon.prom.client import PrometheusError, Sample


def operand_flags(
    er: EngineRule,
    q: Query,
    t: float,
    main: QueryResult,
    baseline: Sequence[QueryResult],
    common: Sequence[str],
) -> dict[SeriesKey, tuple[bool, bool]]:
    """Per group of the common splitBy labels: (known, violating) of one composite operand.

    A group is known when one of the operand's series has a value, violating when one of
    them violates (as `C1 and on(G) C2` matches on the common labels).
    """
    assert not isinstance(main, PrometheusError)
    values: dict[SeriesKey, float] = {series_key(s.labels): s.value for s in main if isinstance(s, Sample)}
    if er.kind == "absence" and not values and not q.split_by:
        values[series_key(absence_labels(q))] = 0.0
    pooled = pooled_baseline(q, baseline) if er.kind == "dynamic" else {}
    static_bounds = default_bounds(er, t) if er.kind != "dynamic" else None
    out: dict[SeriesKey, tuple[bool, bool]] = {}
    for key, x in values.items():
        labels = dict(key)
        group = series_key({g: labels[g] for g in common if g in labels})
        known, bad = out.get(group, (False, False))
        if not math.isfinite(x):
            out[group] = (known, bad)
            continue
        bounds = static_bounds
        if er.kind == "dynamic":
            times, vals = pooled.get(key, (np.empty(0), np.empty(0)))
            bounds = compute_bounds(er, np.array([t]), times, vals).at(0)
        assert bounds is not None
        flags = point_violations(er, x, bounds)
        out[group] = (True, bad or any(flags.values()))
    return out


def combine(logic: str, cells: Sequence[tuple[bool, bool]]) -> tuple[bool, bool]:
    """(value, decided) of one group from its operands' (known, violating): `all` is false when a
    known operand is false and true when every operand is known and true; `any` is true when one
    operand is true and false when every operand is known and false; otherwise undecided."""
    known = [k for k, _ in cells]
    truth = [k and b for k, b in cells]
    if logic == "all":
        value = not any(k and not b for k, b in zip(known, truth, strict=True))
        return value, not value or all(known)
    value = any(truth)
    return value, value or all(known)
