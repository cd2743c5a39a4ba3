"""A failing notification channel on a real API server: ``klaxon operator`` and ``klaxon evaluator``
processes, a real Prometheus scraping a live exporter, a webhook receiver that fails and recovers.
The channel's status, its Ready condition and the Events say what happens; nothing is lost."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from e2e.procs import evaluator_process, operator_process
from e2e.scenario import Body, KubeClient, Ref, cond, eventually, install_crds, namespaces
from support.live import METRIC, Exporter
from support.prometheus import prometheus_server  # noqa: F401 - fixture
from support.receiver import ReceiverServer

pytestmark = pytest.mark.e2e

KLAXON = "klaxon.dev/v1alpha1"


async def test_a_failing_channel_says_so_and_delivers_everything_when_back(
    cluster: KubeClient, kubeconfig: str, prometheus_server: Any, tmp_path: Path  # noqa: F811
) -> None:
    await install_crds(cluster)
    ns = f"klaxon-e2e-{secrets.token_hex(3)}"
    exporter = Exporter()
    await exporter.start()
    exporter.values.update({"a": 10.0, "b": 10.0, "c": 10.0})
    prom = prometheus_server(scrape=[exporter.target], scrape_interval="200ms")
    hook = ReceiverServer()
    await hook.start()
    rec = hook.receiver
    rec.default = (503, 0.0)
    channel = Ref(KLAXON, "notificationchannels", ns, "hook")
    objects: list[Body] = [
        {
            "apiVersion": KLAXON,
            "kind": "AlertConfig",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {"prometheus": {"url": prom.url}, "defaults": {"channels": ["hook"], "interval": "1s"}},
        },
        {
            "apiVersion": KLAXON,
            "kind": "NotificationChannel",
            "metadata": {"name": "hook", "namespace": ns},
            "spec": {
                "type": "webhook",
                "webhook": {"url": f"{rec.url}/hooks/e2e"},
                "retry": {"initialBackoff": "100ms", "maxBackoff": "1s", "maxAge": "1h"},
            },
        },
        {
            "apiVersion": KLAXON,
            "kind": "AlertRule",
            "metadata": {"name": "burst", "namespace": ns},
            "spec": {
                "configRef": {"name": "main"},
                "query": {"metric": METRIC, "splitBy": ["series"], "window": "2s", "aggregation": "last"},
                "condition": {"operator": "gt", "threshold": 50},
                "evaluation": {"engine": "evaluator", "interval": "1s"},
            },
        },
    ]

    async def channel_body() -> Body:
        return await cluster.get(channel) or {}

    async def events(reason: str) -> list[Body]:
        found = await cluster.list(Ref("v1", "events", ns))
        return [e for e in found if e.get("reason") == reason]

    try:
        async with namespaces(cluster, ns), operator_process(kubeconfig, [ns], tmp_path):
            for body in objects:
                await cluster.create(body)
            await eventually(lambda: _ready(channel_body, "True"), 60, "channel Ready")
            evaluator = evaluator_process(kubeconfig, f"{ns}/main", (0, 1), tmp_path)
            try:
                exporter.values.update({"a": 95.0, "b": 95.0, "c": 95.0})
                failing = await eventually(lambda: _ready(channel_body, "False"), 90, "Ready=False DeliveryFailing")
                assert failing["reason"] == "DeliveryFailing" and "HTTP 503" in failing["message"]
                queue = (await channel_body())["status"]["queue"]
                assert queue["failingSince"] and queue["lastError"] == "HTTP 503" and queue["pending"] >= 1
                assert "/hooks/e2e" not in str((await channel_body())["status"])
                (event,) = await eventually(lambda: events("DeliveryFailing"), 30, "a DeliveryFailing Event")
                assert event["type"] == "Warning" and event["source"]["component"] == "klaxon-evaluator"
                attempts = len(rec.hits)

                rec.default = (200, 0.0)
                await eventually(lambda: _ready(channel_body, "True"), 60, "Ready again")
                await eventually(lambda: _accepted(rec, 3), 30, "all three firing notifications")
                status = (await channel_body())["status"]
                assert status["queue"]["pending"] == 0 and "failingSince" not in status["queue"]
                assert status["deliveredCount"] == 3 and status.get("failedCount", 0) == 0
                await eventually(lambda: events("DeliveryRecovered"), 30, "a DeliveryRecovered Event")
                assert len(await events("DeliveryFailing")) == 1  # one for the outage, not one per retry
                keys = [h.headers["Idempotency-Key"] for h in rec.accepted]
                assert len(keys) == len(set(keys)) == 3
                print(f"\nreal API server: {attempts} failed attempts while down, 3/3 delivered when back")
            finally:
                evaluator.stop()
    finally:
        await hook.stop()
        await exporter.stop()


async def _ready(get: Any, status: str) -> dict[str, Any] | None:
    c = cond(await get())
    return c if c.get("status") == status else None


async def _accepted(rec: Any, n: int) -> bool:
    return len([h for h in rec.accepted if h.json.get("kind") == "firing"]) >= n
