"""What the evaluator hands on: rule and series identities, transitions, per-rule and per-cycle
results, and the `status` fields it writes (and reads back after a restart)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from klaxon.api.alertrule import AlertRuleSpec
from klaxon.api.validation import parse_spec
from klaxon.engine import SeriesState, Transition, rule_state
from klaxon.engine.types import ALARM_STATES, SEVERITY, iso

log = logging.getLogger(__name__)

SeriesKey = tuple[tuple[str, str], ...]
MAX_ACTIVE_SERIES = 50
#: Firing episodes kept in ``status.recentFirings`` (newest first).
MAX_RECENT_FIRINGS = 10
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


def disabled_status(engine: str, t: float) -> dict[str, Any]:
    """The status of a rule with `enabled: false`: no series, nothing evaluated."""
    return {
        "engine": engine,
        "state": "Disabled",
        "level": None,
        "reason": "Disabled",
        "lastEvaluation": {"time": iso(t), "value": None, "message": "rule is disabled"},
        "firingSince": None,
        "activeSeries": [],
        "activeSeriesCount": 0,
    }


def muted_at(spec: AlertRuleSpec, t: float) -> bool:
    """Whether `spec.mute` holds at `t` (evaluation goes on; notifications are flagged muted)."""
    mute = spec.mute
    return mute is not None and (mute.until is None or mute.until.timestamp() > t)


def rule_ref(obj: Mapping[str, Any]) -> RuleRef | None:
    """The RuleRef of a valid AlertRule object (invalid ones are the operator's to report)."""
    meta = obj.get("metadata") or {}
    model, problems = parse_spec("AlertRule", obj.get("spec"))
    if problems or not isinstance(model, AlertRuleSpec):
        log.info("skipping invalid rule %s/%s", meta.get("namespace"), meta.get("name"))
        return None
    return RuleRef(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""), model, obj.get("status"))
