"""The evaluator → notifier adapter (episodes, dedup keys, channels) and the Kubernetes secret reader."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evaluator.helpers import rule
from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.engine import Transition
from klaxon.evaluator import SeriesTransition
from klaxon.evaluator.connect import KubeSecretResolver
from klaxon.evaluator.notifying import NotifyingAdapter
from klaxon.kube.client import KubeClient
from klaxon.kube.notify_io import channel_status_patch
from klaxon.notify import DictSecretResolver, MemoryStatusSink, Notifier, SecretError

BODY = {
    "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
    "condition": {"operator": "gt", "threshold": 80},
    "labels": {"team": "facilities"},
}
LAB = {"room": "lab"}


def tr(t: float, frm: str, to: str, level: str | None = "critical", from_level: str | None = None) -> Transition:
    return Transition(t, frm, to, level, "x", from_level, notify=True)  # type: ignore[arg-type]


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def make(path: Path) -> Notifier:
    return Notifier(path, DictSecretResolver(), MemoryStatusSink())


async def synced(notifier: Notifier, config: AlertConfigSpec) -> NotifyingAdapter:
    """An adapter whose notifier knows the AlertConfig (as the evaluator's start makes it): the one
    these rules use, having no configRef."""
    adapter = NotifyingAdapter(notifier, "default", "default", config)
    await adapter.sync_config(config)
    return adapter


async def test_an_episode_lasts_from_firing_to_inactive_and_survives_a_restart(tmp_path: Path) -> None:
    config = AlertConfigSpec.model_validate({"defaults": {"channels": ["ops"]}})
    ref = rule("hot", BODY)
    n1 = make(tmp_path / "o.sqlite")
    a = await synced(n1, config)

    async def send(adapter: NotifyingAdapter, t: Transition) -> Any:
        out = adapter.to_notification(SeriesTransition(ref, dict(LAB), t, 95.0))
        await adapter.notifier.handle(out)
        return out

    first = await send(a, tr(100, "Inactive", "Firing"))
    # no channels of its own: the notifier sends to defaults.channels as they are at sending time
    assert first.channels == () and first.labels == {"room": "lab", "team": "facilities"}
    assert first.dedup_key == "hot,room=lab" and first.severity == "warning"  # no levels: spec.severity
    assert (await send(a, tr(160, "Firing", "Recovering", None, "critical"))).episode_id == first.episode_id
    assert (await send(a, tr(220, "Recovering", "Firing"))).episode_id == first.episode_id
    n1.outbox.close()

    # A new process: the adapter's memory is gone, the outbox still knows the episode.
    n2 = make(tmp_path / "o.sqlite")
    b = await synced(n2, config)
    assert n2.episode("default", "hot", "hot,room=lab") == first.episode_id
    resolved = await send(b, tr(400, "Recovering", "Inactive", None, "critical"))
    assert resolved.episode_id == first.episode_id and resolved.level == "critical"
    assert n2.episode("default", "hot", "hot,room=lab") is None
    again = await send(b, tr(900, "Pending", "Firing"))
    assert again.episode_id != first.episode_id
    n2.outbox.close()


async def test_a_firing_replayed_after_a_lost_status_write_keeps_its_episode(tmp_path: Path) -> None:
    """Notified, then the process died before the status write: the restarted evaluator comes back
    with the series Pending and fires it again; that is the same episode, not a second alert."""
    config = AlertConfigSpec.model_validate({"defaults": {"channels": ["ops"]}})
    ref = rule("hot", BODY)

    async def send(adapter: NotifyingAdapter, t: Transition, labels: dict[str, str] = LAB) -> Any:
        out = adapter.to_notification(SeriesTransition(ref, dict(labels), t, 95.0))
        await adapter.notifier.handle(out)
        return out

    n1 = make(tmp_path / "o.sqlite")
    first = await send(await synced(n1, config), tr(100, "Inactive", "Firing"))
    assert n1.outbox.counts() == {"pending": 1}
    n1.outbox.close()

    n2 = make(tmp_path / "o.sqlite")
    b = await synced(n2, config)
    replay = await send(b, tr(160, "Pending", "Firing"))
    assert replay.episode_id == first.episode_id
    assert n2.outbox.counts() == {"pending": 1}  # nothing more queued: notified once
    # a series the notifier never saw firing starts its own episode, and is notified
    other = await send(b, tr(160, "Pending", "Firing"), {"room": "hall"})
    assert other.episode_id != first.episode_id and n2.outbox.counts() == {"pending": 2}
    # long after the held episode started, a Firing after a restart is a new episode (the old one
    # ended while nobody watched): it is notified
    n2.outbox.close()
    n3 = make(tmp_path / "o.sqlite")
    c = await synced(n3, config)
    late = await send(c, tr(100 + 3 * 3600, "Pending", "Firing"))
    assert late.episode_id != first.episode_id and n3.outbox.counts() == {"pending": 3}
    n3.outbox.close()
    n2 = make(tmp_path / "o.sqlite")
    b = await synced(n2, config)
    # after the resolution, the next firing of the replayed series is a new episode again
    await send(b, tr(100 + 3 * 3600 + 60, "Firing", "Inactive", None, "critical"))
    again = await send(b, tr(100 + 4 * 3600, "Pending", "Firing"))
    assert again.episode_id not in (first.episode_id, other.episode_id, late.episode_id)
    n2.outbox.close()


@pytest.mark.parametrize("outage", ["Error", "NoData"])
async def test_an_outage_inside_an_episode_neither_splits_nor_orphans_it(tmp_path: Path, outage: str) -> None:
    """Firing → Error/NoData → Firing is one episode, notified once; Firing → Error/NoData →
    Inactive is resolved — also across a restart in the outage, and for a series whose held level
    was not recorded (an engine state written before alarms were held through outages)."""
    config = AlertConfigSpec.model_validate({"defaults": {"channels": ["ops"]}})
    ref = rule("hot", BODY)
    n1 = make(tmp_path / "o.sqlite")
    a = await synced(n1, config)

    async def send(adapter: NotifyingAdapter, t: Transition) -> Any:
        out = adapter.to_notification(SeriesTransition(ref, dict(LAB), t, 95.0))
        return out, await adapter.notifier.handle(out)

    def kinds(n: Notifier) -> list[str]:
        return [r[0] for r in n.outbox.db.execute("SELECT kind FROM outbox ORDER BY id")]

    first, d = await send(a, tr(100, "Inactive", "Firing"))
    assert d.kind == "firing"
    out, _ = await send(a, tr(160, "Firing", outage, "critical", "critical"))
    assert out.episode_id == first.episode_id
    back, d = await send(a, tr(220, outage, "Firing", "critical", "critical"))
    assert back.episode_id == first.episode_id and not d.notify  # no second "firing"
    await send(a, tr(280, "Firing", outage, "critical", "critical"))
    n1.outbox.close()

    n2 = make(tmp_path / "o.sqlite")  # a restart in the middle of the outage
    b = await synced(n2, config)
    resolved, d = await send(b, tr(340, outage, "Inactive", None, "critical"))
    assert resolved.episode_id == first.episode_id and d.kind == "resolved" and d.notify
    assert kinds(n2) == ["firing", "resolved"]
    # the next episode, and an outage recorded without its level: still one episode, still resolved
    nxt, _ = await send(b, tr(400, "Pending", "Firing"))
    assert nxt.episode_id != first.episode_id
    await send(b, tr(460, "Firing", outage, None, "critical"))
    again, d = await send(b, tr(520, outage, "Firing", "critical", None))
    assert again.episode_id == nxt.episode_id and not d.notify
    await send(b, tr(580, "Firing", outage, None, "critical"))
    _, d = await send(b, tr(640, outage, "Inactive", None, None))
    assert d.kind == "resolved" and kinds(n2) == ["firing", "resolved", "firing", "resolved"]
    assert n2.episode("default", "hot", "hot,room=lab") is None
    n2.outbox.close()


async def test_an_episode_that_ended_while_no_evaluator_watched_is_resolved(tmp_path: Path) -> None:
    """The process died after notifying a firing and before its status write; while it was down the
    series went back to normal. The restarted evaluator never sees that series fire or resolve, so
    after the rule's first evaluation ``settle`` resolves what the notifier still holds; a series
    still in alarm is left alone; a held episode that a new one replaces is resolved first."""
    config = AlertConfigSpec.model_validate({"defaults": {"channels": ["ops"]}})
    ref = rule("hot", BODY)
    n1 = make(tmp_path / "o.sqlite")
    a = await synced(n1, config)
    await a.handle(SeriesTransition(ref, dict(LAB), tr(100, "Inactive", "Firing"), 95.0))
    await a.handle(SeriesTransition(ref, {"room": "hall"}, tr(100, "Inactive", "Firing"), 95.0))
    n1.outbox.close()

    # (its clock at the evaluation time: no repeatInterval falls due in between)
    n2 = Notifier(tmp_path / "o.sqlite", DictSecretResolver(), MemoryStatusSink(), clock=lambda: at(200))
    b = await synced(n2, config)
    assert await b.settle(ref, [{"room": "hall"}], 200.0) == 1  # the lab ended unseen; the hall fires on
    kinds = [(r[0], json.loads(r[1])["dedup_key"]) for r in n2.outbox.db.execute(
        "SELECT kind, notification FROM outbox ORDER BY id")]
    assert kinds == [("firing", "hot,room=lab"), ("firing", "hot,room=hall"), ("resolved", "hot,room=lab")]
    assert n2.episode("default", "hot", "hot,room=lab") is None
    assert n2.episode("default", "hot", "hot,room=hall") is not None
    # hours later the hall fires in a new episode (the old one ended unseen): resolved first
    held = n2.episode("default", "hot", "hot,room=hall")
    await b.handle(SeriesTransition(ref, {"room": "hall"}, tr(100 + 3 * 3600, "Pending", "Firing"), 95.0))
    rows = [(r[0], json.loads(r[1])["episode_id"]) for r in n2.outbox.db.execute(
        "SELECT kind, notification FROM outbox WHERE notification LIKE '%hall%' ORDER BY id")]
    assert rows[:2] == [("firing", held), ("resolved", held)] and rows[2][0] == "firing" and rows[2][1] != held
    n2.outbox.close()


async def test_the_evaluator_settles_each_rule_once_after_a_good_evaluation(prometheus_server: Any) -> None:
    from evaluator.helpers import MIN, T0, minutes
    from klaxon.evaluator import Evaluator
    from klaxon.prom.client import PrometheusClient

    prom = prometheus_server(series=[
        ({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 60 * MIN, 95.0)),
        ({"__name__": "temp", "room": "hall"}, minutes(T0, T0 + 60 * MIN, 20.0)),
    ])

    class Settling:
        def __init__(self) -> None:
            self.settled: list[tuple[str, list[dict[str, str]]]] = []

        async def handle(self, notification: SeriesTransition) -> None:
            pass

        async def settle(self, ref: Any, alarms: list[dict[str, str]], t: float) -> None:
            self.settled.append((ref.name, alarms))

    rec = Settling()
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client, notifier=rec)
        ev.set_rules([rule("hot", BODY)])
        await ev.cycle(T0 + 30 * MIN)
        await ev.cycle(T0 + 32 * MIN)
    assert rec.settled == [("hot", [{"room": "lab"}])]

    down = Settling()
    async with PrometheusClient("http://127.0.0.1:9") as client:  # nothing listens: every query fails
        ev = Evaluator(client, notifier=down)
        ev.set_rules([rule("hot", BODY)])
        await ev.cycle(T0 + 30 * MIN)
    assert down.settled == []  # an evaluation that failed says nothing about what ended


async def test_dedup_template_rule_channels_and_forgetting_a_rule(tmp_path: Path) -> None:
    ref = rule("hot", {**BODY, "notify": {"dedupKey": "{rule}:{room}:{team}:{missing}", "channels": ["pager"]}})
    n = make(tmp_path / "o.sqlite")
    a = await synced(n, AlertConfigSpec.model_validate({"defaults": {"channels": ["ops"]}}))
    out = a.to_notification(SeriesTransition(ref, dict(LAB), tr(100, "Inactive", "Firing"), float("nan")))
    assert out.dedup_key == "hot:lab:facilities:null" and out.channels == ("pager",) and out.value is None
    await n.handle(out)
    assert n.episode("default", "hot", out.dedup_key) == out.episode_id
    assert n.forget_rule("default", "hot") == 1  # a deleted rule is neither repeated nor resolved
    assert n.episode("default", "hot", out.dedup_key) is None and await n.tick() == 0
    n.outbox.close()


async def test_sync_hands_over_changed_objects_only(tmp_path: Path) -> None:
    n = make(tmp_path / "o.sqlite")
    a = NotifyingAdapter(n, "default", "main")
    obj = {"metadata": {"namespace": "team", "name": "hot", "annotations": {"klaxon.dev/ack": "e1"}}, "spec": BODY}
    await a.sync_rules([obj, {"metadata": {"namespace": "team", "name": "bad"}, "spec": {"query": 1}}])
    assert set(n.rules) == {("team", "hot")} and n.rules[("team", "hot")][1] == "e1"
    assert a.namespaces == ["default", "team"]
    n.rules.clear()
    await a.sync_rules([obj])  # unchanged: not handed over again
    assert n.rules == {}
    await a.sync_rules([])
    assert a.namespaces == ["default"]
    n.outbox.close()


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def test_kube_secret_resolver_reads_caches_and_names_what_is_missing(kube, kube_api) -> None:
    kube.create_object("v1/secrets", secret("creds", {"token": "tok-value-123"}), namespace="team")
    clock = [0.0]
    r = KubeSecretResolver(KubeClient(kube_api), ttl_s=10, clock=lambda: clock[0])
    assert await r.get("team", "creds", "token") == "tok-value-123"
    assert await r.get("team", "creds", "token") == "tok-value-123" and r.reads == 1
    with pytest.raises(SecretError) as missing_key:
        await r.get("team", "creds", "url")
    assert "team/creds" in str(missing_key.value) and "'url'" in str(missing_key.value)
    assert "tok-value-123" not in str(missing_key.value)
    with pytest.raises(SecretError, match="Secret team/nope not found"):
        await r.get("team", "nope", "token")
    kube.patch_object("v1/secrets", "creds", {"data": {"token": base64.b64encode(b"rotated").decode()}}, "team")
    assert await r.get("team", "creds", "token") == "tok-value-123"  # cached
    clock[0] = 11
    assert await r.get("team", "creds", "token") == "rotated" and r.reads == 3  # creds, nope, creds


def test_channel_status_patch_leaves_conditions_to_the_operator(tmp_path: Path) -> None:
    n = make(tmp_path / "o.sqlite")
    status = n.channel_status("team", "hook")
    patch = channel_status_patch(status)
    queue = {"pending": 0, "oldestPendingTime": None, "failingSince": None, "lastError": ""}
    # no conditions; the queue with explicit nulls, so the merge patch clears what no longer holds
    assert patch == {"status": {"deliveredCount": 0, "failedCount": 0, "queue": queue}}
    n.outbox.close()
