"""Differential harness: one batch of AlertRules and their series, run by every engine.

The compiled PrometheusRule runs in the real Prometheus rule engine (``promtool test rules``,
evaluations at 0, f, 2f, …); the evaluator runs cycle after cycle against a real Prometheus
holding the same samples (backfilled ``BASE`` seconds later); preview replays each rule from
that Prometheus and, for metric queries, from the samples as a data file. Per rule and
evaluation the firing series (Firing or Recovering, with their level) must be equal:
evaluator and previews are compared here, the compiled rule by promtool against the
evaluator's series (``alert_rule_test``: labels per alert, every evaluation).

Rules and series come from hypothesis strategies (``cases``); the series values are drawn
from a numpy generator seeded by hypothesis, so a batch of hundreds of rules stays within
hypothesis' example size and is reproduced exactly from its seed.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import strategies as st

from klaxon.api import AlertRuleSpec, parse_object
from klaxon.compile import compile_rule
from klaxon.compile.query import group_labels, outer, quantile
from klaxon.engine import grid_offset
from klaxon.engine.types import ALARM_STATES, SEVERITY
from klaxon.evaluator import Evaluator, RuleRef
from klaxon.preview.data import RawSeries
from klaxon.preview.prometheus import PrometheusFetch
from klaxon.preview.run import FileSource, LoadedRule, PreviewResult, member_key, run_preview
from klaxon.prom.client import PrometheusClient
from support.compile_harness import metric_string

F = 60  # evaluation interval (s)
STEP = 15  # sample spacing (s)
EVALS = 41  # evaluations at 0, F, …, 40·F
SAMPLES = (EVALS - 1) * F // STEP + 1
NS = "ns"
#: Three days ago on the hour: promtool backfills only the past; a multiple of F keeps the grids aligned.
BASE = float((int(time.time()) // 3600 - 72) * 3600)

AGGREGATIONS = ("avg", "min", "max", "sum", "count", "last", "p50", "p90", "p95", "p99")
OPERATORS = ("gt", "gte", "lt", "lte", "eq", "ne")
WINDOWS = {"1m": 60, "90s": 90, "2m": 120, "3m": 180, "5m": 300}
#: Label values with RE2 metacharacters, and for each a value only an unescaped pattern would match.
DEVS = {
    "a.b": "axb", "a|b": "a", "c(d)": "cd", "e*": "ee", "f+g": "ffg", "h?": "h", "[i]": "i",
    "j{2}": "jj", "^k$": "k", "l\\m": "lm", 'n"o': "no", "p q": "pq",
}
#: Raw expressions over the rule's metric ``{m}`` and the size of their values in samples
#: (0: a sum over the series).
EXPRS = (("{m}", 1), ("{m} * 2", 2), ("max_over_time({m}[2m])", 1), ("sum by (job) ({m})", 0),
         ("avg without (dev, env) ({m})", 1))
#: One-series expressions (composite operands are replayed as one instance each).
SCALAR_EXPRS = (("sum({m})", 0), ("max({m})", 1))
EXPR_SCALE = dict(EXPRS + SCALAR_EXPRS)


@dataclass
class Case:
    """One generated rule: its spec with ``{m}`` for its metric, and its series.

    The rule's name (and from it its metric names) is given per batch (``aligned_name``).
    """

    spec: dict[str, Any]
    #: per metric key (``m``, or an operand's name): [(labels without __name__, {sample index: value})]
    series: dict[str, list[tuple[dict[str, str], dict[int, float]]]]
    why: str = ""  # a human note for explicit examples

    def __repr__(self) -> str:  # hypothesis prints failing batches: the spec, not every sample
        counts = {k: [len(s) for _, s in v] for k, v in self.series.items()}
        return f"Case({self.spec}, samples per series {counts}{', ' + self.why if self.why else ''})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


def metric_name(rule: str, key: str) -> str:
    return f"{rule.replace('-', '_')}_{key}"


# --- strategies ---------------------------------------------------------------------------------

_STRIDES = (11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


class _Pick:
    """Choices for the i-th rule of a batch: hypothesis' draw shifted by i, with a different stride per
    choice, so that even hypothesis' simplest batch (every draw zero) sweeps every option of every
    choice instead of repeating one rule."""

    def __init__(self, draw: st.DrawFn, i: int) -> None:
        self.draw, self.i, self.n = draw, i, 0

    def _shift(self) -> int:
        self.n += 1
        return self.i * _STRIDES[self.n % len(_STRIDES)]

    def __call__(self, options: Sequence[Any]) -> Any:
        return options[(self.draw(st.integers(0, len(options) - 1)) + self._shift()) % len(options)]

    def fraction(self) -> float:
        return (self.draw(st.floats(0, 1)) + self._shift() * 0.6180339887) % 1.0

    def seed(self) -> int:
        return (self.draw(st.integers(0, 2**32 - 1)) + self._shift() * 7919) % 2**32


def _walk(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    """Integer values in [lo, hi]: a random walk with jumps, so windows both violate and recover."""
    x = np.empty(n)
    v = float(rng.integers(lo, hi + 1))
    for i in range(n):
        if rng.random() < 0.08:
            v = float(rng.integers(lo, hi + 1))
        else:
            v = float(np.clip(v + rng.integers(-2, 3), lo, hi))
        x[i] = v
    return x


def _continuous(rng: np.random.Generator, start: int, drop: float) -> dict[int, float]:
    """A series from sample ``start`` to the end with single samples dropped (never 3 in a row, so
    every window of 1m holds a sample: a series that vanishes is MissingSeries to the evaluator)."""
    values = _walk(rng, 0, 20, SAMPLES)
    out: dict[int, float] = {}
    run = 0
    for i in range(start, SAMPLES):
        if run < 2 and rng.random() < drop:
            run += 1
            continue
        run = 0
        out[i] = values[i]
    return out


def _gappy(rng: np.random.Generator, start: int) -> dict[int, float]:
    """A series with silent stretches of 1-12 minutes (for absence rules)."""
    values = _walk(rng, 0, 20, SAMPLES)
    out: dict[int, float] = {}
    i = start
    while i < SAMPLES:
        if rng.random() < 0.04:
            i += int(rng.integers(4, 48))
            continue
        out[i] = values[i]
        i += 1
    return out


def _data(
    pick: _Pick, labels: list[dict[str, str]], gappy: bool, late: bool = True
) -> list[tuple[dict[str, str], dict[int, float]]]:
    """Series for ``labels``; with ``late`` the last may start a few minutes in."""
    rng = np.random.default_rng(pick.seed())
    drop = pick((0.0, 0.2, 0.4))
    late = late and pick((False, True))
    out = []
    for i, lab in enumerate(labels):
        start = int(rng.integers(8, 80)) if late and i == len(labels) - 1 else 0
        out.append((lab, _gappy(rng, start) if gappy else _continuous(rng, start, drop)))
    return out


def _devs(pick: _Pick, n: int, exclude: Sequence[str] = ()) -> list[str]:
    pool = [d for d in sorted(DEVS) if d not in exclude]
    first = pick(range(len(pool)))
    return [pool[(first + k * 5) % len(pool)] for k in range(n)]


def _series_labels(pick: _Pick, scope: list[str] | None, selector: bool) -> list[dict[str, str]]:
    """Series of jobs j0/j1; with a scope, in-scope devs plus the decoys an unescaped regex would admit."""
    if scope:
        devs = [*scope, *(DEVS[d] for d in scope), *_devs(pick, 1, scope)]
    else:
        devs = _devs(pick, pick((1, 2, 3)))
    out = []
    for i, dev in enumerate(devs):
        out.append({"job": pick(("j0", "j1")) if i else "j0", "dev": dev, "env": "prod"})
    if selector:
        out.append({"job": "j0", "dev": devs[0], "env": "staging"})  # the selector must drop it
    return out


def _scale(q: dict[str, Any], per_group: int) -> float:
    """Rough size of the query's value relative to a sample (0..20): picks thresholds that both hold and not."""
    agg = q.get("aggregation", "avg")
    if "expr" in q:
        size = EXPR_SCALE[q["expr"]] or per_group
        return size * (per_group if q.get("splitBy") and outer(agg) == "sum" else 1)
    samples = WINDOWS[q.get("window", "5m")] / STEP
    if agg == "count":
        return samples * per_group / 20 * 1.6
    if agg == "sum":
        return samples * per_group
    return 1.0


def _exact(q: dict[str, Any]) -> bool:
    """Does the value come out exact on integer samples, so ties with an integer threshold are exact too?

    avg, last and pNN divide (a mean of several series, interpolation), and the float result of
    numpy (preview from files) and of Prometheus may differ in the last bit; their thresholds sit
    between the values instead.
    """
    agg = q.get("aggregation", "avg")
    return "expr" not in q and outer(agg) != "avg" and quantile(agg) is None


def _threshold(pick: _Pick, q: dict[str, Any], per_group: int) -> float:
    t = (0.15 + 0.7 * pick.fraction()) * 20 * _scale(q, per_group)
    return float(round(t)) if _exact(q) else round(t) + 0.37


def _query(pick: _Pick, scalar: bool = False) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(query with ``{m}`` for the metric, series labels)."""
    aggregation = pick(AGGREGATIONS)
    window = pick(sorted(WINDOWS))
    if pick(("metric", "metric", "expr")) == "expr":
        if scalar:
            template, _ = pick(SCALAR_EXPRS)
            split: list[str] = []
        else:
            template, _ = pick(EXPRS)
            split = pick(([], ["job"]))
        q = {"expr": template, "aggregation": aggregation, "window": window}
        if split:
            q["splitBy"] = split
        return q, _series_labels(pick, None, False)
    split = [] if scalar else pick(([], ["job"], ["job", "dev"]))
    scope = _devs(pick, pick((1, 2, 3))) if pick((False, True)) else None
    selector = pick((False, True))
    q = {"metric": "{m}", "aggregation": aggregation, "window": window}
    if split:
        q["splitBy"] = split
    if scope:
        q["scope"] = {"dev": scope}
    if selector:
        q["selector"] = {"env": "prod"}
    return q, _series_labels(pick, scope, selector)


def _per_group(q: dict[str, Any], labels: list[dict[str, str]]) -> int:
    kept = [lab for lab in labels if lab["env"] == "prod"]
    groups: dict[tuple[str, ...], int] = {}
    for lab in kept:
        key = tuple(lab[g] for g in q.get("splitBy", []))
        groups[key] = groups.get(key, 0) + 1
    return max(1, round(sum(groups.values()) / max(1, len(groups))))


DURATIONS = ("0s", "1m", "2m", "3m")
KINDS = ("threshold", "band", "levels", "absence", "threshold", "composite", "levels")


@st.composite
def cases(draw: st.DrawFn, i: int) -> Case:
    """The i-th rule of a batch: valid, compiles fully to PromQL, with series for its queries."""
    pick = _Pick(draw, i)
    kind = pick(KINDS)
    spec: dict[str, Any] = {"severity": pick(("info", "warning", "critical"))}
    series: dict[str, list[tuple[dict[str, str], dict[int, float]]]] = {}
    trigger: dict[str, Any] = {"for": pick(DURATIONS)}
    # Not for absence: a compiled count_over_time((absent…)[V:f]) also counts the evaluations before
    # the rule's first one, when nothing was there (absent), which an evaluator that starts then
    # never saw: a cold-start difference, not a difference of meaning.
    counted = pick((False, True)) and kind != "absence"
    if counted:
        trigger["violationWindow"] = pick(("2m", "3m", "5m"))
        trigger["requiredViolations"] = pick((1, 2, 3))
    levels_both = False

    if kind == "composite":
        conditions = []
        for name in ("first", "second"):
            q, labels = _query(pick, scalar=True)
            # Every operand has data from the start: the evaluator takes an operand without data as
            # unknown (SEMANTICS §1, a missing sample is neither violation nor normal), PromQL's
            # `and`/`or` as false; the two differ by design there.
            series[name] = _data(pick, labels, gappy=False, late=False)
            conditions.append({"name": name, "query": q, "operator": pick(OPERATORS),
                               "threshold": _threshold(pick, q, _per_group(q, labels))})
        spec["condition"] = {"type": "composite", "logic": pick(("all", "any")), "conditions": conditions}
    else:
        q, labels = _query(pick)
        series["m"] = _data(pick, labels, gappy=kind == "absence")
        spec["query"] = q
        n = _per_group(q, labels)
        a, b = sorted((_threshold(pick, q, n), _threshold(pick, q, n)))
        b = b if b > a else a + 1.0
        if kind == "absence":
            spec["condition"] = {"type": "absence"}
        elif kind == "threshold":
            spec["condition"] = {"operator": pick(OPERATORS), "threshold": a}
        elif kind == "band":
            side = pick(("both", "upper", "lower"))
            spec["condition"] = {"type": "threshold", **({"lower": a} if side != "upper" else {}),
                                 **({"upper": b} if side != "lower" else {})}
        else:
            op = pick(("gt", "gte", "lt", "lte"))
            warn, crit = (a, b) if op in ("gt", "gte") else (b, a)
            which = pick(("both", "warning", "both", "critical"))
            fw = pick(DURATIONS)
            fc = pick(DURATIONS[DURATIONS.index(fw):])  # critical.for >= warning.for
            mw = pick((1, 2, 3))
            levels: dict[str, Any] = {}
            if which in ("both", "warning"):  # an unset level `for` is 0s (it does not inherit trigger.for)
                levels["warning"] = {"threshold": warn, "operator": op, **({"for": fw} if fw != "0s" else {}),
                                     **({"violations": mw} if counted else {})}
            if which in ("both", "critical"):
                levels["critical"] = {"threshold": crit, "operator": op, **({"for": fc} if fc != "0s" else {}),
                                      **({"violations": pick(range(mw, 4))} if counted else {})}
            spec["levels"] = levels
            spec["condition"] = {"type": "threshold", "operator": op}
            if pick((False, True)):  # a band on the condition violates at every level
                spec["condition"]["lower" if op in ("gt", "gte") else "upper"] = a - 3 if op in ("gt", "gte") else b + 3
            levels_both = which == "both"
    spec["trigger"] = trigger
    recovery = pick(("none", "count", "window"))
    if not levels_both and recovery == "count":
        spec["recovery"] = {"normalCount": pick((2, 3))}
    elif not levels_both and recovery == "window" and trigger.get("requiredViolations", 1) == 1:
        spec["recovery"] = {"window": pick(("2m", "3m", "5m"))}
    return Case(spec, series)


def batches(size: int) -> st.SearchStrategy[list[Case]]:
    return st.tuples(*(cases(i).filter(compiles_fully) for i in range(size))).map(list)


# --- names, specs -------------------------------------------------------------------------------


def materialise(case: Case, name: str) -> dict[str, Any]:
    """The spec of rule ``name``: its metric names filled in."""

    def fill(q: dict[str, Any], key: str) -> dict[str, Any]:
        q = dict(q)
        if "expr" in q:
            q["expr"] = q["expr"].replace("{m}", metric_name(name, key))
        else:
            q["metric"] = metric_name(name, key)
        return q

    spec = dict(case.spec)
    if "query" in spec:
        spec["query"] = fill(spec["query"], "m")
    if spec["condition"].get("type") == "composite":
        spec["condition"] = {**spec["condition"], "conditions": [
            {**c, "query": fill(c["query"], c["name"])} for c in spec["condition"]["conditions"]
        ]}
    return spec


def parse_spec(body: dict[str, Any]) -> AlertRuleSpec:
    parsed = parse_object({"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertRule",
                           "metadata": {"name": "r", "namespace": NS}, "spec": body})
    assert parsed.ok, parsed.problems
    assert isinstance(parsed.spec, AlertRuleSpec)
    return parsed.spec


def compiles_fully(case: Case) -> bool:
    parsed = parse_object({"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertRule",
                           "metadata": {"name": "r", "namespace": NS}, "spec": materialise(case, "r")})
    if not parsed.ok or not isinstance(parsed.spec, AlertRuleSpec):
        return False
    res = compile_rule("r", NS, parsed.spec)
    return not res.problems and res.engine == "prometheus"


def aligned_name(i: int) -> str:
    """``r<i>-<n>`` whose evaluation grid (``hash mod f``) has offset 0, as promtool evaluates at 0, f, 2f, …"""
    n = 0
    while grid_offset(f"{NS}/r{i}-{n}", F) != 0:
        n += 1
    return f"r{i}-{n}"


# --- running a batch ----------------------------------------------------------------------------

Firing = frozenset[tuple[str, str]]  # (member key, level)


@dataclass
class Outcome:
    rules: int = 0
    compared_points: int = 0
    firing_points: int = 0
    rules_firing: int = 0  # rules firing at some evaluation
    rules_quiet: int = 0  # rules not firing at some evaluation
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Rule:
    name: str
    case: Case
    spec: AlertRuleSpec
    groups: list[dict[str, Any]]
    evaluator: list[Firing] = field(default_factory=list)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # member key -> labels (evaluator's)

    @property
    def alertname(self) -> str:
        return str(next(x["alert"] for x in self.groups[0]["rules"] if "alert" in x))

    def metric(self, key: str) -> str:
        return metric_name(self.name, key)

    def key(self, labels: dict[str, str]) -> str:
        """The member key preview gives the series with these labels."""
        q = self.spec.query
        if q is None:
            return ""
        absence = self.spec.condition is not None and self.spec.condition.type == "absence"
        return member_key(list(q.split_by) if absence else group_labels(q), labels)

    def describe(self) -> str:
        alert = [x["expr"] for x in self.groups[0]["rules"] if "alert" in x]
        return (f"rule {self.name}{' (' + self.case.why + ')' if self.case.why else ''}:\n"
                + yaml.safe_dump(materialise(self.case, self.name), sort_keys=False, width=200)
                + "compiled: " + "\n          ".join(alert))

    def samples(self) -> list[tuple[str, dict[str, str], np.ndarray, np.ndarray]]:
        """(metric, labels, times, values) of every series, on the server's clock."""
        out = []
        for key, items in self.case.series.items():
            for labels, got in items:
                idx = sorted(got)
                out.append((self.metric(key), labels, BASE + STEP * np.array(idx, dtype=np.float64),
                            np.array([got[i] for i in idx], dtype=np.float64)))
        return out


def _preview_firing(res: PreviewResult) -> list[Firing]:
    out: list[set[tuple[str, str]]] = [set() for _ in range(EVALS)]
    blocks = [("", res.rule_series)] if res.rule_series is not None else [(s.member, s.result) for s in res.series]
    for key, rr in blocks:
        assert rr is not None
        pts = rr.points
        assert len(pts) == EVALS, (len(pts), EVALS)
        for k in range(EVALS):
            if pts.state[k] in ALARM_STATES:
                out[k].add((key, str(pts.level[k])))
    return [frozenset(s) for s in out]


def _expected_alerts(r: _Rule, firing: Firing) -> list[dict[str, Any]]:
    """The alerts of the compiled rule while the evaluator reports ``firing``.

    One alerting rule per level: a series firing at critical fires the warning rule too
    (critical is stricter, SEMANTICS §4); a rule without levels has one alert at its severity.
    """
    spec = r.spec
    defined = [lv for lv in ("warning", "critical")
               if spec.levels is not None and getattr(spec.levels, lv) is not None]
    alerts = []
    for key, level in sorted(firing):
        severities = [lv for lv in defined if SEVERITY[lv] <= SEVERITY[level]] if defined else [spec.severity]
        for sev in severities:
            labels = {**r.labels[key], "severity": sev, "klaxon_rule": r.name, "klaxon_namespace": NS}
            alerts.append({"exp_labels": labels})
    return alerts


def _promtool(rules: Sequence[_Rule], workdir: Path, promtool: str) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: the compiled rules over the same samples (from time 0), alerting exactly
    as the evaluator fired at every evaluation."""
    groups = []
    for r in rules:
        for g in r.groups:
            g = {**g, "rules": [{k: v for k, v in x.items() if k != "annotations"} for x in g["rules"]]}
            groups.append(g)  # (annotations are templates of the value: not what is compared)
    inputs = []
    for r in rules:
        for key, items in r.case.series.items():
            for labels, got in items:
                values = " ".join(str(int(got[i])) if i in got else "_" for i in range(SAMPLES))
                inputs.append({"series": metric_string(r.metric(key), labels), "values": values})
    tests = [{"eval_time": f"{k * F}s", "alertname": r.alertname, "exp_alerts": _expected_alerts(r, r.evaluator[k])}
             for k in range(EVALS) for r in rules]
    (workdir / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=10**6))
    (workdir / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": f"{F}s",
        "tests": [{"interval": f"{STEP}s", "input_series": inputs, "alert_rule_test": tests}],
    }, sort_keys=False, width=10**6))
    return subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=workdir, capture_output=True, text=True,
                          timeout=300)


def _diff(what: str, r: _Rule, ours: Sequence[Firing], theirs: Sequence[Firing]) -> str | None:
    for k in range(EVALS):
        if ours[k] != theirs[k]:
            return (f"evaluator vs {what} differ at t={k * F}s (evaluation {k}):\n"
                    f"  evaluator: {sorted(ours[k])}\n  {what}: {sorted(theirs[k])}\n{r.describe()}")
    return None


async def _evaluator(rules: Sequence[_Rule], url: str) -> None:
    """Evaluator cycles at every evaluation time; each rule's firing series per evaluation."""
    refs = []
    for r in rules:  # the evaluator's own engine (auto would leave these rules to Prometheus)
        evaluation = r.spec.evaluation.model_copy(update={"engine": "evaluator"})
        refs.append(RuleRef(NS, r.name, f"uid-{r.name}", r.spec.model_copy(update={"evaluation": evaluation})))
    async with PrometheusClient(url) as client:
        ev = Evaluator(client, concurrency=32)
        ev.set_rules(refs)
        for k in range(EVALS):
            res = await ev.cycle(BASE + k * F)
            for r, ref in zip(rules, refs, strict=True):
                error = res.rules[ref.key].error
                assert error is None, f"evaluator error {error}\n{r.describe()}"
                firing = set()
                for skey, state in ev.states(ref.uid).items():
                    if state.state in ALARM_STATES:
                        labels = dict(skey)
                        r.labels[r.key(labels)] = labels
                        firing.add((r.key(labels), str(state.level)))
                r.evaluator.append(frozenset(firing))


def _previews(r: _Rule, fetch: PrometheusFetch) -> None:
    """Preview from Prometheus, and from the samples as a data file when every query is a metric's."""
    ref = LoadedRule(r.name, NS, r.spec, "generated")
    end = BASE + (EVALS - 1) * F
    res = run_preview(ref, fetch, BASE, end, evaluate=fetch.evaluate, warmup=0.0, series_limit=50)
    problem = _diff("preview (Prometheus)", r, r.evaluator, _preview_firing(res))
    assert problem is None, problem
    cond = r.spec.condition
    assert cond is not None
    queries = [r.spec.query] if r.spec.query is not None else [c.query for c in cond.conditions or []]
    if any(q.metric is None for q in queries):
        return  # a data file of a raw expr holds the expr's values: nothing to compute them from
    series = [RawSeries({"__name__": m, **labels}, t, v, "generated") for m, labels, t, v in r.samples()]
    if r.spec.query is not None:
        src = FileSource(series)
    else:
        src = FileSource(per_operand={c.name: [s for s in series if s.labels["__name__"] == r.metric(c.name)]
                                      for c in cond.conditions or []})
    res = run_preview(ref, src.fetch, BASE, end, warmup=0.0, series_limit=50)
    problem = _diff("preview (data file)", r, r.evaluator, _preview_firing(res))
    assert problem is None, problem


def run_batch(
    batch: Sequence[Case], prometheus_server: Callable[..., Any], workdir: Path, promtool: str
) -> Outcome:
    """Run every engine over the batch; raise AssertionError naming the first rule that differs."""
    clock = time.monotonic()
    out = Outcome()
    rules: list[_Rule] = []
    for i, case in enumerate(batch):
        name = aligned_name(i)
        body = materialise(case, name)
        spec = parse_spec(body)
        res = compile_rule(name, NS, spec)
        assert not res.problems and res.engine == "prometheus", (res.problems, res.evaluator_reasons, body)
        rules.append(_Rule(name, case, spec, res.groups))
    series = [({"__name__": m, **labels}, list(zip(t.tolist(), v.tolist(), strict=True)))
              for r in rules for m, labels, t, v in r.samples() if t.size]
    prom = prometheus_server(series=series)
    out.timings["backfill+start"] = time.monotonic() - clock

    clock = time.monotonic()
    asyncio.run(_evaluator(rules, prom.url))
    out.timings["evaluator"] = time.monotonic() - clock

    clock = time.monotonic()
    fetch = PrometheusFetch(prom.url, float(F))
    for r in rules:
        _previews(r, fetch)
        n = sum(1 for f in r.evaluator if f)
        out.rules += 1
        out.compared_points += EVALS
        out.firing_points += n
        out.rules_firing += n > 0
        out.rules_quiet += n < EVALS
    out.timings["preview"] = time.monotonic() - clock

    clock = time.monotonic()
    result = _promtool(rules, workdir, promtool)
    out.timings["promtool"] = time.monotonic() - clock
    if result.returncode != 0:
        text = result.stdout + result.stderr
        named = [r for r in rules if f"alertname: {r.alertname}," in text]
        lines = [ln for ln in text.splitlines() if ln.strip()]
        raise AssertionError(
            "the compiled PrometheusRule (promtool test rules) differs from the evaluator:\n"
            + "\n".join(lines[:60]) + "".join(f"\n{r.describe()}" for r in named[:3])
        )
    return out
