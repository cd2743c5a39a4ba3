"""The evaluator core: one cycle = query Prometheus for every due rule, step every series.

Rules that share a query expression (same metric, matchers, window, aggregation, splitBy)
share one HTTP query; dynamic rules also read their raw baseline samples, one instant query
of `M{sel}[W]` per lookback week, evaluated at the same local wall-clock time k weeks earlier
(shared by every rule with the same selector and window). Everything else is the engine:
`compute_bounds` and `step`, one `SeriesState` per (rule, splitBy labels).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time as _time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec, Query
from klaxon.api.common import parse_duration
from klaxon.api.refs import effective_interval
from klaxon.compile import alert_name_for, compile_rule
from klaxon.compile.engine_rule import NotEvaluable, engine_rule, single_level
from klaxon.compile.query import absence_labels, count_query, raw_range, value_query
from klaxon.engine import (
    SeriesState,
    Transition,
    compute_bounds,
    disable,
    point_violations,
    rule_state,
    step,
    step_flags,
)
from klaxon.engine._tz import shift_local_weeks
from klaxon.engine.state import default_bounds, in_alarm
from klaxon.engine.types import ALARM_STATES, SEVERITY, EngineRule, Level, iso
from klaxon.evaluator import native
from klaxon.prom.client import PrometheusClient, PrometheusError, RangeSeries, Sample

log = logging.getLogger(__name__)

SeriesKey = tuple[tuple[str, str], ...]
MAX_ACTIVE_SERIES = 50
#: Firing episodes kept in ``status.recentFirings`` (newest first).
MAX_RECENT_FIRINGS = 10
#: The `ALERTS` history read for `engine: prometheus` rules reaches this far behind the last read
#: (a rule group evaluated just before a read writes its samples just after it).
HISTORY_MARGIN_S = 60.0
_ORDER = {"Firing": 0, "Recovering": 1, "Pending": 2, "Error": 3, "NoData": 3, "Inactive": 9}


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


@dataclass(frozen=True)
class RuleRef:
    """An AlertRule as the evaluator sees it: identity, spec and (for restore) its current status."""

    namespace: str
    name: str
    uid: str
    spec: AlertRuleSpec
    status: Mapping[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SeriesTransition:
    """A state change worth telling someone about (Transition.notify was true)."""

    rule: RuleRef
    labels: dict[str, str]
    transition: Transition
    value: float | None
    #: The rule is muted (`spec.mute`): the notifier records but does not send.
    muted: bool = False


class TransitionSink(Protocol):
    """What the evaluator hands transitions to (``klaxon.evaluator.notifying.NotifyingAdapter``
    passes them on to ``klaxon.notify.Notifier``).

    A sink may also have ``settle(rule, alarms, t)``: called once per rule and process, after
    the rule's first evaluation that reached Prometheus, with the series then in alarm — so it can
    resolve what it still holds as firing but is not (the resolution was lost with a restart).
    """

    async def handle(self, notification: SeriesTransition) -> None: ...


class LogNotifier:
    """A TransitionSink that logs each transition."""

    async def handle(self, notification: SeriesTransition) -> None:
        tr = notification.transition
        log.info(
            "notify %s %s: %s -> %s (%s, level %s)%s",
            notification.rule.key, notification.labels, tr.from_state, tr.to_state, tr.reason, tr.level,
            " [muted]" if notification.muted else "",
        )


@dataclass
class RuleResult:
    status: dict[str, Any]
    transitions: list[tuple[dict[str, str], Transition]]
    error: str | None = None


@dataclass
class CycleResult:
    t: float
    rules: dict[str, RuleResult] = field(default_factory=dict)
    #: Distinct Prometheus queries sent this cycle (after batching).
    queries: int = 0
    query_errors: int = 0
    notifications: list[SeriesTransition] = field(default_factory=list)
    duration_s: float = 0.0


@dataclass
class _Rule:
    ref: RuleRef
    engine: EngineRule | None
    problem: str | None
    states: dict[SeriesKey, SeriesState] = field(default_factory=dict)
    last_eval: float | None = None
    last_status: dict[str, Any] | None = None
    #: Evaluated by Prometheus (the compiled PrometheusRule): status comes from /api/v1/rules.
    native: bool = False
    #: The notifier was told which series are in alarm after a first good evaluation (``settle``).
    settled: bool = False
    #: `engine: prometheus`: `ALERTS` samples up to here are accounted for (per instance, and for
    #: all: the first read; what fired before it belongs to an earlier process)
    native_floor: float | None = None
    native_seen: dict[SeriesKey, float] = field(default_factory=dict)
    #: Firing episodes that ended, newest first (``status.recentFirings``).
    recent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def engine_name(self) -> str:
        return "prometheus" if self.native else "evaluator"


QueryKey = tuple[str, str, float]  # (kind "vector"/"matrix", expr, time)
_QueryResult = list[Sample] | list[RangeSeries] | PrometheusError


def restore_states(status: Mapping[str, Any] | None) -> dict[SeriesKey, SeriesState]:
    """SeriesStates from `status.activeSeries[].engineState` (what a previous evaluator wrote)."""
    out: dict[SeriesKey, SeriesState] = {}
    for item in (status or {}).get("activeSeries") or []:
        engine_state = item.get("engineState") if isinstance(item, Mapping) else None
        if not isinstance(engine_state, Mapping):
            continue
        try:
            out[series_key(item.get("labels") or {})] = SeriesState.from_dict(engine_state)
        except (ValueError, TypeError) as e:
            log.warning("ignoring unreadable engineState %r: %s", item.get("labels"), e)
    return out


def _muted(spec: AlertRuleSpec, t: float) -> bool:
    mute = spec.mute
    return mute is not None and (mute.until is None or mute.until.timestamp() > t)


class Evaluator:
    """Holds the rules of one AlertConfig (shard) and their series states; `cycle(t)` evaluates."""

    def __init__(
        self,
        client: PrometheusClient,
        config: AlertConfigSpec | None = None,
        notifier: TransitionSink | None = None,
        *,
        concurrency: int = 16,
        max_active_series: int = MAX_ACTIVE_SERIES,
    ) -> None:
        self.client = client
        self.config = config
        self.notifier = notifier
        self.concurrency = concurrency
        self.max_active_series = max_active_series
        self._rules: dict[str, _Rule] = {}  # by uid
        #: Notifications produced outside a cycle (removed rules), delivered with the next one.
        self._pending: list[SeriesTransition] = []

    # -- rule set -------------------------------------------------------------------------
    def _classify(self, ref: RuleRef) -> tuple[EngineRule | None, str | None, bool]:
        """(engine rule, problem, native): which engine evaluates `ref` (`compile_rule(...).engine`)."""
        compiled = compile_rule(ref.name, ref.namespace, ref.spec, self.config, ref.uid)
        if compiled.problems:
            return None, "; ".join(compiled.problems)[:1024], False
        if compiled.engine == "prometheus":
            return None, None, True
        try:
            if ref.spec.query is None and (ref.spec.condition is None or ref.spec.condition.type != "composite"):
                raise NotEvaluable("no query")
            return engine_rule(ref.spec, self.config, ref.key), None, False
        except (NotEvaluable, ValueError) as e:
            return None, str(e), False

    def upsert(self, ref: RuleRef) -> None:
        """Add or update one rule; a known uid keeps its series states, a new one restores from status."""
        old = self._rules.get(ref.uid)
        if old is not None and old.ref.spec == ref.spec and old.ref.key == ref.key:
            old.ref = ref
            return
        engine, problem, is_native = self._classify(ref)
        if old is not None:
            if old.native != is_native:  # the other engine owns the alarm now; start afresh
                old.states = {}
            old.ref, old.engine, old.problem, old.native = ref, engine, problem, is_native
            old.last_eval = None
        else:
            recent = list((ref.status or {}).get("recentFirings") or [])[:MAX_RECENT_FIRINGS]
            self._rules[ref.uid] = _Rule(
                ref, engine, problem, restore_states(ref.status), native=is_native, recent=recent
            )

    def set_config(self, config: AlertConfigSpec | None) -> None:
        """A changed AlertConfig (defaults, endpoint): every rule is classified again; series states
        stay (a rule whose engine or interval changed is evaluated at the next cycle)."""
        if config == self.config:
            return
        self.config = config
        for r in self._rules.values():
            engine, problem, is_native = self._classify(r.ref)
            if (engine, problem, is_native) == (r.engine, r.problem, r.native):
                continue
            if r.native != is_native:  # the other engine owns the alarm now; start afresh
                r.states = {}
            r.engine, r.problem, r.native = engine, problem, is_native
            r.last_eval = None

    def remove(self, uid: str, t: float | None = None, *, resolve: bool = True) -> None:
        """Forget a rule. A deleted rule's alarms resolve (reason `RuleDeleted`, handed to the
        notifier with the next cycle); with `resolve=False` (moved to another config or shard,
        which restores it from status) they are dropped silently.
        """
        r = self._rules.pop(uid, None)
        if r is None or not resolve:
            return
        t = _time.time() if t is None else t
        muted = _muted(r.ref.spec, t)
        for key, st in r.states.items():
            if in_alarm(st):
                tr = Transition(t, st.state, "Inactive", None, "RuleDeleted", st.level, True)
                self._pending.append(SeriesTransition(r.ref, dict(key), tr, st.last_value, muted))

    def set_rules(self, rules: Iterable[RuleRef], t: float | None = None, *, resolve: bool = True) -> None:
        """Replace the rule set: upsert every rule, remove (and resolve) the ones not listed."""
        refs = list(rules)
        keep = {ref.uid for ref in refs}
        for uid in [u for u in self._rules if u not in keep]:
            self.remove(uid, t, resolve=resolve)
        for ref in refs:
            self.upsert(ref)

    def __contains__(self, uid: object) -> bool:
        return uid in self._rules

    @property
    def rules(self) -> list[RuleRef]:
        return [r.ref for r in self._rules.values()]

    def states(self, uid: str) -> dict[SeriesKey, SeriesState]:
        return dict(self._rules[uid].states)

    # -- one cycle ------------------------------------------------------------------------
    def _due(self, r: _Rule, t: float, force: bool) -> bool:
        if r.engine is None and not r.native:
            return False
        if force or r.last_eval is None:
            return True
        if r.engine is not None:
            interval = r.engine.interval_s
        else:
            interval = parse_duration(effective_interval(r.ref.spec, self.config))
        return t - r.last_eval >= interval - 1e-3

    def _operands(self, r: _Rule) -> list[tuple[EngineRule, Query]]:
        """(engine rule, query) of every operand: the rule itself, or each composite condition."""
        er = r.engine
        assert er is not None
        if er.kind == "composite":
            cond = r.ref.spec.condition
            assert cond is not None
            return [(child, sub.query) for child, sub in zip(er.children, cond.conditions or [], strict=True)]
        assert r.ref.spec.query is not None
        return [(er, r.ref.spec.query)]

    @staticmethod
    def _operand_queries(er: EngineRule, q: Query, t: float) -> tuple[QueryKey, list[QueryKey]]:
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

    def _queries(self, r: _Rule, t: float) -> list[tuple[QueryKey, list[QueryKey]]]:
        return [self._operand_queries(er, q, t) for er, q in self._operands(r)]

    async def _run_queries(self, keys: Iterable[QueryKey]) -> dict[QueryKey, _QueryResult]:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(key: QueryKey) -> tuple[QueryKey, _QueryResult]:
            kind, expr, t = key
            async with sem:
                try:
                    if kind == "matrix":
                        return key, await self.client.query_matrix(expr, t)
                    return key, await self.client.query(expr, t)
                except PrometheusError as e:
                    return key, e

        pairs = await asyncio.gather(*(one(k) for k in keys))
        return dict(pairs)

    async def cycle(self, t: float | None = None, *, force: bool = False) -> CycleResult:
        """Evaluate every due rule at `t` (default now), notify, and return per-rule status."""
        started = _time.perf_counter()
        t = _time.time() if t is None else float(t)
        result = CycleResult(t=t)
        due: list[tuple[_Rule, list[tuple[QueryKey, list[QueryKey]]]]] = []
        due_native: list[_Rule] = []
        for r in self._rules.values():
            if not r.ref.spec.enabled:
                result.rules[r.ref.key] = self._disable(r, t)
            elif not self._due(r, t, force):
                continue
            elif r.native:
                due_native.append(r)
            else:
                due.append((r, self._queries(r, t)))
        wanted: dict[QueryKey, None] = {}
        for _, plan in due:
            for main, baseline in plan:
                wanted[main] = None
                for b in baseline:
                    wanted[b] = None
        answers = await self._run_queries(wanted)
        result.queries = len(answers)
        result.query_errors = sum(isinstance(a, PrometheusError) for a in answers.values())
        if due_native:  # one /api/v1/rules call for every rule Prometheus evaluates
            groups: list[dict[str, Any]] | PrometheusError
            history = asyncio.ensure_future(self._native_history(due_native, t))
            try:
                groups = await self.client.rules()
            except PrometheusError as e:
                groups = e
            runs = await history
            result.queries += 2 if any(r.native_floor is not None for r in due_native) else 1
            result.query_errors += isinstance(groups, PrometheusError)
            index = native.index_rules(groups) if not isinstance(groups, PrometheusError) else {}
            for r in due_native:
                err = groups if isinstance(groups, PrometheusError) else None
                key = (r.ref.namespace, r.ref.name)
                result.rules[r.ref.key] = self._evaluate_native(r, t, index.get(key), err, runs.get(key, []))
        for r, plan in due:
            got = [(answers[main], [answers[b] for b in baseline]) for main, baseline in plan]
            if r.engine is not None and r.engine.kind == "composite":
                result.rules[r.ref.key] = self._evaluate_composite(r, t, got)
            else:
                result.rules[r.ref.key] = self._evaluate(r, t, *got[0])
        for r in self._rules.values():
            rr_opt = result.rules.get(r.ref.key)
            if rr_opt is None:
                continue
            muted = _muted(r.ref.spec, t)
            for labels, tr in rr_opt.transitions:
                if tr.notify:
                    st = r.states.get(series_key(labels))
                    value = st.last_value if st is not None else None
                    result.notifications.append(SeriesTransition(r.ref, labels, tr, value, muted))
        result.notifications[:0] = self._pending
        self._pending = []
        if self.notifier is not None:
            for n in result.notifications:
                try:
                    await self.notifier.handle(n)
                except Exception:  # a broken channel must not stop evaluation
                    log.exception("notifier failed for %s %s", n.rule.key, n.labels)
            await self._settle(result, t)
        result.duration_s = _time.perf_counter() - started
        return result

    async def _settle(self, result: CycleResult, t: float) -> None:
        settle = getattr(self.notifier, "settle", None)
        if settle is None:
            return
        for r in self._rules.values():
            rr = result.rules.get(r.ref.key)
            if r.settled or rr is None or rr.error is not None or not r.ref.spec.enabled:
                continue
            r.settled = True
            alarms = [dict(k) for k, st in r.states.items() if in_alarm(st)]
            try:
                await settle(r.ref, alarms, t)
            except Exception:
                log.exception("settling the notifier's alerts of %s failed", r.ref.key)

    # -- per rule -------------------------------------------------------------------------
    def _disable(self, r: _Rule, t: float) -> RuleResult:
        transitions: list[tuple[dict[str, str], Transition]] = []
        for key, st in r.states.items():
            _, trs = disable(st, t)
            transitions += [(dict(key), tr) for tr in trs]
        r.states = {}
        status: dict[str, Any] = {
            "engine": r.engine_name,
            "state": "Disabled",
            "level": None,
            "reason": "Disabled",
            "lastEvaluation": {"time": iso(t), "value": None, "message": "rule is disabled"},
            "firingSince": None,
            "activeSeries": [],
            "activeSeriesCount": 0,
        }
        r.last_status = status
        return RuleResult(status, transitions)

    def _evaluate(self, r: _Rule, t: float, main: _QueryResult, baseline: Sequence[_QueryResult]) -> RuleResult:
        er = r.engine
        assert er is not None
        r.last_eval = t
        transitions: list[tuple[dict[str, str], Transition]] = []

        def apply(key: SeriesKey, new: SeriesState, trs: list[Transition]) -> None:
            r.states[key] = new
            transitions.extend((dict(key), tr) for tr in trs)

        error = next((a for a in (main, *baseline) if isinstance(a, PrometheusError)), None)
        if error is not None:
            for key in list(r.states) or [()]:
                apply(key, *step(er, r.states.get(key, SeriesState()), t, math.nan, status="error"))
            rr = RuleResult(self._status(r, t, error=str(error)), transitions, str(error))
            return rr

        assert not isinstance(main, PrometheusError)
        values: dict[SeriesKey, float] = {}
        for s in main:
            if isinstance(s, Sample):
                values[series_key(s.labels)] = s.value
        if er.kind == "absence":
            # A group that vanished has no samples in the window: count 0, the absence it watches.
            # The unlabelled placeholder "no data" / an error is reported under is no group.
            for key, st in r.states.items():
                if key or st.state not in ("NoData", "Error"):
                    values.setdefault(key, 0.0)
            q = r.ref.spec.query
            if not values and q is not None and not q.split_by:
                values[series_key(absence_labels(q))] = 0.0

        if not values:
            for key in list(r.states) or [()]:
                apply(key, *step(er, r.states.get(key, SeriesState()), t, math.nan, status="no_data"))
            return RuleResult(self._status(r, t), transitions)

        assert r.ref.spec.query is not None
        pooled = self._baseline(r.ref.spec.query, baseline) if er.kind == "dynamic" else {}
        static_bounds = default_bounds(er, t) if er.kind != "dynamic" else None  # the same for every series
        for key, value in values.items():
            state = r.states.get(key, SeriesState())
            bounds = static_bounds
            if er.kind == "dynamic":
                times, vals = pooled.get(key, (np.empty(0), np.empty(0)))
                bounds = compute_bounds(er, np.array([t]), times, vals).at(0)
            apply(key, *step(er, state, t, value, bounds))
        for key in [k for k in r.states if k not in values]:
            st = r.states[key]
            if st.state in ("NoData", "Error"):
                # Data is back, but not for this (placeholder) series: resolve what NoData/Error notified.
                new, trs = step_flags(er, st, t, dict.fromkeys(er.levels, False))
                apply(key, new, trs)
            else:
                apply(key, *step(er, st, t, math.nan))  # a missing sample; MissingSeries after two
            if r.states[key].state == "Inactive":
                del r.states[key]
        return RuleResult(self._status(r, t), transitions)

    def _operand_flags(
        self, er: EngineRule, q: Query, t: float, main: _QueryResult, baseline: Sequence[_QueryResult],
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
        pooled = self._baseline(q, baseline) if er.kind == "dynamic" else {}
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

    def _evaluate_composite(
        self, r: _Rule, t: float, got: Sequence[tuple[_QueryResult, Sequence[_QueryResult]]]
    ) -> RuleResult:
        """Each operand's point violation from its own query, combined per group by `logic`.

        Three-valued as `replay_composite`: `all` is false when a known operand is false and true
        when every operand is known and true; `any` is true when one operand is true and false
        when every operand is known and false; otherwise the point is missing (NoData when no
        operand has any data). The rule's own levels, `for` and recovery then apply (`step_flags`).
        """
        er = r.engine
        assert er is not None
        r.last_eval = t
        transitions: list[tuple[dict[str, str], Transition]] = []

        def apply(key: SeriesKey, new: SeriesState, trs: list[Transition]) -> None:
            r.states[key] = new
            transitions.extend((dict(key), tr) for tr in trs)

        error = next(
            (a for main, base in got for a in (main, *base) if isinstance(a, PrometheusError)), None
        )
        if error is not None:
            for key in list(r.states) or [()]:
                apply(key, *step_flags(er, r.states.get(key, SeriesState()), t, None, status="error"))
            return RuleResult(self._status(r, t, error=str(error)), transitions, str(error))
        operands = self._operands(r)
        splits = [set(q.split_by) for _, q in operands]
        common = sorted(set.intersection(*splits)) if splits else []
        per_operand = [
            self._operand_flags(child, q, t, main, base, common)
            for (child, q), (main, base) in zip(operands, got, strict=True)
        ]
        groups = {g for flags in per_operand for g in flags}
        if not any(known for flags in per_operand for known, _ in flags.values()):
            for key in list(r.states) or [()]:
                apply(key, *step_flags(er, r.states.get(key, SeriesState()), t, None, status="no_data"))
            return RuleResult(self._status(r, t), transitions)
        for key in list(r.states):
            st = r.states[key]
            if st.state in ("NoData", "Error") and key not in groups:
                apply(key, *step_flags(er, st, t, dict.fromkeys(er.levels, False)))
                del r.states[key]
        for key in sorted(groups | set(r.states)):
            cells = [flags.get(key, (False, False)) for flags in per_operand]
            known = [k for k, _ in cells]
            truth = [k and b for k, b in cells]
            if er.logic == "all":
                value = not any(k and not b for k, b in zip(known, truth, strict=True))
                decided = not value or all(known)
            else:
                value = any(truth)
                decided = value or all(known)
            state = r.states.get(key, SeriesState())
            if decided:
                apply(key, *step_flags(er, state, t, dict.fromkeys(er.levels, value)))
            else:
                apply(key, *step_flags(er, state, t, None))
            if r.states[key].state == "Inactive" and key not in groups:
                del r.states[key]
        return RuleResult(self._status(r, t), transitions)

    async def _native_history(
        self, rules: Sequence[_Rule], t: float
    ) -> dict[tuple[str, str], list[native.FiringRun]]:
        """Instances Prometheus had firing since each rule's last read (raw `ALERTS` samples)."""
        reads = [r.last_eval or r.native_floor for r in rules if r.native_floor is not None]
        last = min((x for x in reads if x is not None), default=None)
        if last is None:
            return {}
        expr = native.history_query({r.ref.namespace for r in rules}, t - last + HISTORY_MARGIN_S)
        try:
            return native.firing_runs(await self.client.query_matrix(expr, t))
        except PrometheusError as e:  # the reads alone still work; only short alerts may go unseen
            log.warning("reading the ALERTS history failed: %s", e)
            return {}

    def _evaluate_native(
        self,
        r: _Rule,
        t: float,
        found: native.NativeRule | None,
        error: PrometheusError | None,
        runs: Sequence[native.FiringRun] = (),
    ) -> RuleResult:
        """Status of a rule Prometheus evaluates, from its alerts in /api/v1/rules (plus what fired
        and ended between two reads, from ``runs``)."""
        r.last_eval = t
        if r.native_floor is None:  # what fired before the first read is an earlier process' business
            r.native_floor = t
        if error is not None:  # keep the known instances: no false resolution while Prometheus is away
            return RuleResult(self._status(r, t, error=str(error)), [], str(error))
        if found is None:
            msg = (
                f"alerting rule {alert_name_for(r.ref.name)} of {r.ref.key} is not loaded in Prometheus "
                "(is the PrometheusRule selected by Prometheus' ruleSelector?)"
            )
            status = self._status(r, t, error=msg)
            status["reason"] = "NotLoaded"
            return RuleResult(status, [], msg)
        if found.last_evaluation is None:  # loaded but not evaluated yet (e.g. Prometheus just restarted)
            status = self._status(r, t)
            status["reason"] = "NotEvaluatedYet"
            return RuleResult(status, [])
        levels = r.ref.spec.levels
        multi = levels is not None and (levels.warning is not None or levels.critical is not None)
        level = None if multi else single_level(r.ref.spec)
        new = native.instances(found, r.ref.spec.labels, level, t)
        old = r.states
        r.states, transitions = native.diff(old, new, t)
        for key, st in old.items():  # episodes this read ended
            if key not in r.states and st.state in ("Firing", "Recovering"):
                self._remember_firing(r, key, st.level, st.since, t)
        transitions = self._between_reads(r, runs, old, new, level, t) + transitions
        at = found.last_evaluation if found.last_evaluation is not None else t
        error_text = "; ".join(found.errors) if found.errors else None
        return RuleResult(self._status(r, at, error=error_text), transitions, error_text)

    def _between_reads(
        self,
        r: _Rule,
        runs: Sequence[native.FiringRun],
        old: Mapping[SeriesKey, SeriesState],
        new: Mapping[SeriesKey, SeriesState],
        level: str | None,
        t: float,
    ) -> list[tuple[dict[str, str], Transition]]:
        """Instances that fired after the last read and ended before this one: Triggered, then
        Recovered, both notified (in that order), and remembered in ``recentFirings``."""
        out: list[tuple[dict[str, str], Transition]] = []
        floor = r.native_floor
        if floor is not None:  # (always: set by the read)
            for run in sorted(runs, key=lambda x: x.first):
                key = native.instance_key(run.labels, r.ref.spec.labels)
                seen = max(floor, r.native_seen.get(key, floor))
                if run.last <= seen or key in old or key in new:
                    continue
                picked = level if level is not None else run.severity
                lv: Level = "critical" if picked == "critical" else "warning"
                labels = dict(key)
                out.append((labels, Transition(run.first, "Inactive", "Firing", lv, "Triggered", None, True)))
                out.append((labels, Transition(run.last, "Firing", "Inactive", None, "Recovered", lv, True)))
                self._remember_firing(r, key, lv, run.first, run.last)
                r.native_seen[key] = run.last
        for key in {*old, *new}:  # accounted for by the reads themselves
            r.native_seen[key] = t
        # what is older than the next history window can go
        r.native_seen = {k: v for k, v in r.native_seen.items() if v > t - 3600}
        return out

    @staticmethod
    def _remember_firing(r: _Rule, key: SeriesKey, level: str | None, since: float | None, until: float) -> None:
        episode = {"labels": dict(key), "level": level, "since": iso(since), "until": iso(until)}
        r.recent = [episode, *r.recent][:MAX_RECENT_FIRINGS]

    @staticmethod
    def _baseline(
        q: Query, answers: Sequence[_QueryResult]
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

    def _status(self, r: _Rule, t: float, error: str | None = None) -> dict[str, Any]:
        status = build_status(r.states, t, error=error, limit=self.max_active_series)
        status["engine"] = r.engine_name
        if r.recent:
            status["recentFirings"] = r.recent
        if error is not None and r.native and status["state"] == "Inactive":
            status["state"] = "Error"  # known alerts stand (no false resolution) while Prometheus cannot be read
        if error is None and _muted(r.ref.spec, t):
            status["reason"] = "Muted"  # evaluation goes on; notifications are flagged muted
        r.last_status = status
        return status


def build_status(
    states: Mapping[SeriesKey, SeriesState],
    t: float,
    *,
    error: str | None = None,
    limit: int = MAX_ACTIVE_SERIES,
) -> dict[str, Any]:
    """The rule's `status` fields written by the evaluator (AlertRuleStatus, camelCase)."""
    items = sorted(
        ((k, s) for k, s in states.items() if s.state != "Inactive"),
        key=lambda ks: (_ORDER.get(ks[1].state, 5), -SEVERITY.get(ks[1].level or "", 0), ks[0]),
    )
    state = rule_state(states.values())
    alarm = [s for _, s in items if s.state in ALARM_STATES]
    level = max((s.level for s in alarm if s.level), key=lambda lv: SEVERITY[lv], default=None)
    firing_since = min((s.since for s in alarm if s.since is not None), default=None)
    top = items[0][1] if items else next(iter(states.values()), None)
    value = top.last_value if top is not None else None
    if error is not None:
        reason: str | None = "QueryError"
        message = error[:1024]
    else:
        reason = top.reason if top is not None and top.state != "Inactive" else None
        counts: dict[str, int] = {}
        for s in states.values():
            counts[s.state] = counts.get(s.state, 0) + 1
        message = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no series"
    return {
        "state": state,
        "level": level,
        "reason": reason,
        "lastEvaluation": {
            "time": iso(t),
            "value": value if value is not None and math.isfinite(value) else None,
            "message": message,
        },
        "firingSince": iso(firing_since),
        "activeSeries": [
            {
                "labels": dict(k),
                "state": s.state,
                "level": s.level,
                "value": s.last_value if s.last_value is not None and math.isfinite(s.last_value) else None,
                "since": iso(s.since),
                "engineState": s.to_dict(),
            }
            for k, s in items[:limit]
        ],
        "activeSeriesCount": len(items),
    }
