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
from datetime import datetime
from typing import Any

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec, EventFilter
from klaxon.api.common import parse_duration
from klaxon.notify.model import Notification
from klaxon.notify.policy import RulePolicy, SuppressedBy, cooldown_allows, gate, render_dedup_key

from .grouping import Grouper, GroupOutcome
from .match import EventMatcher
from .model import event_id, event_time, facts_of, list_field, number_field

# tuples, not X | Y: a union in isinstance is rebuilt on every call (hot path)
_SCALAR = (str, int, float)
#: How late (behind the latest event of a rule) an event may be and still meet the group and
#: cooldown state it would have met in time order (``EventPipeline.compact`` keeps that much).
LATENESS_S = 3600.0


def event_fields(event: Mapping[str, Any], flt: EventFilter) -> dict[str, Any]:
    """The event's fields for templates, plus singular object_type / zone_id picked by the filter."""
    fields = dict(event)
    types = list_field(event, "object_types", "object_type")
    if "object_type" not in fields and types:
        fields["object_type"] = next((t for t in types if t in flt.object_types), types[0])
    zones = list_field(event, "zone_ids", "zone_id")
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
        self.matcher = EventMatcher(self.rule.events, self.rule.schedule)
        # Precomputed per rule (the per-event path below is hot: the evaluator's ingestion).
        self._dedup_template = self.rule.notify.dedup_key or "{rule}"
        self._base_labels = {"alertname": self.name, "namespace": self.namespace, "severity": self.rule.severity}
        self._latest: datetime | None = None  # the latest matched event's time
        self._configure(self.config, regroup=True)

    def _configure(self, config: AlertConfigSpec | None, regroup: bool) -> None:
        """What the AlertConfig decides: grouping (a new ``Grouper`` with ``regroup``) and the policy."""
        self.config = config
        grouping = (config or AlertConfigSpec()).grouping
        if regroup:
            self.window_s = parse_duration(grouping.window)
            self._grouper = Grouper(self.window_s, grouping.min_events)
            group_by = list(grouping.group_by)
            self._group_template = "|".join(f"{{{g}}}" for g in group_by) if group_by else None
        self.policy = RulePolicy.from_specs(self.rule, config, self.acked_episodes)
        # Only silences look at an event's labels, and only at the names their matchers use.
        self._silence_names = tuple(sorted({m.label for s in self.policy.silences for m in s.matchers}))

    def set_config(self, config: AlertConfigSpec) -> bool:
        """Follow a changed AlertConfig: silences, mute time intervals and default channels apply
        to the next event. Grouping restarts only when ``spec.grouping`` changed (True then);
        cooldown windows, acknowledgements and counters are kept either way."""
        old = (self.config or AlertConfigSpec()).grouping
        regroup = config.grouping != old
        self._configure(config, regroup)
        return regroup

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
        """Match one event (a mapping, aliases allowed) and, if it matched, take it on."""
        at = event_time(event)
        eid = event_id(event, index)
        matched, held = self.matcher.match(facts_of(event), at)
        if not matched:
            return EventResult(eid, at, False, held)
        return self.take(event, eid, at, held)

    def take(self, event: Mapping[str, Any], eid: str, at: datetime, held: list[str]) -> EventResult:
        """An event ``self.matcher`` matched: dedup key, grouping, gates, cooldown."""
        if self._latest is None or at > self._latest:
            self._latest = at
        assert self.rule.events is not None
        fields = event_fields(event, self.rule.events)
        fields.setdefault("rule", self.name)
        key = render_dedup_key(self._dedup_template, fields)
        group = render_dedup_key(self._group_template, fields) if self._group_template else key
        outcome = self._grouper.observe(group, at)
        res = EventResult(
            eid, at, True, held, key, False, None, group, None,
            outcome.episode, outcome.status == "opened", outcome.count, outcome.first,
        )
        by = self._held_back(outcome, fields, key, at)
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
            value=number_field(event, "risk_score", "risk"),
            channels=self.policy.channels,
            source="event",
        )
        return res

    def _held_back(
        self, outcome: GroupOutcome, fields: Mapping[str, Any], key: str, at: datetime
    ) -> SuppressedBy | None:
        """Why a matched event does not notify: grouping, a gate, an ack or the cooldown; None: it does."""
        if outcome.status == "belowMinEvents":
            return "minEvents"
        if outcome.status == "absorbed" and self.policy.cooldown_s <= 0:
            return "grouping"
        held_back = gate(self.policy, self._gate_labels(fields) if self._silence_names else self._base_labels, at)
        if held_back is not None:
            return held_back[0]
        if outcome.episode in self.policy.acked_episodes or outcome.episode in self.acked:
            return "ack"
        if not cooldown_allows(self._cooldown.get(key), at, self.policy.cooldown_s):
            return "cooldown"
        return None


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
