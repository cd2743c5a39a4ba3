"""The event filter (SEMANTICS §6): one implementation for live ingestion and ``klaxon test-rule``.

``EventMatcher`` is a rule's ``spec.events`` filter and schedule, compiled once. Every set filter
must hold (risk ≥ threshold, a type in types, a camera in cameras, a zone in zones, confidence ≥
min, in schedule); ``matchedConditions`` lists the filters that held, in ``CONDITION_ORDER``.
``RuleIndex`` only narrows which rules to ask: every candidate still runs its matcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from klaxon.api.alertrule import EventFilter
from klaxon.api.common import Schedule
from klaxon.notify.policy import in_schedule

from .model import Facts, event_time, facts_of

CONDITION_ORDER = ("riskThreshold", "objectTypes", "cameras", "zones", "minConfidence", "schedule")


class EventMatcher:
    """One rule's filters and schedule, ready to match events of either form (``Facts``)."""

    __slots__ = ("cameras", "confidence", "risk", "schedule", "size", "types", "zones")

    def __init__(self, flt: EventFilter, schedule: Schedule | None = None) -> None:
        self.risk = flt.risk_threshold
        self.types = frozenset(flt.object_types)
        self.cameras = frozenset(flt.cameras)
        self.zones = frozenset(flt.zones)
        self.confidence = flt.min_confidence
        self.schedule = schedule
        sets = (self.risk is not None, self.types, self.cameras, self.zones, self.confidence is not None, schedule)
        self.size = sum(1 for s in sets if s)

    def match(self, ev: Facts, at: datetime | None, explain: bool = True) -> tuple[bool, list[str]]:
        """Whether every set filter holds, and which held (in ``CONDITION_ORDER``).

        ``explain=False`` stops at the first filter that fails (the list is then incomplete): what
        ingestion wants, where most candidates fail and the schedule is the costly check. ``at`` is
        the event's time, needed only with a schedule.
        """
        held: list[str] = []
        if self.risk is not None:
            risk = ev.risk_score
            if risk is not None and risk >= self.risk:
                held.append("riskThreshold")
            elif not explain:
                return False, held
        if self.types:
            if not self.types.isdisjoint(ev.object_types):
                held.append("objectTypes")
            elif not explain:
                return False, held
        if self.cameras:
            if not self.cameras.isdisjoint(ev.cameras):
                held.append("cameras")
            elif not explain:
                return False, held
        if self.zones:
            if not self.zones.isdisjoint(ev.zone_ids):
                held.append("zones")
            elif not explain:
                return False, held
        if self.confidence is not None:
            conf = ev.confidence
            if conf is not None and conf >= self.confidence:
                held.append("minConfidence")
            elif not explain:
                return False, held
        if self.schedule is not None:
            if at is None:
                raise ValueError("an event needs a time to be matched against a schedule")
            if in_schedule(at, self.schedule):
                held.append("schedule")
            elif not explain:
                return False, held
        return len(held) == self.size, held


def match_event(
    event: Mapping[str, Any], flt: EventFilter, schedule: Schedule | None, at: datetime | None = None
) -> tuple[bool, list[str]]:
    """``EventMatcher(flt, schedule).match`` on a mapping; its time is read only for a schedule."""
    if at is None and schedule is not None:
        at = event_time(event)
    return EventMatcher(flt, schedule).match(facts_of(event), at)


class Matched(Protocol):
    @property
    def matcher(self) -> EventMatcher: ...


R = TypeVar("R", bound=Matched)


class RuleIndex(Generic[R]):
    """Which rules can match an event: rules are filed under their cameras, else zones, else object
    types, else as wildcards. Only a pre-filter: every candidate still runs its matcher."""

    def __init__(self, rules: Iterable[R]) -> None:
        self.by_camera: dict[str, list[R]] = {}
        self.by_zone: dict[str, list[R]] = {}
        self.by_type: dict[str, list[R]] = {}
        self.wild: list[R] = []
        for r in rules:
            m = r.matcher
            if m.cameras:
                for c in m.cameras:
                    self.by_camera.setdefault(c, []).append(r)
            elif m.zones:
                for z in m.zones:
                    self.by_zone.setdefault(z, []).append(r)
            elif m.types:
                for t in m.types:
                    self.by_type.setdefault(t, []).append(r)
            else:
                self.wild.append(r)

    def candidates(self, ev: Facts) -> list[R]:
        found: dict[int, R] = {}
        for c in ev.cameras:
            for r in self.by_camera.get(c, ()):
                found[id(r)] = r
        for z in ev.zone_ids:
            for r in self.by_zone.get(z, ()):
                found[id(r)] = r
        for t in ev.object_types:
            for r in self.by_type.get(t, ()):
                found[id(r)] = r
        if not found:
            return self.wild
        for r in self.wild:
            found[id(r)] = r
        return list(found.values())
