"""The Prometheus queries of one cycle: which each rule needs (its value or count query, per
operand, and a dynamic rule's baseline weeks), sending each distinct one once, and pooling
a dynamic rule's baseline samples per splitBy group."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from klaxon.api.alertrule import AlertRuleSpec, Query
from klaxon.compile.query import count_query, raw_range, value_query
from klaxon.engine._tz import shift_local_weeks
from klaxon.engine.types import EngineRule
from klaxon.evaluator.results import SeriesKey, series_key
from klaxon.prom.client import PrometheusClient, PrometheusError, RangeSeries, Sample

QueryKey = tuple[str, str, float]  # (kind "vector"/"matrix", expr, time)
QueryResult = list[Sample] | list[RangeSeries] | PrometheusError


def operands(er: EngineRule, spec: AlertRuleSpec) -> list[tuple[EngineRule, Query]]:
    """(engine rule, query) of every operand: the rule itself, or each composite condition."""
    if er.kind == "composite":
        cond = spec.condition
        assert cond is not None
        return [(child, sub.query) for child, sub in zip(er.children, cond.conditions or [], strict=True)]
    assert spec.query is not None
    return [(er, spec.query)]


def operand_queries(er: EngineRule, q: Query, t: float) -> tuple[QueryKey, list[QueryKey]]:
    main_expr = count_query(q, er.interval_s) if er.kind == "absence" else value_query(q, er.interval_s)
    main: QueryKey = ("vector", main_expr, t)
    baseline: list[QueryKey] = []
    if er.kind == "dynamic" and er.dynamic is not None:
        w = er.dynamic.window_s if er.dynamic.window_s is not None else er.window_s
        expr = raw_range(q, w, er.interval_s)
        tz = er.baseline_timezone
        for k in range(1, er.dynamic.lookback_weeks + 1):
            te = float(shift_local_weeks(tz, np.array([t]), k)[0])
            baseline.append(("matrix", expr, te))
    return main, baseline


def rule_queries(er: EngineRule, spec: AlertRuleSpec, t: float) -> list[tuple[QueryKey, list[QueryKey]]]:
    """(main query, baseline queries) of each operand of a rule the evaluator runs."""
    return [operand_queries(op, q, t) for op, q in operands(er, spec)]


async def run_queries(
    client: PrometheusClient, keys: Iterable[QueryKey], concurrency: int
) -> dict[QueryKey, QueryResult]:
    """Each distinct query once, at most `concurrency` at a time; a failure is its answer."""
    sem = asyncio.Semaphore(concurrency)

    async def one(key: QueryKey) -> tuple[QueryKey, QueryResult]:
        kind, expr, t = key
        async with sem:
            try:
                if kind == "matrix":
                    return key, await client.query_matrix(expr, t)
                return key, await client.query(expr, t)
            except PrometheusError as e:
                return key, e

    pairs = await asyncio.gather(*(one(k) for k in keys))
    return dict(pairs)


def pooled_baseline(
    q: Query, answers: Sequence[QueryResult]
) -> dict[SeriesKey, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """Raw baseline samples pooled per splitBy group."""
    group = list(q.split_by)
    parts: dict[SeriesKey, tuple[list[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]]] = {}
    for ans in answers:
        assert not isinstance(ans, PrometheusError)
        for rs in ans:
            if not isinstance(rs, RangeSeries):
                continue
            if group:
                key = series_key({g: rs.labels[g] for g in group if g in rs.labels})
            elif q.metric is None:
                key = series_key(rs.labels)
            else:
                key = ()
            ts, vs = parts.setdefault(key, ([], []))
            ts.append(rs.times)
            vs.append(rs.values)
    out = {}
    for key, (ts, vs) in parts.items():
        times, vals = np.concatenate(ts), np.concatenate(vs)
        order = np.argsort(times, kind="stable")
        out[key] = (times[order], vals[order])
    return out
