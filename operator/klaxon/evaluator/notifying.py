"""The evaluator's ``TransitionSink`` on top of ``klaxon.notify.Notifier`` (the one package that sends).

``NotifyingAdapter.handle`` turns an evaluator ``SeriesTransition`` (rule, series labels, engine
``Transition``, value) into a ``klaxon.notify.Notification``:

- labels: the series' splitBy labels, then the rule's ``spec.labels`` (which win, as in Prometheus);
- annotations: the rule's ``spec.annotations`` (+ ``description`` from ``spec.description``);
- level: the transition's level (its previous level for a resolution); severity: the level when
  the rule has levels, else ``spec.severity``;
- dedup key: ``spec.notify.dedupKey`` rendered over ``rule``, ``namespace``, ``severity``, the
  rule's labels and the series labels; default: the rule and its series labels;
- episode id: a new one (hash of rule uid, series labels and the time the series started firing)
  whenever a series enters Firing from outside an episode (Inactive, Pending, or NoData/Error
  that did not interrupt one); escalations, de-escalations, Recovering → Firing, an outage
  (Firing → Error/NoData → Firing or → Recovering → Inactive) and the resolution keep the
  episode — after a restart the notifier's outbox remembers it (``Notifier.episode``); so does
  the first Inactive/Pending → Firing of a series after a restart while the outbox still holds it
  firing (the status write after the notification was lost: no second "new episode" notification).
  A series the notifier holds firing never opens a second episode: it is resolved first — also
  when it ended while no evaluator watched (``settle``, after a rule's first evaluation);
- channels: ``spec.notify.channels``; else empty, and the notifier sends to the AlertConfig's
  ``defaults.channels`` as they are when each notification goes out (a changed default applies to
  repeats, late notifications after a silence and resolutions of episodes already under way).

The evaluator's ``muted`` flag is not needed: the notifier applies ``spec.mute`` itself (and
notifies a still-firing instance when the mute ends).

``sync_config`` / ``sync_rules`` / ``sync_channels`` keep the notifier's view of the AlertConfig,
the AlertRules (spec + ``klaxon.dev/ack``) and the NotificationChannels (spec +
``klaxon.dev/test-delivery``) current; each object is handed over again only when it changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.api.channel import NotificationChannelSpec
from klaxon.api.validation import parse_spec
from klaxon.evaluator.results import RuleRef, SeriesKey, SeriesTransition, series_key
from klaxon.notify import ACK_ANNOTATION, TEST_ANNOTATION, Notification, Notifier, render_dedup_key
from klaxon.notify.policy import default_dedup_key

log = logging.getLogger(__name__)

#: A series coming from one of these states into Firing continues its episode.
_IN_EPISODE = ("Firing", "Recovering")
#: Outage states: one entered from an episode (the transition carries its level) holds it.
_OUTAGE = ("Error", "NoData")
#: States a series restarts in when its last status write was lost (its state before firing).
_REPLAYABLE = ("Inactive", "Pending")
#: How soon after the episode the notifier holds a replayed Firing must come to continue it.
REPLAY_WINDOW_S = 1800.0


def episode_id(uid: str, labels: Mapping[str, str], since: float) -> str:
    """Stable id of one firing episode of one series: rule uid + series labels + start time."""
    raw = json.dumps([uid, sorted(labels.items()), round(since, 3)], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def dedup_key(ref: RuleRef, labels: Mapping[str, str]) -> str:
    spec = ref.spec
    template = spec.notify.dedup_key
    if not template:
        return default_dedup_key(ref.name, labels)
    fields: dict[str, Any] = {"rule": ref.name, "namespace": ref.namespace, "severity": spec.severity}
    fields.update(spec.labels)
    fields.update(labels)
    return render_dedup_key(template, fields)


def _fingerprint(spec: Any, annotation: str | None) -> str:
    return json.dumps([spec, annotation], sort_keys=True, default=str)


class NotifyingAdapter:
    """Implements ``klaxon.evaluator.TransitionSink`` by handing transitions to a ``klaxon.notify.Notifier``."""

    def __init__(
        self,
        notifier: Notifier,
        config_namespace: str,
        config_name: str,
        config: AlertConfigSpec | None = None,
    ) -> None:
        self.notifier = notifier
        self.config_namespace, self.config_name = config_namespace, config_name
        self.config = config
        self._episodes: dict[tuple[str, SeriesKey], str] = {}
        #: series with a transition in this process (the first one after a start may be a replay)
        self._handled: set[tuple[str, SeriesKey]] = set()
        self._rules: dict[tuple[str, str], str] = {}  # (ns, name) -> fingerprint
        self._channels: dict[tuple[str, str], str] = {}
        self.handled = 0

    # -- the world ---------------------------------------------------------------------------
    @property
    def namespaces(self) -> list[str]:
        """Where channels can live: the AlertConfig's namespace and every known rule's."""
        return sorted({self.config_namespace, *(ns for ns, _ in self._rules)})

    async def sync_config(self, config: AlertConfigSpec) -> None:
        self.config = config
        await self.notifier.set_config(self.config_namespace, self.config_name, config)

    async def sync_rules(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Make the notifier's rules the valid AlertRules among ``items`` (all of the AlertConfig);
        a rule that is gone is forgotten: its firing instances are neither repeated nor resolved."""
        present: set[tuple[str, str]] = set()
        for obj in items:
            meta = obj.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            spec, problems = parse_spec("AlertRule", obj.get("spec"))
            if problems or not isinstance(spec, AlertRuleSpec):
                continue
            present.add(key)
            annotations: Mapping[str, str] = meta.get("annotations") or {}
            fp = _fingerprint(obj.get("spec"), annotations.get(ACK_ANNOTATION))
            if self._rules.get(key) == fp:
                continue
            self._rules[key] = fp
            await self.notifier.set_rule(key[0], key[1], spec, annotations)
        for key in set(self._rules) - present:
            del self._rules[key]
            forgotten = self.notifier.forget_rule(*key)
            log.info("AlertRule %s/%s is gone: forgot %d firing instance(s)", key[0], key[1], forgotten)

    async def sync_channels(self, namespace: str, items: Iterable[Mapping[str, Any]]) -> None:
        """Make the notifier's channels in ``namespace`` the valid NotificationChannels in ``items``."""
        present: set[tuple[str, str]] = set()
        for obj in items:
            meta = obj.get("metadata") or {}
            key = (namespace, str(meta.get("name", "")))
            spec, problems = parse_spec("NotificationChannel", obj.get("spec"))
            if problems or not isinstance(spec, NotificationChannelSpec):
                continue
            present.add(key)
            annotations: Mapping[str, str] = meta.get("annotations") or {}
            fp = _fingerprint(obj.get("spec"), annotations.get(TEST_ANNOTATION))
            if self._channels.get(key) == fp:
                continue
            self._channels[key] = fp
            ready = await self.notifier.set_channel(key[0], key[1], spec, annotations)
            if ready.status != "True":
                log.warning("NotificationChannel %s/%s is not ready: %s", key[0], key[1], ready.message)
        for key in [k for k in self._channels if k[0] == namespace and k not in present]:
            del self._channels[key]
            await self.notifier.remove_channel(*key)

    # -- transitions -------------------------------------------------------------------------
    def _episode(self, n: SeriesTransition, dedup: str) -> str:
        ref, tr = n.rule, n.transition
        mem = (ref.uid, series_key(n.labels))
        first_seen = mem not in self._handled
        self._handled.add(mem)
        if tr.to_state == "Firing" and tr.from_state not in _IN_EPISODE:
            held = self.notifier.firing_since(ref.namespace, ref.name, dedup)
            ep = None
            if held is not None and (tr.from_state in _OUTAGE or not first_seen):
                # Back from an outage, or from a Pending this process saw begin after the episode's
                # resolution went missing: the episode the notifier holds goes on (never a second one).
                ep = self._episodes.get(mem) or held[0]
            elif held is not None and first_seen and tr.from_state in _REPLAYABLE:
                # The first transition of this series since the process started, into a Firing the
                # notifier holds, never resolved and saw start shortly before: the same episode once
                # more — the status write that would have recorded it was lost (a crash between send
                # and write). Long after, it is a new episode (the old one ended unseen).
                if 0 <= tr.t - held[1].timestamp() <= REPLAY_WINDOW_S:
                    ep = held[0]
            ep = ep or episode_id(ref.uid, n.labels, tr.t)
        else:
            ep = (
                self._episodes.get(mem)
                or self.notifier.episode(ref.namespace, ref.name, dedup)
                or episode_id(ref.uid, n.labels, tr.t)
            )
        if tr.to_state in _IN_EPISODE or (tr.to_state in _OUTAGE and tr.level is not None):
            self._episodes[mem] = ep
        else:
            self._episodes.pop(mem, None)
        if tr.to_state == "Inactive":
            self._handled.discard(mem)  # over: what comes next is checked against the outbox again
        return ep

    def to_notification(self, n: SeriesTransition) -> Notification:
        """The notify package's form of an evaluator transition (episode bookkeeping included)."""
        ref, tr, spec = n.rule, n.transition, n.rule.spec
        labels = {**n.labels, **spec.labels}
        annotations = dict(spec.annotations)
        if spec.description and "description" not in annotations:
            annotations["description"] = spec.description
        level = tr.level or tr.from_level
        key = dedup_key(ref, n.labels)
        channels = tuple(spec.notify.channels)
        value = n.value if n.value is not None and math.isfinite(n.value) else None
        return Notification(
            rule_namespace=ref.namespace,
            rule_name=ref.name,
            dedup_key=key,
            episode_id=self._episode(n, key),
            state_from=tr.from_state,
            state_to=tr.to_state,
            time=datetime.fromtimestamp(tr.t, UTC),
            labels=labels,
            annotations=annotations,
            level=level,
            severity=level if spec.levels is not None and level else spec.severity,
            value=value,
            channels=channels,
            source="metric",
        )

    async def settle(self, ref: RuleRef, alarms: Iterable[Mapping[str, str]], t: float) -> int:
        """After the rule's first good evaluation in this process: an instance the notifier holds as
        firing whose series is not in alarm any more ended while no evaluator watched (the status
        write that would have let a restarted evaluator see it was lost): resolve it now, so no
        notified episode is left open. Returns how many were resolved."""
        firing = {dedup_key(ref, labels) for labels in alarms}
        resolved = 0
        for episode, last in self.notifier.held_firing(ref.namespace, ref.name):
            if last.dedup_key in firing or last.source != "metric":
                continue
            out = dataclasses.replace(
                last,
                episode_id=episode,
                state_from="Firing",
                state_to="Inactive",
                time=datetime.fromtimestamp(t, UTC),
                value=None,
            )
            decision = await self.notifier.handle(out)
            resolved += 1
            log.info(
                "%s key %s: held firing but not in alarm after a restart, resolved (%s)",
                ref.key, last.dedup_key, decision.kind,
            )
        return resolved

    async def handle(self, notification: SeriesTransition) -> None:
        ref = notification.rule
        if (ref.namespace, ref.name) not in self.notifier.rules:  # not synced yet: its spec is known here
            await self.notifier.set_rule(ref.namespace, ref.name, ref.spec)
        out = self.to_notification(notification)
        if out.state_to == "Firing":
            held = self.notifier.firing_since(ref.namespace, ref.name, out.dedup_key)
            if held is not None and held[0] != out.episode_id:  # it ended unseen: say so before the next
                gone = dataclasses.replace(out, episode_id=held[0], state_from="Firing", state_to="Inactive")
                await self.notifier.handle(dataclasses.replace(gone, value=None))
        decision = await self.notifier.handle(out)
        self.handled += 1
        log.debug(
            "%s %s→%s key %s: %s", ref.key, out.state_from, out.state_to, out.dedup_key, decision.kind
        )
