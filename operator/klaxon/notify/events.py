"""Event rules (SEMANTICS §6, seeds 001 and 004): matching, then dedup, grouping and cooldown.

``EventPipeline`` is the one implementation the evaluator and ``klaxon test-rule`` share. Per
matched event, in this order: dedup key; grouping (an alert opens when matches in the window
reach minEvents, absorbs later events, closes after a window without events); gates (disabled,
silences, mute time intervals, mute, ack); cooldown on the dedup key. An absorbed event notifies
only when the rule sets a cooldown and its window has passed (a "still happening" reminder);
otherwise it is ``suppressedBy: grouping``. Opening an alert inside a cooldown window is
``suppressedBy: cooldown``. With minEvents 1 this is exactly seed 001's cooldown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec, EventFilter
from ..api.common import Schedule, parse_duration
from .model import Notification
from .policy import (
    Grouper,
    RulePolicy,
    SuppressedBy,
    cooldown_allows,
    gate,
    in_schedule,
    render_dedup_key,
)

CONDITION_ORDER = ("riskThreshold", "objectTypes", "cameras", "zones", "minConfidence", "schedule")
# tuples, not X | Y: a union in isinstance is rebuilt on every call (hot path)
_SEQ = (list, tuple)
_NUM = (int, float)
_SCALAR = (str, int, float)
_TIME_FIELDS = ("time", "timestamp", "started_at", "startedAt", "created_at")
#: How late (behind the latest event of a rule) an event may be and still meet the group and
#: cooldown state it would have met in time order (``EventPipeline.compact`` keeps that much).
LATENESS_S = 3600.0


def _list(event: Mapping[str, Any], *names: str) -> list[str]:
    for name in names:
        v = event.get(name)
        if isinstance(v, _SEQ):
            return [str(x) for x in v]
        if v is not None:
            return [str(v)]
    return []


def _number(event: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        v = event.get(name)
        if isinstance(v, _NUM) and not isinstance(v, bool):
            return float(v)
    return None


def event_time(event: Mapping[str, Any]) -> datetime:
    """The event's time: the first of time/timestamp/started_at; naive ISO strings are UTC."""
    for name in _TIME_FIELDS:
        v = event.get(name)
        if isinstance(v, datetime):
            return v if v.tzinfo else v.replace(tzinfo=UTC)
        if isinstance(v, _NUM) and not isinstance(v, bool):
            return datetime.fromtimestamp(v, UTC)
        if isinstance(v, str) and v:
            ts = datetime.fromisoformat(v.replace("Z", "+00:00"))
            return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    raise ValueError(f"event has no time (allowed fields: {', '.join(_TIME_FIELDS)})")


def event_id(event: Mapping[str, Any], index: int) -> str:
    v = event.get("event_id", event.get("id"))
    return str(v) if v is not None else str(index)


def match_event(
    event: Mapping[str, Any], flt: EventFilter, schedule: Schedule | None, at: datetime | None = None
) -> tuple[bool, list[str]]:
    """Whether every set filter holds, and which set filters held, in ``CONDITION_ORDER``."""
    checks: list[tuple[str, bool]] = []
    if flt.risk_threshold is not None:
        risk = _number(event, "risk_score", "risk")
        checks.append(("riskThreshold", risk is not None and risk >= flt.risk_threshold))
    if flt.object_types:
        types = _list(event, "object_types", "object_type", "objectTypes", "objectType")
        checks.append(("objectTypes", any(t in flt.object_types for t in types)))
    if flt.cameras:
        cams = _list(event, "camera_id", "cameraId", "camera")
        checks.append(("cameras", any(c in flt.cameras for c in cams)))
    if flt.zones:
        zones = _list(event, "zone_ids", "zone_id", "zoneIds", "zoneId", "zone")
        checks.append(("zones", any(z in flt.zones for z in zones)))
    if flt.min_confidence is not None:
        conf = _number(event, "confidence", "min_confidence")
        checks.append(("minConfidence", conf is not None and conf >= flt.min_confidence))
    if schedule is not None:
        checks.append(("schedule", in_schedule(at or event_time(event), schedule)))
    held = [name for name, ok in checks if ok]
    return len(held) == len(checks), held


def event_fields(event: Mapping[str, Any], flt: EventFilter) -> dict[str, Any]:
    """The event's fields for templates, plus singular object_type / zone_id picked by the filter."""
    fields = dict(event)
    types = _list(event, "object_types", "object_type")
    if "object_type" not in fields and types:
        fields["object_type"] = next((t for t in types if t in flt.object_types), types[0])
    zones = _list(event, "zone_ids", "zone_id")
    if "zone_id" not in fields and zones:
        fields["zone_id"] = next((z for z in zones if z in flt.zones), zones[0])
    return fields


def _labels(fields: Mapping[str, Any]) -> dict[str, str]:
    return {
        k: str(v) for k, v in fields.items() if isinstance(v, _SCALAR) and not isinstance(v, bool)
    }


@dataclass(slots=True)
class EventResult:
    event_id: str
    time: datetime
    matched: bool
    matched_conditions: list[str]
    dedup_key: str | None = None
    would_notify: bool = False
    suppressed_by: SuppressedBy | None = None
    group: str | None = None
    notification: Notification | None = None
    #: the alert (entry) the event belongs to, once its group opened; empty below minEvents
    episode: str = ""
    #: the event opened that alert; ``group_count`` is the matches in the grouping window
    opened: bool = False
    group_count: int = 0
    group_first: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "time": self.time.isoformat(),
            "matched": self.matched,
            "matchedConditions": self.matched_conditions,
            "dedupKey": self.dedup_key,
            "wouldNotify": self.would_notify,
            "suppressedBy": self.suppressed_by,
        }


@dataclass
class EventPipeline:
    """Stateful per rule: feed events in time order, get one ``EventResult`` each."""

    namespace: str
    name: str
    rule: AlertRuleSpec
    config: AlertConfigSpec | None = None
    acked_episodes: frozenset[str] = frozenset()
    _grouper: Grouper = field(init=False)
    _cooldown: dict[str, datetime] = field(init=False, default_factory=dict)
    suppressed: dict[str, int] = field(init=False, default_factory=dict)
    #: alert entries acknowledged while running (``klaxon entries ack``): never re-notified
    acked: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        if self.rule.events is None:
            raise ValueError("not an event rule: spec.events is not set")
        grouping = (self.config or AlertConfigSpec()).grouping
        self.window_s = parse_duration(grouping.window)
        self._grouper = Grouper(self.window_s, grouping.min_events)
        self._group_by = list(grouping.group_by)
        self.policy = RulePolicy.from_specs(self.rule, self.config, self.acked_episodes)
        # Precomputed per rule (the per-event path below is hot: the evaluator's ingestion).
        self._dedup_template = self.rule.notify.dedup_key or "{rule}"
        self._group_template = "|".join(f"{{{g}}}" for g in self._group_by) if self._group_by else None
        self._base_labels = {"alertname": self.name, "namespace": self.namespace, "severity": self.rule.severity}
        # Only silences look at an event's labels, and only at the names their matchers use.
        self._silence_names = tuple(sorted({m.label for s in self.policy.silences for m in s.matchers}))
        self._latest: datetime | None = None  # the latest matched event's time

    def compact(self) -> int:
        """Forget groups quiet for a full window and cooldowns that have run out, ``LATENESS_S``
        before the latest event seen: an event up to that late still finds them, later ones
        act as if absent (as every event in time order would). Returns how many went."""
        latest = self._latest
        if latest is None:
            return 0
        window, cooldown = self.window_s + LATENESS_S, self.policy.cooldown_s + LATENESS_S
        stale = [
            k for k, g in self._grouper.groups.items()
            if g.last_event is None or (latest - g.last_event).total_seconds() >= window
        ]
        for k in stale:
            del self._grouper.groups[k]
        done = [k for k, t in self._cooldown.items() if (latest - t).total_seconds() >= cooldown]
        for k in done:
            del self._cooldown[k]
        return len(stale) + len(done)

    def _gate_labels(self, fields: Mapping[str, Any]) -> dict[str, str]:
        """The labels silences are matched on: the rule's, plus the event fields they name."""
        labels = dict(self._base_labels)
        for name in self._silence_names:
            v = fields.get(name)
            if isinstance(v, _SCALAR) and not isinstance(v, bool):
                labels[name] = str(v)
        return labels

    def process(self, event: Mapping[str, Any], index: int = 0) -> EventResult:
        flt = self.rule.events
        assert flt is not None
        at = event_time(event)
        eid = event_id(event, index)
        matched, held = match_event(event, flt, self.rule.schedule, at)
        if not matched:
            return EventResult(eid, at, False, held)
        if self._latest is None or at > self._latest:
            self._latest = at
        fields = event_fields(event, flt)
        fields.setdefault("rule", self.name)
        key = render_dedup_key(self._dedup_template, fields)
        group = render_dedup_key(self._group_template, fields) if self._group_template else key
        outcome = self._grouper.observe(group, at)
        status = outcome.status
        res = EventResult(
            eid, at, True, held, key, False, None, group, None,
            outcome.episode, status == "opened", outcome.count, outcome.first,
        )
        by: SuppressedBy | None = None
        if status == "belowMinEvents":
            by = "minEvents"
        elif status == "absorbed" and self.policy.cooldown_s <= 0:
            by = "grouping"
        else:
            held_back = gate(self.policy, self._gate_labels(fields) if self._silence_names else self._base_labels, at)
            if held_back is not None:
                by = held_back[0]
            elif outcome.episode in self.policy.acked_episodes or outcome.episode in self.acked:
                by = "ack"
            elif not cooldown_allows(self._cooldown.get(key), at, self.policy.cooldown_s):
                by = "cooldown"
        if by is not None:
            self.suppressed[by] = self.suppressed.get(by, 0) + 1
            res.suppressed_by = by
            return res
        self._cooldown[key] = at
        res.would_notify = True
        res.notification = Notification(
            rule_namespace=self.namespace,
            rule_name=self.name,
            dedup_key=key,
            episode_id=outcome.episode,
            state_from="Inactive",
            state_to="Firing",
            time=at,
            labels=_labels(fields),
            annotations=dict(self.rule.annotations),
            severity=self.rule.severity,
            value=_number(event, "risk_score", "risk"),
            channels=self.policy.channels,
            source="event",
        )
        return res


@dataclass(frozen=True)
class TestReport:
    rule: str
    results: list[EventResult]
    suppressed: dict[str, int]

    @property
    def tested(self) -> int:
        return len(self.results)

    @property
    def matched(self) -> int:
        return sum(r.matched for r in self.results)

    @property
    def would_notify(self) -> int:
        return sum(r.would_notify for r in self.results)

    @property
    def match_rate(self) -> float:
        return self.matched / self.tested if self.tested else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "eventsTested": self.tested,
            "eventsMatched": self.matched,
            "matchRate": round(self.match_rate, 4),
            "wouldNotify": self.would_notify,
            "suppressed": dict(sorted(self.suppressed.items())),
            "results": [r.to_json() for r in self.results],
        }


def run_test_rule(
    namespace: str,
    name: str,
    rule: AlertRuleSpec,
    events: Iterable[Mapping[str, Any]],
    config: AlertConfigSpec | None = None,
) -> TestReport:
    """Run stored events through the live pipeline, in time order (stable for equal times)."""
    indexed = sorted(enumerate(events), key=lambda p: event_time(p[1]))
    pipe = EventPipeline(namespace, name, rule, config)
    results = [pipe.process(ev, i + 1) for i, ev in indexed]
    return TestReport(name, results, dict(pipe.suppressed))
