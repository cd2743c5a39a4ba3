"""Preview orchestration: pick the rule, select and group its series, replay, shape the result.

The same code serves `--data` files and `--prometheus`: both hand over `RawSeries` per query
(the rule's query, or each composite operand's), so a file and a Prometheus holding the same
samples give the same transitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from klaxon.api.alertrule import AlertRuleSpec, Query
from klaxon.api.manifests import load_paths
from klaxon.api.validation import parse_object
from klaxon.compile.engine_rule import NotEvaluable, engine_rule
from klaxon.compile.query import absence_labels, count_query, group_labels, outer, series_selector, value_query
from klaxon.engine import (
    EngineRule,
    ReplayResult,
    aggregate_windows,
    default_warmup,
    replay,
    replay_composite,
    replay_grid,
    replay_many,
)
from klaxon.engine.thresholds import window_counts
from klaxon.engine.types import iso
from klaxon.preview import SERIES_LIMIT_DEFAULT, SERIES_LIMIT_MAX
from klaxon.preview.data import DataError, RawSeries
from klaxon.preview.units import value_label

#: Labels that identify where a sample came from, not what it measures.
META_LABELS = frozenset({"__name__", "operand"})


class PreviewError(ValueError):
    """A rule or data problem the user must fix; the message says which and how."""


@dataclass(frozen=True)
class LoadedRule:
    name: str
    namespace: str
    spec: AlertRuleSpec
    source: str


def load_rule(path: str | Path, name: str | None = None) -> LoadedRule:
    """The AlertRule in `path` (the one called `name` when the file holds several)."""
    docs = load_paths([path])
    rules: list[LoadedRule] = []
    for doc in docs:
        if doc.error:
            raise PreviewError(f"{doc.where}: {doc.error}")
        if not isinstance(doc.body, dict) or doc.body.get("kind") != "AlertRule":
            continue
        parsed = parse_object(doc.body)
        if not parsed.ok or not isinstance(parsed.spec, AlertRuleSpec):
            problems = "; ".join(str(p) for p in parsed.problems)
            raise PreviewError(f"{doc.where}: AlertRule {parsed.name!r} is invalid: {problems}")
        rules.append(LoadedRule(parsed.name, parsed.namespace or "default", parsed.spec, doc.where))
    if not rules:
        raise PreviewError(f"{path}: no AlertRule found")
    if name is not None:
        match = [r for r in rules if r.name == name]
        if not match:
            raise PreviewError(f"{path}: no AlertRule named {name!r} (allowed: {', '.join(r.name for r in rules)})")
        return match[0]
    if len(rules) > 1:
        raise PreviewError(
            f"{path}: holds {len(rules)} AlertRules; pick one with --rule NAME "
            f"(allowed: {', '.join(r.name for r in rules)})"
        )
    return rules[0]


def build_engine_rule(ref: LoadedRule) -> EngineRule:
    if ref.spec.events is not None or ref.spec.condition is None:
        raise PreviewError(
            f"{ref.source}: AlertRule {ref.name!r} is an event rule; preview replays metric rules only "
            "(event rules are matched event by event — use the event test endpoint instead)"
        )
    try:
        return engine_rule(ref.spec, key=f"{ref.namespace}/{ref.name}")
    except NotEvaluable as e:
        raise PreviewError(f"{ref.source}: AlertRule {ref.name!r}: {e}") from None


# --- selecting and grouping ----------------------------------------------------------------


def matches(q: Query, labels: Mapping[str, str]) -> bool:
    """Does a raw series belong to the query?

    A label the data does not carry at all (e.g. a per-operand file with just timestamp,value,
    or data without `__name__`) is taken as already selected; a label it carries must match.
    """
    if q.metric is not None and labels.get("__name__", q.metric) != q.metric:
        return False
    for k, v in (q.selector or {}).items():
        if labels.get(k, v) != v:
            return False
    return all(k not in labels or labels[k] in vs for k, vs in (q.scope or {}).items())


@dataclass(frozen=True, eq=False)
class Member:
    """One instance of a rule: its samples (all series merged by time) and each series' own."""

    key: str
    labels: dict[str, str]
    times: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    parts: tuple[tuple[np.ndarray, np.ndarray], ...] = field(default=(), repr=False)


def member_key(split_by: Sequence[str] | None, labels: Mapping[str, str]) -> str:
    """``k=v,...`` of the splitBy labels; of every label but ``META_LABELS`` when ``split_by`` is None."""
    if split_by is None:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in META_LABELS)
    return ",".join(f"{k}={labels.get(k, '')}" for k in split_by)


def group(series: Sequence[RawSeries], split_by: Sequence[str] | None) -> list[Member]:
    """One member per splitBy value combination (all series in one when splitBy is empty; one per
    series when ``split_by`` is None, as a raw expr without splitBy), sorted by key.

    The member keeps each series' samples (``parts``) and all of them merged by time; its labels
    are those of the series with the latest sample (seed 002: latest representative labels).
    """
    buckets: dict[str, list[RawSeries]] = {}
    for s in series:
        buckets.setdefault(member_key(split_by, s.labels), []).append(s)
    out: list[Member] = []
    for key in sorted(buckets):
        group_ = buckets[key]
        latest = max(group_, key=lambda s: s.times[-1] if s.times.size else -math.inf)
        t = np.concatenate([s.times for s in group_])
        v = np.concatenate([s.values for s in group_])
        order = np.argsort(t, kind="stable")
        labels = {k: val for k, val in sorted(latest.labels.items()) if k not in META_LABELS}
        parts = tuple((s.times, s.values) for s in group_)
        out.append(Member(key, labels, t[order], v[order], parts))
    return out


# --- the value X of a query on the grid ----------------------------------------------------

#: Prometheus' default lookback: an instant selector at t sees a series' latest sample in (t-5m, t].
LOOKBACK_S = 300.0


def _combine(op: str, per_series: Sequence[np.ndarray]) -> np.ndarray:
    """``op by (G)`` across the series of one group, per evaluation (NaN where none has a value)."""
    stack = np.vstack(per_series)
    ok = np.isfinite(stack)
    n = ok.sum(axis=0)
    if op == "min":
        out = np.where(ok, stack, np.inf).min(axis=0)
    elif op == "max":
        out = np.where(ok, stack, -np.inf).max(axis=0)
    else:
        out = np.where(ok, stack, 0.0).sum(axis=0)
        if op == "avg":
            out = out / np.maximum(n, 1)
    return np.where(n > 0, out, np.nan)


def sample_values(q: Query, rule: EngineRule, grid: np.ndarray, member: Member) -> np.ndarray:
    """X of one member at every evaluation, from samples, as ``value_query`` defines it in PromQL.

    Metric: each series' AGG over (t-W, t], then OUTER across the member's series (absence: the
    member's sample count). Raw expr: the data are the expr's values, each series' latest within
    the lookback, combined by OUTER when splitBy groups several.
    """
    parts = member.parts or ((member.times, member.values),)
    if rule.kind == "absence":
        return np.asarray(sum(window_counts(grid, t, rule.window_s) for t, _ in parts), dtype=np.float64)
    if q.metric is None:
        per = [aggregate_windows(grid, t, v, LOOKBACK_S, "last") for t, v in parts]
    else:
        per = [aggregate_windows(grid, t, v, rule.window_s, rule.aggregation) for t, v in parts]
    return _combine(outer(q.aggregation), per)


# --- sources -------------------------------------------------------------------------------

#: (query, operand name or None for the rule's own query, [from - warmup, to]) -> raw series
Fetch = Callable[[Query, str | None, float, float], list[RawSeries]]
#: (PromQL, evaluation times) -> per result series: its labels and its value at each time (NaN: none)
Evaluate = Callable[[str, np.ndarray], list[tuple[dict[str, str], np.ndarray]]]


@dataclass
class FileSource:
    """Series from `--data` files: one default file and/or per-operand files (`--data NAME=FILE`)."""

    default: list[RawSeries] = field(default_factory=list)
    per_operand: dict[str, list[RawSeries]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    def fetch(self, q: Query, operand: str | None, start: float, end: float) -> list[RawSeries]:
        if operand is not None and operand in self.per_operand:
            pool = self.per_operand[operand]
        elif operand is not None:
            tagged = [s for s in self.default if s.labels.get("operand") == operand]
            pool = tagged or [s for s in self.default if q.metric is not None and s.labels.get("__name__") == q.metric]
            if not pool:
                raise PreviewError(
                    f"{', '.join(self.names) or '--data'}: no series for operand {operand!r} "
                    f'(allowed: --data {operand}=FILE, or series labelled operand="{operand}"'
                    + (f" or __name__={q.metric!r}" if q.metric else "")
                    + ")"
                )
        else:
            pool = self.default
        return [s for s in pool if matches(q, s.labels)]


# --- replay --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SeriesResult:
    member: str
    labels: dict[str, str]
    result: ReplayResult
    raw_times: np.ndarray = field(repr=False)
    raw_values: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, "labels": self.labels, **self.result.to_dict()}


@dataclass(frozen=True, eq=False)
class PreviewResult:
    name: str
    namespace: str
    kind: str
    start: float
    end: float
    warmup_s: float
    series: list[SeriesResult]
    rule_series: ReplayResult | None
    total_members: int
    #: What the value is, with its unit when the metric's name tells it (the plot's y-axis).
    value_label: str = "value"

    def summary(self) -> dict[str, Any]:
        if self.rule_series is not None:
            return self.rule_series.summary.to_dict()
        keys = ("points", "violations", "alarms", "timeInAlarmSeconds", "lowConfidencePoints")
        total: dict[str, Any] = dict.fromkeys(keys, 0)
        for s in self.series:
            for k, v in s.result.summary.to_dict().items():
                total[k] += v
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": {"name": self.name, "namespace": self.namespace, "kind": self.kind},
            "from": iso(self.start),
            "to": iso(self.end),
            "warmupSeconds": self.warmup_s,
            "series": [s.to_dict() for s in self.series],
            "ruleSeries": self.rule_series.to_dict() if self.rule_series is not None else None,
            "totalMemberCount": self.total_members,
            "shownMemberCount": len(self.series),
            "summary": self.summary(),
        }


Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, what: str) -> None:
    return None


def default_range(members: Sequence[Member], warmup: float) -> tuple[float, float]:
    """`to` = the last sample; `from` = the first sample + warmup (or the first sample if that is past `to`)."""
    firsts = [float(m.times[0]) for m in members if m.times.size]
    lasts = [float(m.times[-1]) for m in members if m.times.size]
    if not firsts:
        raise PreviewError("no samples to preview")
    first, last = min(firsts), max(lasts)
    start = first + warmup
    return (start if start < last else first), last


def instance_labels(q: Query, rule: EngineRule) -> list[str] | None:
    """The labels that tell a rule's instances apart: splitBy; an absence counts per splitBy group
    (``count_query``), a raw expr without splitBy keeps its own labels (None)."""
    return list(q.split_by) if rule.kind == "absence" else group_labels(q)


def _from_data(
    q: Query, operand: str | None, rule: EngineRule, fetch: Fetch, lo: float, hi: float
) -> list[Member]:
    members = group(fetch(q, operand, lo, hi), instance_labels(q, rule))
    if not members:
        what = f"operand {operand!r}" if operand is not None else "the rule's query"
        raise PreviewError(f"no series for {what} ({series_selector(q)}) in the data")
    return members


def _from_prometheus(
    q: Query, operand: str | None, rule: EngineRule, fetch: Fetch, evaluate: Evaluate, grid: np.ndarray, lo: float
) -> tuple[list[Member], dict[str, np.ndarray]]:
    """Members and X from Prometheus: ``value_query`` (``count_query`` for absence) evaluated at
    every grid time; samples are read only for a dynamic rule's baseline."""
    labels_of = instance_labels(q, rule)
    expr = count_query(q, rule.interval_s) if rule.kind == "absence" else value_query(q, rule.interval_s)
    hi = float(grid[-1]) if grid.size else lo
    raw = {m.key: m for m in group(fetch(q, operand, lo, hi), labels_of)} if rule.kind == "dynamic" else {}
    empty = np.empty(0)
    members: list[Member] = []
    values: dict[str, np.ndarray] = {}
    for labels, x in evaluate(expr, grid):
        key = member_key(labels_of, labels)
        got = raw.get(key)
        shown = {k: v for k, v in sorted(labels.items()) if k not in META_LABELS}
        members.append(Member(key, shown, *((got.times, got.values) if got else (empty, empty))))
        values[key] = x
    if not members and rule.kind == "absence" and not q.split_by:  # never seen: absent all along
        members, values = [Member("", absence_labels(q), empty, empty)], {"": np.full(grid.shape, np.nan)}
    if not members:
        raise PreviewError(f"no series: {expr} returned nothing from {iso(grid[0])} to {iso(grid[-1])}")
    members.sort(key=lambda m: m.key)
    return members, values


def _range(members: Sequence[Member], start: float | None, end: float | None, w: float) -> tuple[float, float]:
    s0, e0 = default_range(members, w) if start is None or end is None else (start, end)
    s, e = (start if start is not None else s0), (end if end is not None else e0)
    if e < s:
        raise PreviewError(f"--to {iso(e)} is before --from {iso(s)}")
    return s, e


def run_preview(
    ref: LoadedRule,
    fetch: Fetch,
    start: float | None = None,
    end: float | None = None,
    *,
    evaluate: Evaluate | None = None,
    series_limit: int = SERIES_LIMIT_DEFAULT,
    warmup: float | None = None,
    progress: Progress = _no_progress,
) -> PreviewResult:
    """Replay the rule over `[start, end]` (defaults from the data) on what `fetch` / `evaluate` return.

    With ``evaluate`` (a Prometheus; `start` and `end` required) the value of each query is its
    PromQL (`klaxon.compile.query`) evaluated at every evaluation time: exactly what the
    evaluator and the compiled PrometheusRule compare. From data files the value is computed
    from the samples as that PromQL defines it (`sample_values`).
    """
    if not 1 <= series_limit <= SERIES_LIMIT_MAX:
        raise PreviewError(f"--series-limit {series_limit} is out of range (allowed: 1..{SERIES_LIMIT_MAX})")
    if evaluate is not None and (start is None or end is None):
        raise PreviewError("a preview from Prometheus needs --from and --to")
    rule = build_engine_rule(ref)
    w = default_warmup(rule) if warmup is None else warmup
    spec = ref.spec
    queries = _operands(ref, rule)
    s, e, loaded = _load(rule, queries, fetch, evaluate, (start, end, w), progress)
    progress(len(queries), len(queries) + 1, "replaying")
    if rule.kind == "composite":
        res = _composite(ref, rule, queries, loaded, (s, e, w))
        progress(len(queries) + 1, len(queries) + 1, "done")
        return res

    assert spec.query is not None
    members, values = loaded[0]
    shown = members[:series_limit]
    if instance_labels(spec.query, rule) == []:  # the rule's only series: an empty window is "no series at all"
        m = shown[0]
        one = replay(rule, m.times, m.values, s, e, w, x=values[m.key])
        results = [SeriesResult(m.key, m.labels, one, m.times, m.values)]
    else:
        # All members in one replay: a member missing while others report counts as missing (§7).
        many = replay_many(
            rule, {m.key: (m.times, m.values) for m in shown}, s, e, w, values={m.key: values[m.key] for m in shown}
        )
        results = [SeriesResult(m.key, m.labels, many[m.key], m.times, m.values) for m in shown]
    progress(len(queries) + 1, len(queries) + 1, "done")
    label = value_label(spec.query, rule.kind)
    return PreviewResult(ref.name, ref.namespace, rule.kind, s, e, w, results, None, len(members), label)


Operand = tuple[Query, str | None, EngineRule]
Loaded = tuple[list[Member], dict[str, np.ndarray]]


def _operands(ref: LoadedRule, rule: EngineRule) -> list[Operand]:
    """(query, operand name, engine rule) of the rule itself or of each composite operand."""
    cond = ref.spec.condition
    assert cond is not None
    if rule.kind == "composite":
        subs = cond.conditions or ()
        return [(sub.query, sub.name, child) for sub, child in zip(subs, rule.children, strict=True)]
    assert ref.spec.query is not None
    return [(ref.spec.query, None, rule)]


def _load(
    rule: EngineRule,
    queries: list[Operand],
    fetch: Fetch,
    evaluate: Evaluate | None,
    when: tuple[float | None, float | None, float],
    progress: Progress,
) -> tuple[float, float, list[Loaded]]:
    """Each operand's series and its value at every evaluation time, from data files or Prometheus;
    with the replayed range (start, end)."""
    start, end, w = when
    lo = (start - w) if start is not None else -math.inf
    hi = end if end is not None else math.inf
    if evaluate is not None:
        s, e = _range([], start, end, w)
        grid = replay_grid(rule, s, e, w)
        loaded = []
        for i, (q, operand, child) in enumerate(queries):
            progress(i, len(queries) + 1, f"querying {operand or ''}".strip())
            loaded.append(_from_prometheus(q, operand, child, fetch, evaluate, grid, lo))
        return s, e, loaded
    per_query = []
    for i, (q, operand, child) in enumerate(queries):
        progress(i, len(queries) + 1, f"loading {operand or ''}".strip())
        per_query.append(_from_data(q, operand, child, fetch, lo, hi))
    s, e = _range([m for ms in per_query for m in ms], start, end, w)
    grid = replay_grid(rule, s, e, w)
    values = [
        (ms, {m.key: sample_values(q, child, grid, m) for m in ms})
        for ms, (q, _, child) in zip(per_query, queries, strict=True)
    ]
    return s, e, values


def _composite(
    ref: LoadedRule, rule: EngineRule, queries: list[Operand], loaded: list[Loaded], span: tuple[float, float, float]
) -> PreviewResult:
    """A composite rule replayed as one instance from its operands' single series."""
    s, e, w = span
    inputs: list[Member] = []
    xs: list[np.ndarray] = []
    for (_, operand, _), (members, values) in zip(queries, loaded, strict=True):
        if len(members) > 1:
            raise PreviewError(
                f"operand {operand!r} has {len(members)} series ({', '.join(m.key for m in members[:3])}, ...); "
                "preview replays a composite rule as one instance (allowed: operands with one series each)"
            )
        m = members[0]
        inputs.append(Member(operand or "", m.labels, m.times, m.values))
        xs.append(values[m.key])
    res = replay_composite(rule, [(m.times, m.values) for m in inputs], s, e, w, values=xs)
    series = [SeriesResult(m.key, m.labels, r, m.times, m.values) for m, r in zip(inputs, res.children, strict=True)]
    return PreviewResult(ref.name, ref.namespace, rule.kind, s, e, w, series, res.rule, len(inputs))

__all__ = [
    "DataError",
    "FileSource",
    "LoadedRule",
    "Member",
    "PreviewError",
    "PreviewResult",
    "SeriesResult",
    "group",
    "load_rule",
    "matches",
    "run_preview",
    "sample_values",
]
