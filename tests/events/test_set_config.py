"""``EventService.set_config``: an edited AlertConfig applies to a running service, from the next
event or request on, without losing what must survive (cooldowns, acks, open entries)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.events.entries import ENTRIES_ANNOTATION, Record, set_record
from klaxon.events.model import EventIn
from klaxon.events.service import EventService
from klaxon.notify.model import Notification
from support.events import TOKEN, event, make_service, running_service

T0 = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
TOKENS = {"old": TOKEN, "new": "the-rotated-token-5e8a1c"}
RULE = AlertRuleSpec.model_validate(
    {"events": {"objectTypes": ["person"]}, "notify": {"dedupKey": "{camera_id}", "cooldown": "10m"}}
)
SILENCE_B = {"matchers": [{"label": "camera_id", "op": "=", "value": "B"}], "until": "2030-01-01T00:00:00Z"}


def config(**spec: Any) -> AlertConfigSpec:
    return AlertConfigSpec.model_validate(
        {"events": {"token": {"name": "old", "key": "token"}}, "grouping": {"window": "2m"}, **spec}
    )


class Sent:
    def __init__(self) -> None:
        self.notes: list[Notification] = []

    async def handle(self, n: Notification) -> None:
        self.notes.append(n)

    @property
    def keys(self) -> list[str]:
        return [n.dedup_key for n in self.notes]


def evs(*specs: tuple[str, int]) -> list[EventIn]:
    return [
        EventIn.model_validate_json(json.dumps(event(f"{cam}-{s}", T0 + timedelta(seconds=s), camera_id=cam)))
        for cam, s in specs
    ]


def service(cfg: AlertConfigSpec, sent: Sent, **kw: Any) -> EventService:
    svc, _ = make_service(cfg, notifier=sent, status_interval_s=0, **kw)
    svc.set_rule("site", "doors", RULE)
    return svc


async def test_silences_and_default_channels_apply_to_the_next_event() -> None:
    sent = Sent()
    svc = service(config(), sent)
    await svc.process(evs(("A", 0)))
    assert sent.keys == ["A"] and sent.notes[0].channels == ()

    svc.set_config(config(silences=[SILENCE_B], defaults={"channels": ["pager"]}))
    results = await svc.process(evs(("B", 10), ("C", 20)))
    assert [r.suppressed_by for _, r in results] == ["silence", None]
    assert sent.keys == ["A", "C"] and sent.notes[-1].channels == ("pager",)

    svc.set_config(config())  # the silence is lifted: B's next event (its own cooldown never started) notifies
    await svc.process(evs(("B", 30)))
    assert sent.keys == ["A", "C", "B"]


async def test_changed_grouping_restarts_grouping_but_keeps_cooldowns_and_entries() -> None:
    sent = Sent()
    svc = service(config(), sent)
    await svc.process(evs(("A", 0)))  # minEvents 1: opens and notifies
    rule = svc.rules[("site", "doors")]
    entries, grouper = rule.entries, rule.pipeline._grouper

    regrouped = config(grouping={"window": "5m", "minEvents": 2})
    svc.set_config(regrouped)
    assert svc.rules[("site", "doors")] is rule and rule.entries is entries  # changed in place
    assert rule.pipeline._grouper is not grouper and rule.pipeline._grouper.groups == {}
    assert rule.pipeline.window_s == rule.entries.window_s == 300.0
    assert list(rule.entries.open) == ["A"]  # what is open stays open

    results = await svc.process(evs(("A", 60), ("A", 90)))
    assert [r.suppressed_by for _, r in results] == ["minEvents", "cooldown"]  # minEvents 2; cooldown kept
    assert sent.keys == ["A"]
    assert rule.pipeline.config is regrouped


async def test_unchanged_grouping_keeps_the_open_groups() -> None:
    sent = Sent()
    svc = service(config(), sent)
    await svc.process(evs(("A", 0)))
    grouper = svc.rules[("site", "doors")].pipeline._grouper
    svc.set_config(config(silences=[SILENCE_B]))
    assert svc.rules[("site", "doors")].pipeline._grouper is grouper
    results = await svc.process(evs(("A", 30)))
    assert [(r.episode, r.suppressed_by) for _, r in results] == [(f"A@{T0.isoformat()}", "cooldown")]


async def test_entries_settings_apply_to_records_seen_afterwards() -> None:
    sent = Sent()
    svc = service(config(), sent)
    await svc.process(evs(("A", 0)))
    svc.set_config(config(entries={"allowCustomAction": False, "ackMechanisms": ["act"]}))
    first = set_record(None, Record("A", "action", "bob", T0, "Made up"))
    svc.set_rule("site", "doors", RULE, {ENTRIES_ANNOTATION: first})
    assert svc.problems[("site", "doors")] == ["entry A: action 'Made up' is not a preset tag (allowed: none)"]
    svc.set_config(config(entries={"ackMechanisms": ["act"]}))
    second = set_record(first, Record("A", "action", "bob", T0 + timedelta(minutes=1), "Dispatched"))
    svc.set_rule("site", "doors", RULE, {ENTRIES_ANNOTATION: second})
    entry = svc.rules[("site", "doors")].entries.open["A"]
    assert (entry.state, entry.acknowledged_by, entry.action and entry.action.text) == (
        "Acknowledged",
        "bob",
        "Dispatched",
    )


async def test_events_settings_apply_to_the_next_request() -> None:
    reads: list[str] = []

    async def token() -> str:  # reads the Secret the current config names, as the evaluator's does
        selector = svc.config.events.token
        assert selector is not None
        reads.append(selector.name)
        return TOKENS[selector.name]

    registry = CollectorRegistry()
    svc = EventService(config(), token, registry=registry)
    svc.set_rule("site", "doors", RULE)
    async with running_service(svc, registry) as app:
        assert (await app.post([event(i, T0) for i in range(3)]))[0] == 202
        svc.set_config(config(events={"token": {"name": "new", "key": "token"}, "maxBatch": 2}))
        status, body, _ = await app.post([event(i, T0) for i in range(10, 13)], token=TOKENS["new"])
        assert status == 413 and "exceeds maxBatch 2" in body["errors"][0]["problem"]
        assert (await app.post([event(20, T0)], token=TOKEN))[0] == 401  # the old token is no longer taken
        assert (await app.post([event(21, T0)], token=TOKENS["new"]))[0] == 202
        assert reads == ["old", "new"]  # read afresh at once, not after the token's cache time


async def test_the_saved_state_follows_the_new_grouping(tmp_path: Path) -> None:
    path = tmp_path / "events-state.json"
    sent = Sent()
    regrouped = config(grouping={"window": "5m", "minEvents": 2})
    first = service(config(), sent, state_path=path)
    first.set_config(regrouped)
    await first.process(evs(("A", 0), ("A", 10)))
    await first.stop()

    again = Sent()
    second = service(regrouped, again, state_path=path)  # a restart with the edited AlertConfig
    assert second.rules[("site", "doors")].pipeline._grouper.groups["A"].open
    await second.process(evs(("A", 20)))
    assert again.keys == []  # absorbed by the restored open group
    assert service(config(), Sent(), state_path=path).rules[("site", "doors")].pipeline._grouper.groups == {}
