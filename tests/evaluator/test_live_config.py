"""`klaxon evaluator` follows its AlertConfig live (emulated API + real Prometheus + real Notifier and
webhook receivers): each field the evaluator applies without a restart is changed on the AlertConfig
while the process runs, and takes effect within one watch event plus one cycle — keeping the series'
state, the episodes, cooldowns and grouping (no duplicate, no lost notification).

The process is built as ``klaxon evaluator`` builds it; the evaluation clock is injected so that the
backfilled data decides what fires. ``klaxon_evaluator_config_generation`` says which generation
of the AlertConfig is in use, so each step waits for its edit to be applied, not for a guessed time.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from evaluator.helpers import MIN, T0, minutes
from klaxon.cli.evaluator_cmd import options
from klaxon.cli.main import build_parser
from klaxon.evaluator.process import EvaluatorProcess
from klaxon.kube.client import KubeClient
from support.prometheus import free_port
from support.receiver import Receiver

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"
NC = "klaxon.dev/v1alpha1/notificationchannels"
NS = "mon"
KLAXON = "klaxon.dev/v1alpha1"
HOT = [
    ({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 180 * MIN, 95.0)),
    ({"__name__": "temp", "room": "office"}, minutes(T0, T0 + 180 * MIN, 95.0)),
]


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def secret(kube: Any, name: str, data: dict[str, str], ns: str = NS) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: b64(v) for k, v in data.items()},
    }
    kube.create_object("v1/secrets", body, namespace=ns)


def channel(kube: Any, name: str, url: str) -> None:
    body = {
        "apiVersion": KLAXON,
        "kind": "NotificationChannel",
        "metadata": {"name": name},
        "spec": {
            "type": "webhook",
            "webhook": {"url": url},
            "retry": {"initialBackoff": "50ms", "maxBackoff": "200ms"},
            "rateLimit": {"perMinute": 10000},
        },
    }
    kube.create_object(NC, body, namespace=NS)


def rule(kube: Any, name: str, spec: dict[str, Any], ns: str = NS) -> None:
    body = {
        "apiVersion": KLAXON,
        "kind": "AlertRule",
        "metadata": {"name": name},
        "spec": {"configRef": {"name": "main", "namespace": NS}, **spec},
    }
    kube.create_object(AR, body, namespace=ns)


def metric_rule(threshold: float = 80, **extra: Any) -> dict[str, Any]:
    return {
        "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
        "condition": {"operator": "gt", "threshold": threshold},
        "evaluation": {"engine": "evaluator"},
        **extra,
    }


async def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Live:
    """One running evaluator process over the emulated cluster."""

    kube: Any
    process: EvaluatorProcess
    clock: dict[str, float]
    hooks: Receiver
    port: int = 0
    task: asyncio.Task[int] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def generation(self) -> float:
        return float(self.process.metrics.registry.get_sample_value("klaxon_evaluator_config_generation") or 0)

    async def edit(self, spec: dict[str, Any]) -> None:
        """Merge-patch the AlertConfig's spec and wait until the process works with that generation."""
        obj = self.kube.patch_object(AC, "main", {"spec": spec}, NS)
        generation = obj["metadata"]["generation"]
        await until(lambda: self.generation() >= generation, what=f"AlertConfig generation {generation} applied")

    async def step(self, minutes_: float = 1.0) -> None:
        """Advance the evaluation clock and let two cycles run (the first one may have been under way)."""
        self.clock["t"] += minutes_ * MIN
        for _ in range(2):
            cycles = self._cycles()
            await until(lambda c=cycles: self._cycles() > c, what="a cycle")

    def _cycles(self) -> float:
        return float(
            self.process.metrics.registry.get_sample_value("klaxon_evaluator_cycle_duration_seconds_count") or 0
        )

    def status(self, name: str, ns: str = NS) -> dict[str, Any]:
        return (self.kube.get_object(AR, name, ns) or {}).get("status") or {}

    def firing(self, path: str = "") -> list[str]:
        """Rooms of the firing notifications delivered (to ``path``, or anywhere)."""
        out = []
        for h in self.hooks.accepted:
            if path and h.path != path:
                continue
            body = h.json
            if body.get("kind") == "firing":
                out.append(str((body.get("labels") or {}).get("room") or (body.get("labels") or {}).get("zone_id")))
        return out


@pytest.fixture
async def live(kube: Any, kube_api: Any, receiver: Receiver, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Live] = []

    async def start(config: dict[str, Any], events: bool = False) -> Live:
        kube.create_object(
            AC,
            {
                "apiVersion": KLAXON,
                "kind": "AlertConfig",
                "metadata": {"name": "main"},
                "spec": {"allowPrivateChannelAddresses": True, **config},
            },
            namespace=NS,
        )
        port = free_port() if events else 0
        args = build_parser().parse_args(
            [
                "evaluator",
                "--config",
                f"{NS}/main",
                "--tick",
                "0.05",
                "--metrics-port",
                str(port),
                "--state-dir",
                str(tmp_path),
            ]
        )
        clock = {"t": T0 + 60 * MIN}
        process = EvaluatorProcess(options(args), KubeClient(kube_api), clock=lambda: clock["t"])
        lv = Live(kube, process, clock, receiver, port)
        task = lv.task = asyncio.create_task(process.run(lv.stop))
        started.append(lv)
        await until(lambda: lv._cycles() >= 1 or task.done(), what="the first cycle")
        assert not task.done(), task
        return lv

    yield start
    for lv in started:
        lv.stop.set()
        assert lv.task is not None and await asyncio.wait_for(lv.task, 20) == 0


async def test_silence_and_default_channels_change_live_without_a_duplicate(
    kube: Any, live: Any, prometheus_server: Any, receiver: Receiver
) -> None:
    prom = prometheus_server(series=HOT)
    channel(kube, "a", f"{receiver.url}/a")
    channel(kube, "b", f"{receiver.url}/b")
    rule(kube, "hot", metric_rule(threshold=99))  # Inactive until it is lowered below the data
    lv = await live({"prometheus": {"url": prom.url}, "defaults": {"channels": ["a"]}})
    await until(lambda: lv.status("hot").get("state") == "Inactive", what="Inactive")

    until_ = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    await lv.edit({"silences": [{"matchers": [{"label": "room", "value": "lab"}], "until": until_}]})
    kube.patch_object(AR, "hot", {"spec": {"condition": {"threshold": 80}}}, NS)
    await lv.step()
    await until(lambda: lv.status("hot").get("state") == "Firing", what="Firing")
    await until(lambda: lv.firing("/a") == ["office"], what="office notified on channel a")
    await lv.process.notifier.wait_idle(10)  # type: ignore[union-attr]
    assert lv.firing() == ["office"]  # lab is silenced

    # silence gone and the default channel is b now: the still-firing lab instance is notified
    # there; office (already notified in this episode) is not notified again
    await lv.edit({"silences": None, "defaults": {"channels": ["b"]}})
    await lv.step()
    await until(lambda: "lab" in lv.firing("/b"), what="lab notified on channel b once the silence is gone")
    await lv.step()
    await lv.process.notifier.wait_idle(10)  # type: ignore[union-attr]
    assert sorted(lv.firing()) == ["lab", "office"] and lv.firing("/b") == ["lab"]
    # the series kept their state: still one episode each, firing since the first evaluation
    since = {s["labels"]["room"]: s["since"] for s in lv.status("hot")["activeSeries"]}
    assert since["lab"] == since["office"]


async def test_prometheus_endpoint_and_auth_change_live(
    kube: Any, live: Any, prometheus_server: Any, receiver: Receiver
) -> None:
    cool = prometheus_server(series=[(labels, [(t, 50.0) for t, _ in s]) for labels, s in HOT])
    hot = prometheus_server(series=HOT, basic_auth=("klaxon", "pw-1"))
    channel(kube, "a", f"{receiver.url}/a")
    rule(kube, "hot", metric_rule())
    lv = await live({"prometheus": {"url": cool.url}, "defaults": {"channels": ["a"]}})
    await until(lambda: lv.status("hot").get("state") == "Inactive", what="Inactive on the cool Prometheus")

    # the new endpoint's Secret does not exist yet: the old endpoint stays at work meanwhile
    auth = {"basicAuth": {"username": {"name": "prom", "key": "user"}, "password": {"name": "prom", "key": "pass"}}}
    await lv.edit({"prometheus": {"url": hot.url, "auth": auth}})
    await lv.step()
    assert lv.status("hot")["state"] == "Inactive" and lv.status("hot").get("reason") != "QueryError"
    secret(kube, "prom", {"user": "klaxon", "pass": "pw-1"})
    await lv.step()
    await until(lambda: lv.status("hot").get("state") == "Firing", what="Firing on the new endpoint with auth")
    await until(lambda: sorted(lv.firing()) == ["lab", "office"], what="both rooms notified")


async def test_budget_heartbeat_and_default_interval_change_live(kube: Any, live: Any, prometheus_server: Any) -> None:
    prom = prometheus_server(series=HOT)
    for i in range(6):
        rule(kube, f"r{i}", metric_rule(threshold=99))
    lv = await live({"prometheus": {"url": prom.url}, "evaluator": {"statusInterval": "10m"}})
    await until(lambda: all(lv.status(f"r{i}").get("state") == "Inactive" for i in range(6)), what="all written")

    def writes() -> int:
        return len([r for r in kube.requests("PATCH", AR, subresource="status")])

    before = writes()
    await lv.step()
    await lv.step()
    assert writes() == before  # nothing changed, no heartbeat due before 10m

    await lv.edit({"evaluator": {"statusInterval": "1m"}})
    before = writes()
    await lv.step()
    assert writes() - before == 6  # every rule's heartbeat is due under the new statusInterval

    await lv.edit({"evaluator": {"statusInterval": "1m", "maxStatusWritesPerMinute": 2}})
    counts = []
    for _ in range(3):
        before = writes()
        await lv.step()
        counts.append(writes() - before)
    assert max(counts) <= 2 and sum(counts) >= 4, counts  # the new budget: 2 a minute

    # defaults.interval: rules without their own interval are evaluated every 5 minutes now
    await lv.edit(
        {"evaluator": {"statusInterval": "1m", "maxStatusWritesPerMinute": 1000}, "defaults": {"interval": "5m"}}
    )
    queries = lambda: lv.process.metrics.registry.get_sample_value("klaxon_evaluator_queries_total")  # noqa: E731
    sent = []
    for _ in range(6):  # the changed rules were evaluated at once, then every 5 minutes
        before = queries()
        await lv.step()
        sent.append(queries() - before)
    assert sent == [0, 0, 0, 0, 1, 0], sent  # one batched query for the six rules, 5 minutes on


async def test_allowed_namespaces_change_live(kube: Any, live: Any, prometheus_server: Any, receiver: Receiver) -> None:
    prom = prometheus_server(series=HOT)
    for ns in ("mon", "team"):
        kube.create_object("v1/namespaces", {"metadata": {"name": ns}})
    rule(kube, "theirs", metric_rule(notify={"channels": ["a"]}), ns="team")
    channel(kube, "a", f"{receiver.url}/a")
    kube.create_object(NC, {**kube.get_object(NC, "a", NS), "metadata": {"name": "a"}}, namespace="team")
    lv = await live({"prometheus": {"url": prom.url}})
    await lv.step()
    assert lv.status("theirs", "team") == {}  # not allowed: not evaluated

    await lv.edit({"allowedNamespaces": ["team"]})
    await lv.step()
    await until(lambda: lv.status("theirs", "team").get("state") == "Firing", what="the team's rule evaluated")
    await until(lambda: sorted(lv.firing()) == ["lab", "office"], what="its notifications")

    await lv.edit({"allowedNamespaces": None})
    await lv.step()
    last = lv.status("theirs", "team")["lastEvaluation"]["time"]
    for _ in range(2):
        await lv.step()
    assert lv.status("theirs", "team")["lastEvaluation"]["time"] == last  # not evaluated any more
    assert all(r.namespace != "team" for r in lv.process._evaluator.rules)  # type: ignore[union-attr]


async def post(lv: Live, events: list[dict[str, Any]], token: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"http://127.0.0.1:{lv.port}/v1/events", json=events, headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        return resp.status, await resp.json()


def event(i: int, zone: str, at: datetime) -> dict[str, Any]:
    return {"id": f"e{i}", "timestamp": at.isoformat(), "camera_id": "gate", "zone_ids": [zone],
            "object_types": ["person"], "risk_score": 90.0, "confidence": 0.9}  # fmt: skip


async def test_event_settings_change_live_keeping_cooldowns(kube: Any, live: Any, receiver: Receiver) -> None:
    secret(kube, "ingest", {"a": "token-a-1f3e9c", "b": "token-b-7d2a4b"})
    channel(kube, "a", f"{receiver.url}/a")
    rule(kube, "zones", {
        "severity": "critical",
        "events": {"zones": ["north", "south"], "riskThreshold": 50},
        "notify": {"dedupKey": "{zone_id}", "cooldown": "1h"},
    })  # fmt: skip
    rule(kube, "east", {"events": {"zones": ["east"]}, "notify": {"dedupKey": "{zone_id}"}})  # grouping only
    lv = await live({"defaults": {"channels": ["a"]}}, events=True)
    status, body = await post(lv, [event(0, "north", datetime.now(UTC))], "token-a-1f3e9c")
    assert status == 404 and body["errors"][0]["field"] == "spec.events.token"  # ingestion is off

    await lv.edit({"events": {"token": {"name": "ingest", "key": "a"}}})
    await until(lambda: len(lv.process._events.rules) == 2, what="the event rules listed")  # type: ignore[union-attr]
    t0 = datetime.now(UTC)
    batch = [event(1, "north", t0), event(2, "south", t0), event(20, "east", t0)]
    assert (await post(lv, batch, "token-a-1f3e9c"))[0] == 202
    await until(lambda: sorted(lv.firing()) == ["east", "north", "south"], what="the three zones notified")
    await lv.step()
    await until(lambda: lv.status("zones").get("state") == "Firing", what="the event rule's state")
    assert lv.status("zones")["lastEvaluation"]["message"] == "2 open alert entries"
    assert lv.status("zones")["level"] == "critical" and lv.status("zones")["reason"] == "OpenEntries"

    # a silence for north, another token and a smaller batch limit, all at once
    silence = {"matchers": [{"label": "zone_id", "value": "north"}], "until": (t0 + timedelta(days=1)).isoformat()}
    await lv.edit({"events": {"token": {"name": "ingest", "key": "b"}, "maxBatch": 2}, "silences": [silence]})
    assert (await post(lv, [event(3, "north", t0)], "token-a-1f3e9c"))[0] == 401
    assert (await post(lv, [event(i, "south", t0) for i in (4, 5, 6)], "token-b-7d2a4b"))[0] == 413
    # within the cooldown: south stays quiet, north is silenced, and east's open group absorbs the
    # event (its grouping state survived the change: no second alert for the same group)
    t1 = t0 + timedelta(seconds=5)
    assert (await post(lv, [event(7, "north", t1), event(8, "south", t1)], "token-b-7d2a4b"))[0] == 202
    assert (await post(lv, [event(21, "east", t1)], "token-b-7d2a4b"))[0] == 202
    await lv.process._events.drain()  # type: ignore[union-attr]
    await lv.process.notifier.wait_idle(10)  # type: ignore[union-attr]
    assert sorted(lv.firing()) == ["east", "north", "south"]

    # grouping: a new key needs 2 events within the window now
    await lv.edit({"events": {"token": {"name": "ingest", "key": "b"}, "maxBatch": 2}, "silences": [silence],
                   "grouping": {"minEvents": 2, "window": "5m"}})  # fmt: skip
    rule(kube, "west", {"events": {"zones": ["west"]}, "notify": {"dedupKey": "{zone_id}"}})
    await until(lambda: ("mon", "west") in lv.process._events.rules, what="the new rule listed", timeout=25)  # type: ignore[union-attr]
    t2 = t0 + timedelta(seconds=10)
    assert (await post(lv, [event(9, "west", t2)], "token-b-7d2a4b"))[0] == 202
    await lv.process._events.drain()  # type: ignore[union-attr]
    await lv.process.notifier.wait_idle(10)  # type: ignore[union-attr]
    assert "west" not in lv.firing()
    assert (await post(lv, [event(10, "west", t2 + timedelta(seconds=1))], "token-b-7d2a4b"))[0] == 202
    await until(lambda: "west" in lv.firing(), what="west notified after its second event")


async def test_events_posted_while_the_process_starts_are_asked_to_come_back(kube_api: Any) -> None:
    # /v1/events is served before the event service is up: a sender must hear "retry", not
    # "ingestion is off" (which would be a lie for an AlertConfig that sets spec.events.token)
    args = build_parser().parse_args(["evaluator", "--config", f"{NS}/main", "--metrics-port", "0"])
    process = EvaluatorProcess(options(args), KubeClient(kube_api))
    resp = await process._post_events(make_mocked_request("POST", "/v1/events"))
    assert isinstance(resp, web.Response) and resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert resp.text is not None and "starting" in resp.text
