"""End to end on loopback: POST /v1/events → matching → real Notifier → a local webhook receiver.

Events carry their own timestamps and cooldown, grouping and schedules act on event time, so the
midnight and DST cases are deterministic.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.api.channel import NotificationChannelSpec
from klaxon.events.entries import ENTRIES_ANNOTATION, Record, set_record
from klaxon.events.service import EventService
from klaxon.notify import DictSecretResolver, MemoryStatusSink, Notifier
from support.events import (
    Hook,
    Running,
    event,
    load_example,
    make_service,
    metric_sum,
    running_service,
    webhook_receiver,
)

NS = "site"
BERLIN = ZoneInfo("Europe/Berlin")


def berlin(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=BERLIN)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    async with webhook_receiver() as h:
        yield h


@pytest.fixture
async def notifier(tmp_path: Path, hook: Hook) -> AsyncIterator[Notifier]:
    n = Notifier(
        tmp_path / "outbox.sqlite",
        DictSecretResolver(),
        MemoryStatusSink(),
        status_interval_s=0.05,
    )
    await n.start()
    await n.set_config(NS, "default", AlertConfigSpec.model_validate({"allowPrivateChannelAddresses": True}))
    await n.set_channel(
        NS,
        "platform-webhook",
        NotificationChannelSpec.model_validate(
            {
                "type": "webhook",
                "webhook": {"url": hook.url},
                "rateLimit": {"perMinute": 100000},
                "retry": {"initialBackoff": "20ms", "maxBackoff": "200ms", "attemptTimeout": "2s"},
            }
        ),
    )
    yield n
    await n.stop(grace_s=1)


class Statuses:
    def __init__(self) -> None:
        self.by_rule: dict[tuple[str, str], dict[str, Any]] = {}

    async def write(self, ns: str, name: str, status: dict[str, Any]) -> None:
        self.by_rule[(ns, name)] = status


async def serve(
    notifier: Notifier, config: AlertConfigSpec, rules: list[tuple[str, AlertRuleSpec]], statuses: Statuses
) -> tuple[EventService, Any]:
    config = config.model_copy(update={"allow_private_channel_addresses": True})
    service, registry = make_service(config, notifier=notifier, write_status=statuses.write, status_interval_s=0)
    for name, spec in rules:
        service.set_rule(NS, name, spec)
        await notifier.set_rule(NS, name, spec)
        if spec.config_ref is not None:
            await notifier.set_config(NS, spec.config_ref.name, config)
    return service, running_service(service, registry)


async def post_in_order(app: Running, events: list[dict[str, Any]], size: int = 4) -> None:
    events = sorted(events, key=lambda e: e["timestamp"])
    for i in range(0, len(events), size):
        status, body, _ = await app.post(events[i : i + size])
        assert status == 202, body
    await app.settle()


async def delivered(notifier: Notifier, hook: Hook) -> list[dict[str, Any]]:
    await notifier.wait_idle(10)
    return hook.bodies


async def test_night_person_notifies_once_per_cooldown_and_only_inside_its_schedule(
    notifier: Notifier, hook: Hook
) -> None:
    rules, _ = load_example("11-night-person-detection.yaml")
    _, ctx = await serve(notifier, AlertConfigSpec(), rules, Statuses())
    night = [
        event("n1", berlin("2025-01-15T23:00")),  # Wed night: notifies
        event("n2", berlin("2025-01-15T23:05")),  # inside the 10m cooldown
        event("n3", berlin("2025-01-15T23:09:59")),  # still inside
        event("n4", berlin("2025-01-15T23:10")),  # exactly t0 + 10m: a new window
        event("n5", berlin("2025-01-15T23:06"), camera_id="garage"),  # other key, own window
        event("n6", berlin("2025-01-16T05:59")),  # Thu 05:59 belongs to Wednesday's window
        event("n7", berlin("2025-01-16T06:00")),  # end exclusive
        event("n8", berlin("2025-01-16T12:00")),  # daytime
        event("n9", berlin("2025-01-16T21:59")),
        event("low", berlin("2025-01-16T23:30"), confidence=0.5),  # below minConfidence
    ]
    dst = [
        # spring forward 2025-03-30: 03:30Z is 05:30 CEST (inside); 04:30Z is 06:30 CEST (outside,
        # though it would be 05:30 at the winter offset)
        event("s1", datetime(2025, 3, 30, 3, 30, tzinfo=UTC)),
        event("s2", datetime(2025, 3, 30, 4, 30, tzinfo=UTC)),
        # fall back 2025-10-26: 20:30Z on the 25th is 22:30 CEST (inside); 04:30Z is 05:30 CET
        # (inside, though 06:30 at the summer offset); 05:30Z is 06:30 CET (outside)
        event("f1", datetime(2025, 10, 25, 20, 30, tzinfo=UTC)),
        event("f2", datetime(2025, 10, 26, 4, 30, tzinfo=UTC)),
        event("f3", datetime(2025, 10, 26, 5, 30, tzinfo=UTC)),
    ]
    async with ctx as app:
        await post_in_order(app, night + dst)
        bodies = await delivered(notifier, hook)
        times = sorted((b["dedupKey"], b["time"]) for b in bodies)
        assert times == sorted(
            [
                ("front_door:person", berlin("2025-01-15T23:00").isoformat()),
                ("front_door:person", berlin("2025-01-15T23:10").isoformat()),
                ("garage:person", berlin("2025-01-15T23:06").isoformat()),
                ("front_door:person", berlin("2025-01-16T05:59").isoformat()),
                ("front_door:person", datetime(2025, 3, 30, 3, 30, tzinfo=UTC).isoformat()),
                ("front_door:person", datetime(2025, 10, 25, 20, 30, tzinfo=UTC).isoformat()),
                ("front_door:person", datetime(2025, 10, 26, 4, 30, tzinfo=UTC).isoformat()),
            ]
        )
        assert {b["rule"]["name"] for b in bodies} == {"night-person-detection"}
        assert all(b["status"] == "firing" and b["labels"]["camera_id"] for b in bodies)
        text = await app.metrics()
        assert (
            'klaxon_event_rule_suppressed_total{key="front_door:person",namespace="site",'
            'reason="cooldown",rule="night-person-detection"} 2.0' in text
        )
        assert (
            'klaxon_event_rule_notifications_total{key="front_door:person",namespace="site",'
            'rule="night-person-detection"} 6.0' in text
        )


def site_config(now: datetime) -> AlertConfigSpec:
    _, cfg = load_example("14-alertconfig-events.yaml")
    assert cfg is not None
    camera_silence = {
        "matchers": [{"label": "camera_id", "op": "=", "value": "cam3"}],
        "until": (now + timedelta(minutes=10)).isoformat(),
        "reason": "cam3 maintenance",
    }
    return cfg.model_copy(update={"silences": [*cfg.silences, type(cfg.silences[0]).model_validate(camera_silence)]})


def perimeter(i: str, at: datetime, camera: str, zone: str) -> dict[str, Any]:
    return event(i, at, camera_id=camera, zone_ids=[zone], object_types=["person"], risk_score=80.0)


async def test_grouping_opens_an_entry_only_at_min_events_and_silences_suppress(notifier: Notifier, hook: Hook) -> None:
    t0 = datetime(2025, 1, 18, 12, 0, tzinfo=UTC)  # Saturday: whole day in New York
    rules, _ = load_example("14-alertconfig-events.yaml")
    statuses = Statuses()
    service, ctx = await serve(notifier, site_config(t0), rules, statuses)
    s = timedelta(seconds=1)
    async with ctx as app:
        await post_in_order(
            app,
            [perimeter("a1", t0, "cam1", "perimeter-north"), perimeter("a2", t0 + 30 * s, "cam1", "perimeter-north")],
        )
        await service.flush_status()
        assert statuses.by_rule[(NS, "perimeter-intrusion")]["entriesCount"] == 0  # 2 of minEvents 3
        assert await delivered(notifier, hook) == []

        await post_in_order(app, [perimeter("a3", t0 + 60 * s, "cam1", "perimeter-north")])
        await service.flush_status()
        st = statuses.by_rule[(NS, "perimeter-intrusion")]
        assert st["entriesCount"] == 1
        entry = st["entries"][0]
        assert (entry["key"], entry["state"], entry["eventCount"]) == ("cam1|perimeter-north", "Open", 3)
        assert entry["firstEventTime"].startswith("2025-01-18T12:00:00") and entry["lastEventTime"].startswith(
            "2025-01-18T12:01:00"
        )
        bodies = await delivered(notifier, hook)
        assert [b["dedupKey"] for b in bodies] == ["perimeter-north"]

        # region silence (loading-dock, until 2030) and a per-camera silence that expires at t0+10m
        await post_in_order(
            app,
            [perimeter(f"d{i}", t0 + 2 * s + i * 10 * s, "cam2", "loading-dock") for i in range(3)]
            + [perimeter(f"c{i}", t0 + 3 * s + i * 10 * s, "cam3", "perimeter-south") for i in range(3)],
        )
        assert len(await delivered(notifier, hook)) == 1
        await service.flush_status()
        assert statuses.by_rule[(NS, "perimeter-intrusion")]["entriesCount"] == 3  # entries open, but quiet
        later = t0 + timedelta(minutes=11)
        await post_in_order(app, [perimeter(f"e{i}", later + i * 10 * s, "cam3", "perimeter-south") for i in range(3)])
        bodies = await delivered(notifier, hook)
        assert [b["dedupKey"] for b in bodies] == ["perimeter-north", "perimeter-south"]  # the silence expired
        assert bodies[1]["labels"]["camera_id"] == "cam3"
        await service.flush_status()
        st = statuses.by_rule[(NS, "perimeter-intrusion")]
        assert [e["key"] for e in st["entries"]] == ["cam3|perimeter-south"]  # the others closed (2m quiet)
        text = await app.metrics()
        suppressed = "klaxon_event_rule_suppressed_total"
        assert metric_sum(text, suppressed, reason="silence") == 2  # loading-dock, and cam3 before expiry
        assert metric_sum(text, suppressed, reason="silence", key="loading-dock") == 1
        assert metric_sum(text, suppressed, reason="minEvents") == 8  # 2 per opened entry


async def test_acknowledgement_stops_re_notification_for_that_entry_only(notifier: Notifier, hook: Hook) -> None:
    config = AlertConfigSpec.model_validate(
        {
            "grouping": {"window": "2m", "minEvents": 1, "groupBy": ["camera_id"]},
            "entries": {
                "ackMechanisms": ["button", "setRootCause"],
                "allowCustomRootCause": False,
                "presetTags": [{"category": "rootCause", "text": "Animal"}],
            },
        }
    )
    rule = AlertRuleSpec.model_validate(
        {
            "events": {"objectTypes": ["person"]},
            "notify": {"channels": ["platform-webhook"], "dedupKey": "{camera_id}", "cooldown": "10m"},
        }
    )
    statuses = Statuses()
    service, ctx = await serve(notifier, config, [("doors", rule)], statuses)
    t0 = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)

    def minute(m: int, cam: str) -> dict[str, Any]:
        return event(f"{cam}-{m}", t0 + timedelta(minutes=m), camera_id=cam)

    async with ctx as app:
        await post_in_order(app, [minute(m, c) for m in range(0, 4) for c in ("A", "B")])
        assert sorted(b["dedupKey"] for b in await delivered(notifier, hook)) == ["A", "B"]
        annotation = set_record(None, Record("A", "ack", "alice", datetime(2026, 11, 22, 23, 0, tzinfo=UTC)))
        service.set_rule(NS, "doors", rule, {ENTRIES_ANNOTATION: annotation})
        await service.flush_status()
        entries = {e["key"]: e for e in statuses.by_rule[(NS, "doors")]["entries"]}
        assert (entries["A"]["state"], entries["A"]["acknowledgedBy"]) == ("Acknowledged", "alice")
        assert entries["B"]["state"] == "Open"
        # both keep firing every minute (the entries stay open) for 21 more minutes
        await post_in_order(app, [minute(m, c) for m in range(4, 25) for c in ("A", "B")], size=10)
        bodies = await delivered(notifier, hook)
        assert sorted((b["dedupKey"], b["time"][11:16]) for b in bodies) == [
            ("A", "09:00"),
            ("B", "09:00"),
            ("B", "09:10"),
            ("B", "09:20"),
        ]
        # A's entry closes after 2 quiet minutes; a new entry is a new episode and notifies again
        await post_in_order(app, [minute(40, "A")])
        bodies = await delivered(notifier, hook)
        assert [b["time"][11:16] for b in bodies if b["dedupKey"] == "A"] == ["09:00", "09:40"]
        # the old record does not ack the new entry; a root cause from the presets does (setRootCause)
        annotation = set_record(
            annotation, Record("A", "rootCause", "bob", datetime(2026, 11, 22, 23, 5, tzinfo=UTC), "Animal")
        )
        service.set_rule(NS, "doors", rule, {ENTRIES_ANNOTATION: annotation})
        await service.flush_status()
        entry = next(e for e in statuses.by_rule[(NS, "doors")]["entries"] if e["key"] == "A")
        assert (entry["state"], entry["acknowledgedBy"], entry["rootCause"]) == ("Acknowledged", "bob", "Animal")
        assert json.loads(annotation)["A"]["ack"]["by"] == "alice"
