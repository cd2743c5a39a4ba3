"""`klaxon evaluator` wiring: token from the AlertConfig's Secret, rules listed from the API, entries
written to AlertRule status, POST /v1/events next to /metrics and /healthz on the evaluator's port."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.evaluator.ingest import event_service_for
from klaxon.evaluator.server import CycleHealth, EvaluatorMetrics, serve_http
from klaxon.kube.client import KubeClient
from support.events import event, load_example, metric_sum
from support.prometheus import free_port

AR = "klaxon.dev/v1alpha1/alertrules"
NS = "site"
SECRET_TOKEN = "change-me-to-a-long-random-token"


async def test_evaluator_serves_events_with_the_secret_token_and_writes_entries(kube: Any, kube_api: Any) -> None:
    """The whole path through the evaluator's port: long because the cluster objects, the server and
    each observation (401, 202, status, metrics, health) belong to one run."""
    rules, cfg = load_example("14-alertconfig-events.yaml")
    assert cfg is not None
    kube.create_object(
        "v1/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "event-ingest-token"},
            "data": {"token": base64.b64encode(SECRET_TOKEN.encode()).decode()},
        },
        namespace=NS,
    )
    name, spec = rules[0]
    body = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": name},
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    kube.create_object(AR, body, namespace=NS)
    metric_rule = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": "cpu"},
        "spec": {
            "configRef": {"name": "site-security"},
            "query": {"metric": "cpu"},
            "condition": {"operator": "gt", "threshold": 1},
        },
    }
    kube.create_object(AR, metric_rule, namespace=NS)

    metrics = EvaluatorMetrics()
    service = await event_service_for(KubeClient(kube_api), NS, "site-security", cfg, metrics.registry, refresh_s=0.05)
    assert service is not None
    service.status_interval_s = 0.05
    port = free_port()
    runner = await serve_http(metrics, CycleHealth(60), port, host="127.0.0.1", events=service)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if service.rules:
                break
            await asyncio.sleep(0.02)
        assert set(service.rules) == {(NS, name)}  # the metric rule is not an event rule
        t0 = datetime(2025, 1, 18, 12, 0, tzinfo=UTC)
        events = [
            event(i, t0 + timedelta(seconds=20 * i), camera_id="cam1", zone_ids=["perimeter-north"], risk_score=80.0)
            for i in range(3)
        ]
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/events", json=events, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with s.post(
                url + "/v1/events", json=events, headers={"Authorization": f"Bearer {SECRET_TOKEN}"}
            ) as r:
                assert r.status == 202, await r.text()
            await service.drain()
            for _ in range(100):
                obj = kube.get_object(AR, name, NS)
                if (obj.get("status") or {}).get("entriesCount"):
                    break
                await asyncio.sleep(0.02)
            status = kube.get_object(AR, name, NS)["status"]
            assert status["entriesCount"] == 1 and status["entries"][0]["key"] == "cam1|perimeter-north"
            async with s.get(url + "/metrics") as r:
                text = await r.text()
            assert metric_sum(text, "klaxon_event_rule_matches_total", rule=name, key="perimeter-north") == 3
            async with s.get(url + "/healthz") as r:
                assert r.status == 200
    finally:
        await runner.cleanup()


async def test_the_token_secret_and_rule_namespaces_follow_set_config(kube: Any, kube_api: Any) -> None:
    """``EventService.set_config`` (the seam for following AlertConfig edits): the evaluator's service
    reads the token from the Secret the new spec names, and lists rules where the new spec allows."""
    _, cfg = load_example("14-alertconfig-events.yaml")
    assert cfg is not None
    for name, token in (("event-ingest-token", SECRET_TOKEN), ("rotated-token", "a-rotated-token-7c4e2a")):
        data = {"token": base64.b64encode(token.encode()).decode()}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}
        kube.create_object("v1/secrets", secret, namespace=NS)
    rule = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": "lobby"},
        "spec": {"configRef": {"name": "site-security", "namespace": NS}, "events": {"cameras": ["lobby"]}},
    }
    kube.create_object(AR, rule, namespace="other")
    metrics = EvaluatorMetrics()
    service = await event_service_for(KubeClient(kube_api), NS, "site-security", cfg, metrics.registry, refresh_s=0.05)
    assert service is not None
    port = free_port()
    runner = await serve_http(metrics, CycleHealth(60), port, host="127.0.0.1", events=service)
    url = f"http://127.0.0.1:{port}/v1/events"
    body = [event(1, datetime(2025, 1, 18, 12, 0, tzinfo=UTC), camera_id="lobby")]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(url, json=body, headers={"Authorization": f"Bearer {SECRET_TOKEN}"}) as r:
                assert r.status == 202
            edited = AlertConfigSpec.model_validate(
                {
                    **cfg.model_dump(mode="json", by_alias=True, exclude_none=True),
                    "events": {"token": {"name": "rotated-token", "key": "token"}},
                    "allowedNamespaces": [NS, "other"],
                }
            )
            service.set_config(edited)
            async with s.post(url, json=body, headers={"Authorization": f"Bearer {SECRET_TOKEN}"}) as r:
                assert r.status == 401
            async with s.post(url, json=body, headers={"Authorization": "Bearer a-rotated-token-7c4e2a"}) as r:
                assert r.status == 202
        for _ in range(100):
            if ("other", "lobby") in service.rules:
                break
            await asyncio.sleep(0.02)
        assert set(service.rules) == {("other", "lobby")}
    finally:
        await runner.cleanup()
