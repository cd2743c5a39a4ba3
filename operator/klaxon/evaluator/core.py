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
from typing import Any

import numpy as np

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.common import parse_duration
from klaxon.api.refs import effective_interval
from klaxon.compile import alert_name_for, compile_rule
from klaxon.compile.engine_rule import NotEvaluable, engine_rule, single_level
from klaxon.compile.query import absence_labels
from klaxon.engine import (
    SeriesState,
    Transition,
    compute_bounds,
    disable,
    step,
    step_flags,
)
from klaxon.engine.state import default_bounds, in_alarm
from klaxon.engine.types import EngineRule, iso
from klaxon.evaluator import native
from klaxon.evaluator.composite import combine, operand_flags
from klaxon.evaluator.queries import QueryKey, QueryResult, operands, pooled_baseline, rule_queries, run_queries
from klaxon.evaluator.results import (
    MAX_ACTIVE_SERIES,
    MAX_RECENT_FIRINGS,
    CycleResult,
    RuleRef,
    RuleResult,
    SeriesKey,
    SeriesTransition,
    TransitionSink,
    build_status,
    disabled_status,
    muted_at,
    restore_states,
    series_key,
)
from klaxon.prom.client import PrometheusClient, PrometheusError, Sample

log = logging.getLogger(__name__)


@dataclass
class _Rule:
    ref: RuleRef
    engine: EngineRule | None
    problem: str | None
    states: dict[SeriesKey, SeriesState] = field(default_factory=dict)
    last_eval: float | None = None
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
        muted = muted_at(r.ref.spec, t)
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
                assert r.engine is not None
                due.append((r, rule_queries(r.engine, r.ref.spec, t)))
        wanted: dict[QueryKey, None] = {}
        for _, plan in due:
            for main, baseline in plan:
                wanted[main] = None
                for b in baseline:
                    wanted[b] = None
        answers = await run_queries(self.client, wanted, self.concurrency)
        result.queries = len(answers)
        result.query_errors = sum(isinstance(a, PrometheusError) for a in answers.values())
        if due_native:
            await self._read_native(due_native, t, result)
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
            muted = muted_at(r.ref.spec, t)
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
        return RuleResult(disabled_status(r.engine_name, t), transitions)

    def _evaluate(self, r: _Rule, t: float, main: QueryResult, baseline: Sequence[QueryResult]) -> RuleResult:
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
        pooled = pooled_baseline(r.ref.spec.query, baseline) if er.kind == "dynamic" else {}
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

    def _evaluate_composite(
        self, r: _Rule, t: float, got: Sequence[tuple[QueryResult, Sequence[QueryResult]]]
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
        ops = operands(er, r.ref.spec)
        splits = [set(q.split_by) for _, q in ops]
        common = sorted(set.intersection(*splits)) if splits else []
        per_operand = [
            operand_flags(child, q, t, main, base, common)
            for (child, q), (main, base) in zip(ops, got, strict=True)
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
            value, decided = combine(er.logic, [flags.get(key, (False, False)) for flags in per_operand])
            state = r.states.get(key, SeriesState())
            if decided:
                apply(key, *step_flags(er, state, t, dict.fromkeys(er.levels, value)))
            else:
                apply(key, *step_flags(er, state, t, None))
            if r.states[key].state == "Inactive" and key not in groups:
                del r.states[key]
        return RuleResult(self._status(r, t), transitions)

    async def _read_native(self, rules: Sequence[_Rule], t: float, result: CycleResult) -> None:
        """One /api/v1/rules call (and one `ALERTS` history query) for every rule Prometheus evaluates."""
        groups: list[dict[str, Any]] | PrometheusError
        history = asyncio.ensure_future(self._native_history(rules, t))
        try:
            groups = await self.client.rules()
        except PrometheusError as e:
            groups = e
        runs = await history
        result.queries += 2 if any(r.native_floor is not None for r in rules) else 1
        result.query_errors += isinstance(groups, PrometheusError)
        err = groups if isinstance(groups, PrometheusError) else None
        index = native.index_rules(groups) if not isinstance(groups, PrometheusError) else {}
        for r in rules:
            key = (r.ref.namespace, r.ref.name)
            result.rules[r.ref.key] = self._evaluate_native(r, t, index.get(key), err, runs.get(key, []))

    async def _native_history(
        self, rules: Sequence[_Rule], t: float
    ) -> dict[tuple[str, str], list[native.FiringRun]]:
        """Instances Prometheus had firing since each rule's last read (raw `ALERTS` samples)."""
        reads = [r.last_eval or r.native_floor for r in rules if r.native_floor is not None]
        last = min((x for x in reads if x is not None), default=None)
        if last is None:
            return {}
        return await native.firing_history(self.client, {r.ref.namespace for r in rules}, last, t)

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
        if r.native_floor is None:  # (never: set by the read)
            return []
        episodes, r.native_seen = native.between_reads(
            runs, r.native_floor, r.native_seen, {*old, *new}, level, t, r.ref.spec.labels
        )
        out: list[tuple[dict[str, str], Transition]] = []
        for key, lv, first, last in episodes:
            out.append((dict(key), Transition(first, "Inactive", "Firing", lv, "Triggered", None, True)))
            out.append((dict(key), Transition(last, "Firing", "Inactive", None, "Recovered", lv, True)))
            self._remember_firing(r, key, lv, first, last)
        return out

    @staticmethod
    def _remember_firing(r: _Rule, key: SeriesKey, level: str | None, since: float | None, until: float) -> None:
        episode = {"labels": dict(key), "level": level, "since": iso(since), "until": iso(until)}
        r.recent = [episode, *r.recent][:MAX_RECENT_FIRINGS]

    def _status(self, r: _Rule, t: float, error: str | None = None) -> dict[str, Any]:
        status = build_status(r.states, t, error=error, limit=self.max_active_series)
        status["engine"] = r.engine_name
        if r.recent:
            status["recentFirings"] = r.recent
        if error is not None and r.native and status["state"] == "Inactive":
            status["state"] = "Error"  # known alerts stand (no false resolution) while Prometheus cannot be read
        if error is None and muted_at(r.ref.spec, t):
            status["reason"] = "Muted"  # evaluation goes on; notifications are flagged muted
        return status
