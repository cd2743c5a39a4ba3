"""Mute, unmute, ack and silences through the Notifier, with a real receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.notify import ACK_ANNOTATION

from .conftest import NS, Receiver, channel, notification

RULE = {
    "query": {"metric": "latency"},
    "condition": {"type": "threshold", "operator": "gt", "threshold": 1},
    "notify": {"channels": ["hook"], "repeatInterval": "1h"},
}


async def setup(make_notifier: Any, receiver: Receiver, **rule: Any) -> Any:
    notifier = await make_notifier()
    await notifier.set_channel(NS, "hook", channel({"type": "webhook", "webhook": {"url": receiver.url}}))
    await notifier.set_rule(NS, "api-latency", AlertRuleSpec.model_validate({**RULE, **rule}))
    return notifier


async def test_mute_suppresses_and_unmute_notifies_once(make_notifier: Any, receiver: Receiver) -> None:
    now = datetime.now(UTC)
    notifier = await setup(make_notifier, receiver, mute={"reason": "deploy"})
    d = await notifier.handle(notification(time=now, channels=()))
    assert d.suppressed_by == "mute"
    await notifier.wait_idle(5)
    assert receiver.hits == []
    await notifier.set_rule(NS, "api-latency", AlertRuleSpec.model_validate(RULE))  # mute removed
    await notifier.wait_idle(5)
    await notifier.set_rule(NS, "api-latency", AlertRuleSpec.model_validate(RULE))
    assert await notifier.tick() == 0
    await notifier.wait_idle(5)
    assert len(receiver.hits) == 1 and receiver.hits[0].json["status"] == "firing"


async def test_repeat_via_tick_and_ack_annotation(make_notifier: Any, receiver: Receiver) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    notifier = await setup(make_notifier, receiver)
    await notifier.handle(notification(time=start, channels=()))
    await notifier.wait_idle(5)
    assert await notifier.tick(now=start + timedelta(minutes=30)) == 0
    assert await notifier.tick(now=start + timedelta(minutes=61)) == 1  # repeatInterval 1h
    await notifier.wait_idle(5)
    assert [h.json["kind"] for h in receiver.hits] == ["firing", "repeat"]
    await notifier.set_rule(
        NS,
        "api-latency",
        AlertRuleSpec.model_validate(RULE),
        {ACK_ANNOTATION: (start + timedelta(minutes=90)).isoformat()},
    )
    assert await notifier.tick(now=start + timedelta(minutes=150)) == 0  # acked episode: quiet
    await notifier.handle(
        notification(
            time=start + timedelta(minutes=151), state_from="Firing", state_to="Inactive", channels=()
        )
    )
    await notifier.handle(notification(time=start + timedelta(minutes=160), episode_id="ep-new", channels=()))
    await notifier.wait_idle(5)
    assert [h.json["kind"] for h in receiver.hits] == ["firing", "repeat", "resolved", "firing"]


async def test_alertconfig_silence(make_notifier: Any, receiver: Receiver) -> None:
    now = datetime.now(UTC)
    notifier = await setup(make_notifier, receiver)
    await notifier.set_config(
        NS,
        "default",
        AlertConfigSpec.model_validate(
            {
                "silences": [
                    {
                        "matchers": [{"label": "service", "op": "=~", "value": "svc-[0-4]"}],
                        "until": (now + timedelta(hours=1)).isoformat(),
                    }
                ]
            }
        ),
    )
    assert (await notifier.handle(notification(0, time=now, channels=()))).suppressed_by == "silence"
    assert (await notifier.handle(notification(7, time=now, channels=()))).notify
    await notifier.wait_idle(5)
    assert [h.json["labels"]["service"] for h in receiver.hits] == ["svc-7"]
