"""Pure notification policy (SEMANTICS §6): dedup keys, gates, cooldown, repeat, ack.

No I/O and no clock: every function takes the time it decides at, so the notifier, the
evaluator and ``klaxon test-rule`` give the same answer on the same input.

Order of checks for a firing instance: disabled, schedule, silencedUntil / silences,
mute time intervals, rule mute, acknowledgement, then cooldown (new episode) or repeatInterval
(same episode, same level). A level change inside an episode (escalation) skips cooldown and
repeatInterval. Resolutions are sent only for an episode that was notified, when sendResolved,
and not while muted or silenced. Cooldown windows are fixed: only a notification opens one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from ..api.alertconfig import AlertConfigSpec, Matcher, Silence
from ..api.alertrule import AlertRuleSpec, Mute
from ..api.common import Schedule, parse_duration
from ..compile.engine_rule import schedule_from_spec
from ..engine.schedule import in_schedule as engine_in_schedule
from ..engine.types import Schedule as EngineSchedule
from .model import Notification

NULL = "null"
# tuples, not X | Y: a union in isinstance is rebuilt on every call (hot path)
_SEQ = (list, tuple)
_SCALAR = (str, int, float)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

SuppressedBy = Literal[
    "disabled",
    "schedule",
    "silence",
    "muteTimeInterval",
    "mute",
    "ack",
    "cooldown",
    "repeatInterval",
    "sendResolved",
    "notNotified",
    "minEvents",
    "grouping",
]
Kind = Literal["firing", "escalation", "repeat", "resolved", "test", "none"]


# -- schedules (SEMANTICS §5, the engine's implementation) -------------------------------

_SCHEDULES: dict[int, tuple[Schedule, EngineSchedule]] = {}


def engine_schedule(schedule: Schedule) -> EngineSchedule:
    """The engine's form of an API schedule, converted once per spec object."""
    hit = _SCHEDULES.get(id(schedule))
    if hit is not None and hit[0] is schedule:
        return hit[1]
    if len(_SCHEDULES) >= 4096:
        _SCHEDULES.clear()
    converted = schedule_from_spec(schedule)
    _SCHEDULES[id(schedule)] = (schedule, converted)  # holding the spec keeps its id from being reused
    return converted


def in_schedule(at: datetime, schedule: Schedule | None) -> bool:
    """Whether the instant ``at`` is inside ``schedule`` (``klaxon.engine.schedule.in_schedule``).

    No schedule means always. A naive ``at`` is read as UTC, like event timestamps.
    """
    if schedule is None:
        return True
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return engine_in_schedule(aware.timestamp(), engine_schedule(schedule))


# -- dedup keys ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _SEQ):
        return ",".join(_text(v) for v in value)
    if isinstance(value, _SCALAR):
        return str(value)
    return NULL  # mappings and objects are never rendered: no way into their internals


def render_dedup_key(template: str, fields: Mapping[str, Any]) -> str:
    """Render ``{name}`` placeholders from ``fields``; missing → ``null``, ``{{``/``}}`` escape.

    Anything else in braces (``{a.b}``, ``{a[0]}``, ``{0}``, ``{a!r}``) is kept literally: the
    formatter looks names up in a flat mapping and nothing more, unlike ``str.format``.
    """

    return "".join(part if is_literal else _text(fields.get(part)) for is_literal, part in _compiled(template))


@lru_cache(maxsize=4096)
def _compiled(template: str) -> tuple[tuple[bool, str], ...]:
    """The template as (literal?, text-or-field-name) parts, parsed once."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        if m.start() > pos:
            parts.append((True, template[pos : m.start()]))
        token, name = m.group(0), m.group(1)
        if token in ("{{", "}}"):
            parts.append((True, token[0]))
        elif not _FIELD_NAME.match(name):
            parts.append((True, token))
        else:
            parts.append((False, name))
        pos = m.end()
    if pos < len(template):
        parts.append((True, template[pos:]))
    return tuple(parts)


def default_dedup_key(n_rule: str, labels: Mapping[str, str]) -> str:
    """The key when a rule sets none: the rule and its labels, stable across label order."""
    return n_rule + "".join(f",{k}={labels[k]}" for k in sorted(labels))


# -- silences -----------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def matcher_matches(matcher: Matcher, labels: Mapping[str, str]) -> bool:
    """Alertmanager semantics: a missing label is the empty string; regexes are fully anchored.

    An invalid regex never matches (validation rejects it before it gets here).
    """
    value = labels.get(matcher.label, "")
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    rx = _regex(matcher.value)
    if rx is None:
        return False
    hit = rx.fullmatch(value) is not None
    return hit if matcher.op == "=~" else not hit


def silence_active(silence: Silence, at: datetime) -> bool:
    return (silence.starts_at is None or silence.starts_at <= at) and at < silence.until


def silenced_by(silences: Iterable[Silence], labels: Mapping[str, str], at: datetime) -> Silence | None:
    """The first active silence all of whose matchers match, if any."""
    for s in silences:
        if silence_active(s, at) and all(matcher_matches(m, labels) for m in s.matchers):
            return s
    return None


def mute_active(mute: Mute | None, at: datetime) -> bool:
    return mute is not None and (mute.until is None or at < mute.until)


def cooldown_allows(window_start: datetime | None, at: datetime, cooldown_s: float) -> bool:
    """Fixed window: suppressed inside ``[t0, t0+C)``, allowed at or after ``t0+C``."""
    return cooldown_s <= 0 or window_start is None or (at - window_start).total_seconds() >= cooldown_s


# -- the per-rule policy and per-instance state ------------------------------------------


@dataclass(frozen=True)
class RulePolicy:
    """Everything the decision needs from the AlertRule, its AlertConfig and its ack annotation."""

    enabled: bool = True
    cooldown_s: float = 0.0
    repeat_interval_s: float = 4 * 3600.0
    send_resolved: bool = True
    mute: Mute | None = None
    schedule: Schedule | None = None
    silences: tuple[Silence, ...] = ()
    silenced_until: datetime | None = None
    mute_time_intervals: tuple[Schedule, ...] = ()
    acked_episodes: frozenset[str] = frozenset()
    acked_before: datetime | None = None
    channels: tuple[str, ...] = ()

    def acks(self, st: KeyState) -> bool:
        if st.episode_id is not None and st.episode_id in self.acked_episodes:
            return True
        return self.acked_before is not None and st.since is not None and st.since <= self.acked_before

    @classmethod
    def from_specs(
        cls,
        rule: AlertRuleSpec | None,
        config: AlertConfigSpec | None,
        acked_episodes: Iterable[str] = (),
        acked_before: datetime | None = None,
    ) -> RulePolicy:
        kw: dict[str, Any] = {"acked_episodes": frozenset(acked_episodes), "acked_before": acked_before}
        if rule is not None:
            kw.update(
                enabled=rule.enabled,
                cooldown_s=parse_duration(rule.notify.cooldown),
                repeat_interval_s=parse_duration(rule.notify.repeat_interval),
                send_resolved=rule.notify.send_resolved,
                mute=rule.mute,
                schedule=rule.schedule if rule.events is None else None,
                channels=tuple(rule.notify.channels),
            )
        if config is not None:
            kw.update(
                silences=tuple(config.silences),
                silenced_until=config.silenced_until,
                mute_time_intervals=tuple(m.schedule for m in config.mute_time_intervals),
            )
            if not kw.get("channels"):
                kw["channels"] = tuple(config.defaults.channels)
        return cls(**kw)


def parse_ack(value: str | None) -> tuple[frozenset[str], datetime | None]:
    """The ack annotation: an RFC 3339 time acks episodes that began at or before it (restart-safe:
    a later episode is never covered); anything else is a comma-separated list of episode ids."""
    if not value or not value.strip():
        return frozenset(), None
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return frozenset(v.strip() for v in value.split(",") if v.strip()), None
    return frozenset(), at if at.tzinfo else at.replace(tzinfo=UTC)


def alert_labels(n: Notification) -> dict[str, str]:
    """The labels silences match on: the instance's, plus alertname, namespace, severity, level."""
    labels = {"alertname": n.rule_name, "namespace": n.rule_namespace, "severity": n.severity}
    if n.level:
        labels["level"] = n.level
    labels.update(n.labels)
    return labels


def gate(
    policy: RulePolicy, labels: Mapping[str, str], at: datetime, *, resolving: bool = False
) -> tuple[SuppressedBy, str] | None:
    """The first gate that holds a notification back, with a reason; None when all are open.

    Resolutions pass the disabled and schedule gates: a receiver should hear that it is over.
    """
    if not resolving:
        if not policy.enabled:
            return "disabled", "rule is disabled"
        if not in_schedule(at, policy.schedule):
            return "schedule", "outside the rule's schedule"
    if policy.silenced_until is not None and at < policy.silenced_until:
        return "silence", f"AlertConfig silenced until {policy.silenced_until.isoformat()}"
    s = silenced_by(policy.silences, labels, at)
    if s is not None:
        return "silence", f"silenced until {s.until.isoformat()}" + (f": {s.reason}" if s.reason else "")
    for sched in policy.mute_time_intervals:
        if in_schedule(at, sched):
            return "muteTimeInterval", "inside a mute time interval"
    if mute_active(policy.mute, at):
        return "mute", "rule is muted" + (
            f": {policy.mute.reason}" if policy.mute and policy.mute.reason else ""
        )
    return None


@dataclass
class KeyState:
    """What the notifier remembers per (rule, dedup key); stored with the outbox."""

    episode_id: str | None = None
    since: datetime | None = None
    firing: bool = False
    level: str | None = None
    notified: bool = False
    notified_level: str | None = None
    last_notified: datetime | None = None
    cooldown_start: datetime | None = None
    suppressed: int = 0
    last: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for k in ("since", "last_notified", "cooldown_start"):
            v = getattr(self, k)
            data[k] = v.isoformat() if v else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyState:
        values = dict(data)
        for k in ("since", "last_notified", "cooldown_start"):
            values[k] = datetime.fromisoformat(values[k]) if values.get(k) else None
        return cls(**values)


@dataclass(frozen=True)
class Decision:
    notify: bool
    kind: Kind
    suppressed_by: SuppressedBy | None = None
    reason: str = ""


def _suppress(st: KeyState, by: SuppressedBy, reason: str, kind: Kind = "firing") -> Decision:
    st.suppressed += 1
    return Decision(False, kind, by, reason)


def _firing(
    st: KeyState, labels: Mapping[str, str], policy: RulePolicy, at: datetime, one_shot: bool
) -> Decision:
    held = gate(policy, labels, at)
    if held is not None:
        return _suppress(st, *held)
    if policy.acks(st):
        return _suppress(st, "ack", "acknowledged for this episode")
    if not st.notified:
        kind: Kind = "firing"
        if not cooldown_allows(st.cooldown_start, at, policy.cooldown_s):
            return _suppress(st, "cooldown", f"inside the cooldown window opened at {st.cooldown_start}")
    elif st.level != st.notified_level:
        kind = "escalation"
    else:
        assert st.last_notified is not None
        if (at - st.last_notified).total_seconds() < policy.repeat_interval_s:
            return _suppress(st, "repeatInterval", "notified less than repeatInterval ago", "repeat")
        kind = "repeat"
    st.notified, st.notified_level, st.last_notified = True, st.level, at
    if cooldown_allows(st.cooldown_start, at, policy.cooldown_s):
        st.cooldown_start = at
    if one_shot:
        st.firing = False
    return Decision(
        True,
        kind,
        None,
        {
            "firing": "new episode",
            "escalation": "level changed",
            "repeat": "still firing after repeatInterval",
        }.get(kind, ""),
    )


def decide(
    state: KeyState, n: Notification, policy: RulePolicy, at: datetime | None = None
) -> tuple[Decision, KeyState]:
    """What to do with one transition, and the instance's new state (``state`` is not changed)."""
    at = at or n.time
    st = dataclasses.replace(state)
    labels = alert_labels(n)
    if n.state_to == "Firing":
        if not st.firing or st.episode_id != n.episode_id:
            st = KeyState(
                episode_id=n.episode_id,
                since=n.time,
                firing=True,
                cooldown_start=state.cooldown_start,
                suppressed=state.suppressed,
            )
        st.level, st.last = n.level, n.to_json()
        return _firing(st, labels, policy, at, one_shot=n.source == "event"), st
    if n.state_to == "Inactive" and state.firing:  # from an alarm, or an outage that held one
        was_notified = state.notified
        st = KeyState(
            episode_id=state.episode_id,
            cooldown_start=state.cooldown_start,
            suppressed=state.suppressed,
            last=n.to_json(),
        )
        if not was_notified:
            return _suppress(st, "notNotified", "the episode was never notified", "resolved"), st
        if not policy.send_resolved:
            return _suppress(st, "sendResolved", "sendResolved is false", "resolved"), st
        held = gate(policy, labels, at, resolving=True)
        if held is not None:
            return _suppress(st, *held, kind="resolved"), st
        return Decision(True, "resolved", None, "resolved"), st
    if st.firing:
        st.level = n.level if n.state_to == "Firing" else st.level
    return Decision(False, "none", None, f"{n.state_from} to {n.state_to} is not notified"), st


def tick(state: KeyState, policy: RulePolicy, at: datetime) -> tuple[Decision, KeyState] | None:
    """Re-check a still-firing instance: notify after unmute / a gate opening, or repeat."""
    if not state.firing or state.last is None:
        return None
    st = dataclasses.replace(state)
    n = Notification.from_json(state.last)
    return _firing(st, alert_labels(n), policy, at, one_shot=False), st
