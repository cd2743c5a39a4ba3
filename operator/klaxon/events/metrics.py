"""The event service's metrics, for dashboards: ingestion, and per rule and dedup key the matches,
notifications and suppressions (keys per rule capped at ``MAX_KEYS_PER_RULE``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MAX_KEYS_PER_RULE = 1000  # metric label values per rule; more keys are counted under OTHER_KEY
OTHER_KEY = "__other__"


class EventMetrics:
    """Counters for dashboards: ingestion, and per rule and key matches / notifications / suppressions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter("klaxon_events_requests", "POST /v1/events by HTTP code.", ["code"], registry=r)
        self.events = Counter(
            "klaxon_events_received",
            "Events received by outcome (accepted, duplicate, rejected).",
            ["outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "klaxon_events_ingest_seconds",
            "Time to answer POST /v1/events.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.queue = Gauge("klaxon_events_queue_events", "Events waiting to be matched.", registry=r)
        labels = ["namespace", "rule", "key"]
        self.matches = Counter("klaxon_event_rule_matches", "Events a rule matched, per dedup key.", labels, registry=r)
        self.notified = Counter(
            "klaxon_event_rule_notifications", "Notifications per rule and dedup key.", labels, registry=r
        )
        self.suppressed = Counter(
            "klaxon_event_rule_suppressed",
            "Matches not notified, per rule, key and reason.",
            [*labels, "reason"],
            registry=r,
        )
        self.entries_open = Gauge(
            "klaxon_event_rule_entries_open", "Open alert entries per rule.", ["namespace", "rule"], registry=r
        )
        self._children: dict[tuple[str, ...], Any] = {}
        self._keys: dict[tuple[str, str], set[str]] = {}

    def _key(self, ns: str, rule: str, key: str) -> str:
        keys = self._keys.setdefault((ns, rule), set())
        if key in keys:
            return key
        if len(keys) >= MAX_KEYS_PER_RULE:
            return OTHER_KEY
        keys.add(key)
        return key

    def count_outcome(self, ns: str, rule: str, dedup_key: str, outcome: str, n: int = 1) -> None:
        """``n`` matches of one rule and key with one outcome: a SuppressedBy reason, "notified" or ""."""
        key = self._key(ns, rule, dedup_key)
        ck = (ns, rule, key, outcome)
        children = self._children.get(ck)
        if children is None:
            children = [self.matches.labels(ns, rule, key)]
            if outcome == "notified":
                children.append(self.notified.labels(ns, rule, key))
            elif outcome:
                children.append(self.suppressed.labels(ns, rule, key, outcome))
            self._children[ck] = children
        for c in children:
            c.inc(n)
