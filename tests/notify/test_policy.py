"""The pure policy: dedup keys, matchers, cooldown, repeat, resolve, mute, ack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from klaxon.api.alertconfig import Matcher, Silence
from klaxon.api.alertrule import Mute
from klaxon.notify import KeyState, RulePolicy, decide, render_dedup_key
from klaxon.notify.policy import matcher_matches, parse_ack, silenced_by, tick

from .conftest import notification

T0 = datetime(2025, 1, 15, 14, 0, tzinfo=UTC)


def test_dedup_key_renders_fields_and_null() -> None:
    assert (
        render_dedup_key("{camera_id}:{object_type}", {"camera_id": "door", "object_type": "person"})
        == "door:person"
    )
    assert render_dedup_key("{camera_id}:{zone}", {"camera_id": "door"}) == "door:null"
    assert render_dedup_key("{{literal}}-{n}", {"n": 3}) == "{literal}-3"


@pytest.mark.parametrize("template", ["{a.__class__}", "{a[0]}", "{0}", "{a!r}", "{a:>10}"])
def test_dedup_key_has_no_attribute_index_or_format_access(template: str) -> None:
    assert render_dedup_key(template, {"a": "x"}) == template


def test_dedup_key_never_renders_objects() -> None:
    assert render_dedup_key("{a}", {"a": {"secret": 1}}) == "null"


@pytest.mark.parametrize(
    ("op", "value", "labels", "expected"),
    [
        ("=", "dock", {"zone_id": "dock"}, True),
        ("=", "", {}, True),  # missing label is ""
        ("!=", "dock", {"zone_id": "gate"}, True),
        ("=~", "dock|gate", {"zone_id": "gate"}, True),
        ("=~", "do", {"zone_id": "dock"}, False),  # fully anchored
        ("!~", "dock.*", {"zone_id": "docker"}, False),
        ("=~", "(", {"zone_id": "("}, False),  # invalid regex never matches
    ],
)
def test_matchers_have_alertmanager_semantics(
    op: str, value: str, labels: dict[str, str], expected: bool
) -> None:
    assert matcher_matches(Matcher(label="zone_id", op=op, value=value), labels) is expected  # type: ignore[arg-type]


def test_silence_time_range() -> None:
    s = Silence(matchers=[Matcher(label="a", value="1")], starts_at=T0, until=T0 + timedelta(hours=1))
    assert silenced_by([s], {"a": "1"}, T0) is s
    assert silenced_by([s], {"a": "1"}, T0 - timedelta(seconds=1)) is None
    assert silenced_by([s], {"a": "1"}, T0 + timedelta(hours=1)) is None
    assert silenced_by([s], {"a": "2"}, T0) is None


def run(policy: RulePolicy, *ns: object) -> list[tuple[bool, str | None, str]]:
    st = KeyState()
    out = []
    for n in ns:
        d, st = decide(st, n, policy)  # type: ignore[arg-type]
        out.append((d.notify, d.suppressed_by, d.kind))
    return out


def fire(minutes: float, episode: str = "e1", level: str = "critical") -> object:
    return notification(time=T0 + timedelta(minutes=minutes), episode_id=episode, level=level)


def resolve(minutes: float, episode: str = "e1") -> object:
    return notification(
        time=T0 + timedelta(minutes=minutes), episode_id=episode, state_from="Recovering", state_to="Inactive"
    )


def test_cooldown_is_a_fixed_window() -> None:
    p = RulePolicy(cooldown_s=600, repeat_interval_s=10**6)
    out = run(
        p,
        fire(0, "e1"),
        resolve(1, "e1"),
        fire(5, "e2"),
        resolve(6, "e2"),
        fire(9.99, "e3"),
        resolve(10, "e3"),
        fire(10, "e4"),
    )
    assert [o[:2] for o in out if o[2] != "resolved"] == [
        (True, None),
        (False, "cooldown"),
        (False, "cooldown"),
        (True, None),
    ]  # t0+C notifies, not extended


def test_repeat_interval_and_escalation() -> None:
    p = RulePolicy(repeat_interval_s=3600)
    out = run(
        p,
        fire(0),
        fire(30),
        fire(59),
        fire(60, level="warning"),
        fire(61, level="warning"),
        fire(120, level="warning"),
    )
    assert out == [
        (True, None, "firing"),
        (False, "repeatInterval", "repeat"),
        (False, "repeatInterval", "repeat"),
        (True, None, "escalation"),
        (False, "repeatInterval", "repeat"),
        (True, None, "repeat"),
    ]


def test_resolved_only_for_notified_episodes_and_when_send_resolved() -> None:
    assert run(RulePolicy(), fire(0), resolve(1))[-1] == (True, None, "resolved")
    assert run(RulePolicy(send_resolved=False), fire(0), resolve(1))[-1] == (
        False,
        "sendResolved",
        "resolved",
    )
    muted = RulePolicy(mute=Mute(until=T0 + timedelta(hours=1)))
    assert run(muted, fire(0), resolve(1))[-1] == (False, "notNotified", "resolved")


def test_mute_then_unmute_notifies_still_firing_instance_once() -> None:
    muted = RulePolicy(mute=Mute(until=T0 + timedelta(minutes=30), reason="maintenance"))
    d, st = decide(KeyState(), fire(0), muted)  # type: ignore[arg-type]
    assert (d.notify, d.suppressed_by) == (False, "mute")
    assert tick(st, muted, T0 + timedelta(minutes=29)) is not None
    assert not tick(st, muted, T0 + timedelta(minutes=29))[0].notify  # type: ignore[index]
    out = tick(st, muted, T0 + timedelta(minutes=30))  # mute over
    assert out is not None and out[0].notify and out[0].kind == "firing"
    again = tick(out[1], muted, T0 + timedelta(minutes=31))
    assert again is not None and not again[0].notify  # once, then repeatInterval applies


def test_ack_stops_renotification_for_the_current_episode_only() -> None:
    p = RulePolicy(repeat_interval_s=60, acked_episodes=frozenset({"e1"}))
    out = run(p, fire(0, "e1"), fire(5, "e1"), resolve(6, "e1"), fire(7, "e2"), fire(9, "e2"))
    assert out == [
        (False, "ack", "firing"),
        (False, "ack", "firing"),
        (False, "notNotified", "resolved"),
        (True, None, "firing"),
        (True, None, "repeat"),
    ]


def test_ack_by_time_covers_episodes_begun_before_it() -> None:
    ids, before = parse_ack("2025-01-15T14:03:00Z")
    p = RulePolicy(repeat_interval_s=60, acked_episodes=ids, acked_before=before)
    st = KeyState()
    d, st = decide(st, fire(0, "e1"), RulePolicy(repeat_interval_s=60))  # type: ignore[arg-type]
    assert d.notify
    d, st = decide(st, fire(5, "e1"), p)  # type: ignore[arg-type]
    assert d.suppressed_by == "ack"
    d, st = decide(st, resolve(6, "e1"), p)  # type: ignore[arg-type]
    assert d.notify  # the resolution still goes out
    d, st = decide(st, fire(7, "e2"), p)  # type: ignore[arg-type]
    assert d.notify  # a new episode after the ack time


def test_gates_in_order() -> None:
    silence = Silence(matchers=[Matcher(label="service", value="svc-0")], until=T0 + timedelta(hours=1))
    assert run(RulePolicy(enabled=False), fire(0))[0][1] == "disabled"
    assert run(RulePolicy(silences=(silence,)), fire(0))[0][1] == "silence"
    assert run(RulePolicy(silenced_until=T0 + timedelta(minutes=5)), fire(0))[0][1] == "silence"
    assert run(RulePolicy(silences=(silence,)), fire(61))[0][:2] == (True, None)
