"""Status of `engine: prometheus` rules from Prometheus' own rule engine (`/api/v1/rules`).

Prometheus evaluates these rules (the compiled PrometheusRule); the evaluator reads, once per
cycle for all of them, the rule groups with their alerts and turns every alert instance into a
`SeriesState` (Pending/Firing, level from the `severity` label, since = `activeAt`), so status,
restore and notifications go through the same code as for evaluator rules. Transitions are the
differences between two reads: an instance that appears firing or goes Pending -> Firing is
`Triggered`, one whose level changes `Escalated`/`Deescalated`, a firing one that disappears
`Recovered` (Prometheus resolved it, `keep_firing_for` included).

An alert that starts and ends between two reads is not in either: ``history_query`` reads the raw
`ALERTS{alertstate="firing"}` samples Prometheus wrote since the last read, and ``firing_runs``
turns them into the instances that fired meanwhile, so that such an alert is still notified
(firing, then resolved) and shown (``status.recentFirings``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from klaxon.compile.prometheusrule import RULE_NAME_LABEL, RULE_NAMESPACE_LABEL
from klaxon.compile.promql import regex_quote, string_literal, window
from klaxon.engine.types import SEVERITY, Level, SeriesState, Transition
from klaxon.prom.client import PrometheusClient, PrometheusError, RangeSeries

log = logging.getLogger(__name__)

SeriesKey = tuple[tuple[str, str], ...]
#: The `ALERTS` history read reaches this far behind the last read (a rule group evaluated just
#: before a read writes its samples just after it).
HISTORY_MARGIN_S = 60.0

#: Labels Prometheus/Klaxon put on every alert of a rule; the rest identify the instance.
_RULE_LABELS = frozenset({"alertname", "severity", RULE_NAME_LABEL, RULE_NAMESPACE_LABEL})
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(text: str | None) -> float | None:
    """RFC 3339 with up to nanoseconds (Go) -> unix seconds; Go's zero time -> None."""
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class NativeAlert:
    labels: dict[str, str]
    state: str  # "pending" | "firing"
    severity: str | None
    active_at: float | None
    value: float | None


@dataclass
class NativeRule:
    """What Prometheus knows about one AlertRule: its alerting rules' alerts and health."""

    alerts: list[NativeAlert] = field(default_factory=list)
    last_evaluation: float | None = None
    errors: list[str] = field(default_factory=list)


def index_rules(groups: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], NativeRule]:
    """`/api/v1/rules` groups -> per (namespace, name) of the AlertRule (from the klaxon labels)."""
    out: dict[tuple[str, str], NativeRule] = {}
    for g in groups:
        group_eval = parse_time(g.get("lastEvaluation"))
        for r in g.get("rules") or []:
            if r.get("type") != "alerting":
                continue
            labels = r.get("labels") or {}
            ns, name = labels.get(RULE_NAMESPACE_LABEL), labels.get(RULE_NAME_LABEL)
            if not ns or not name:
                continue
            nr = out.setdefault((str(ns), str(name)), NativeRule())
            if group_eval is not None:
                nr.last_evaluation = max(nr.last_evaluation or group_eval, group_eval)
            if r.get("health") == "err" and r.get("lastError"):
                nr.errors.append(str(r["lastError"]))
            for a in r.get("alerts") or []:
                al = dict(a.get("labels") or {})
                nr.alerts.append(
                    NativeAlert(
                        labels=al,
                        state=str(a.get("state", "")),
                        severity=al.get("severity"),
                        active_at=parse_time(a.get("activeAt")),
                        value=_float(a.get("value")),
                    )
                )
    return out


def instances(
    nr: NativeRule, extra_labels: Iterable[str], single_level: str | None, t: float
) -> dict[SeriesKey, SeriesState]:
    """One SeriesState per alert instance (warning and critical alerts of one instance merged)."""
    drop = _RULE_LABELS | set(extra_labels)
    out: dict[SeriesKey, SeriesState] = {}
    for a in nr.alerts:
        if a.state not in ("pending", "firing"):
            continue
        key = tuple(sorted((k, v) for k, v in a.labels.items() if k not in drop))
        level = single_level if single_level is not None else a.severity
        if level not in SEVERITY:
            level = "warning"
        st = SeriesState(
            state="Firing" if a.state == "firing" else "Pending",
            level=level,  # type: ignore[arg-type]
            since=a.active_at,
            pending_since=a.active_at if a.state == "pending" else None,
            last_value=a.value,
            last_eval_t=nr.last_evaluation if nr.last_evaluation is not None else t,
        )
        old = out.get(key)
        if old is None or _rank(st) > _rank(old):
            out[key] = st
    return out


def instance_key(labels: Mapping[str, str], extra_labels: Iterable[str]) -> SeriesKey:
    """The instance an alert's labels name: without the rule's own labels (as ``instances``)."""
    drop = _RULE_LABELS | _SERIES_LABELS | set(extra_labels)
    return tuple(sorted((k, v) for k, v in labels.items() if k not in drop))


#: Labels of the `ALERTS` series that are not the alert's.
_SERIES_LABELS = frozenset({"__name__", "alertstate"})


@dataclass(frozen=True)
class FiringRun:
    """An alert instance seen firing in `ALERTS` samples: its labels and first and last sample."""

    labels: dict[str, str]
    severity: str | None
    first: float
    last: float


def history_query(namespaces: Iterable[str], window_s: float) -> str:
    """Raw `ALERTS` firing samples of Klaxon's alerting rules in ``namespaces`` over ``window_s``."""
    pattern = "|".join(regex_quote(ns) for ns in sorted(set(namespaces)))
    matchers = f'alertstate="firing",{RULE_NAMESPACE_LABEL}=~{string_literal(pattern)}'
    return f"ALERTS{{{matchers}}}[{window(window_s)}]"


def firing_runs(series: Iterable[RangeSeries]) -> dict[tuple[str, str], list[FiringRun]]:
    """``history_query``'s answer per (namespace, name) of the AlertRule."""
    out: dict[tuple[str, str], list[FiringRun]] = {}
    for rs in series:
        ns, name = rs.labels.get(RULE_NAMESPACE_LABEL), rs.labels.get(RULE_NAME_LABEL)
        if not ns or not name or not len(rs.times):
            continue
        labels = {k: v for k, v in rs.labels.items() if k not in _SERIES_LABELS}
        run = FiringRun(labels, labels.get("severity"), float(rs.times.min()), float(rs.times.max()))
        out.setdefault((ns, name), []).append(run)
    return out


def _rank(s: SeriesState) -> tuple[int, int]:
    return (2 if s.state == "Firing" else 1, SEVERITY.get(s.level or "", 0))


def diff(
    old: Mapping[SeriesKey, SeriesState], new: Mapping[SeriesKey, SeriesState], t: float
) -> tuple[dict[SeriesKey, SeriesState], list[tuple[dict[str, str], Transition]]]:
    """New states (since kept while state and level stay) and the transitions from `old` to `new`."""
    out: dict[SeriesKey, SeriesState] = {}
    trs: list[tuple[dict[str, str], Transition]] = []
    for key, st in new.items():
        prev = old.get(key)
        if prev is None or prev.state not in ("Pending", "Firing", "Recovering"):
            reason = "Triggered" if st.state == "Firing" else "ConditionMet"
            frm = prev.state if prev is not None else "Inactive"
            trs.append((dict(key), Transition(t, frm, st.state, st.level, reason, None, st.state == "Firing")))
            out[key] = replace(st, reason=reason)
            continue
        if prev.state == "Pending" and st.state == "Firing":
            trs.append((dict(key), Transition(t, "Pending", "Firing", st.level, "Triggered", prev.level, True)))
            out[key] = replace(st, reason="Triggered")
        elif prev.state != "Pending" and st.state == "Firing" and prev.level != st.level:
            up = SEVERITY.get(st.level or "", 0) > SEVERITY.get(prev.level or "", 0)
            reason = "Escalated" if up else "Deescalated"
            trs.append((dict(key), Transition(t, "Firing", "Firing", st.level, reason, prev.level, True)))
            out[key] = replace(st, since=prev.since, reason=reason)
        elif prev.state == "Firing" and st.state == "Pending":  # re-created alert (e.g. a restart)
            out[key] = replace(st, reason=prev.reason)
        else:
            since = prev.since if prev.since is not None else st.since
            out[key] = replace(st, since=since, reason=prev.reason)
    for key, prev in old.items():
        if key in new or prev.state not in ("Pending", "Firing", "Recovering"):
            continue
        reason = "ConditionBroken" if prev.state == "Pending" else "Recovered"
        trs.append(
            (dict(key), Transition(t, prev.state, "Inactive", None, reason, prev.level, prev.state != "Pending"))
        )
    return out, trs


def between_reads(
    runs: Iterable[FiringRun],
    floor: float,
    seen: Mapping[SeriesKey, float],
    read: Iterable[SeriesKey],
    level: str | None,
    t: float,
    rule_labels: Iterable[str],
) -> tuple[list[tuple[SeriesKey, Level, float, float]], dict[SeriesKey, float]]:
    """Episodes (instance, level, first, last) that fired after the last read (`floor`, or an
    instance's own `seen` mark) and ended before this one, none of them in either read (`read`);
    and the new `seen` marks: up to each episode's end, up to `t` for what the reads hold, kept
    for an hour (longer than the next history window)."""
    marks = dict(seen)
    shown = set(read)
    out: list[tuple[SeriesKey, Level, float, float]] = []
    for run in sorted(runs, key=lambda x: x.first):
        key = instance_key(run.labels, rule_labels)
        if run.last <= max(floor, marks.get(key, floor)) or key in shown:
            continue
        picked = level if level is not None else run.severity
        lv: Level = "critical" if picked == "critical" else "warning"
        out.append((key, lv, run.first, run.last))
        marks[key] = run.last
    for key in shown:
        marks[key] = t
    return out, {k: v for k, v in marks.items() if v > t - 3600}


async def firing_history(
    client: PrometheusClient, namespaces: Iterable[str], last: float, t: float
) -> dict[tuple[str, str], list[FiringRun]]:
    """The firing runs of the namespaces' rules since `last` (the oldest read), from `ALERTS`;
    empty when Prometheus cannot answer (the reads alone still work; only short alerts may go unseen)."""
    expr = history_query(namespaces, t - last + HISTORY_MARGIN_S)
    try:
        return firing_runs(await client.query_matrix(expr, t))
    except PrometheusError as e:
        log.warning("reading the ALERTS history failed: %s", e)
        return {}
