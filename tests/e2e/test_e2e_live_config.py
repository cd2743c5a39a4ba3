"""An AlertConfig edit reaches a running evaluator, on a real API server: ``klaxon operator`` and
``klaxon evaluator`` processes, a real Prometheus (the AlertConfig's endpoint), a webhook receiver.

Events for two zones arrive all the time through ``POST /v1/events``; a silence for one zone is
added to the AlertConfig (a plain merge patch, as ``kubectl edit`` does): that zone's
notifications stop within 10 s while the other zone's go on; the silence is removed: they resume.
The evaluator is never restarted (same process id throughout).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from e2e.procs import evaluator_process, operator_process
from e2e.scenario import Body, KubeClient, Ref, cond, eventually, install_crds, namespaces
from support.live import METRIC, Exporter
from support.prometheus import prometheus_server  # noqa: F401 - fixture
from support.receiver import ReceiverServer

pytestmark = pytest.mark.e2e

KLAXON = "klaxon.dev/v1alpha1"
TOKEN = "e2e-live-config-token-5c1d"
ZONES = ("north", "south")


async def test_a_zone_silence_added_and_removed_live_stops_and_resumes_that_zone_only(
    cluster: KubeClient,
    kubeconfig: str,
    prometheus_server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    await install_crds(cluster)
    ns = f"klaxon-e2e-{secrets.token_hex(3)}"
    prom = prometheus_server()
    hook = ReceiverServer()
    await hook.start()
    rec = hook.receiver
    config = Ref(KLAXON, "alertconfigs", ns, "main")
    objects: list[Body] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ingest", "namespace": ns},
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
        },
        {
            "apiVersion": KLAXON,
            "kind": "AlertConfig",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {
                "prometheus": {"url": prom.url},
                "defaults": {"channels": ["hook"]},
                "events": {"token": {"name": "ingest", "key": "token"}},
                "allowPrivateChannelAddresses": True,
            },
        },
        {
            "apiVersion": KLAXON,
            "kind": "NotificationChannel",
            "metadata": {"name": "hook", "namespace": ns},
            "spec": {"type": "webhook", "webhook": {"url": f"{rec.url}/zones"}, "rateLimit": {"perMinute": 10000}},
        },
        {
            "apiVersion": KLAXON,
            "kind": "AlertRule",
            "metadata": {"name": "intrusion", "namespace": ns},
            "spec": {
                "configRef": {"name": "main"},
                "severity": "critical",
                "events": {"zones": list(ZONES), "riskThreshold": 50},
                # one alert per zone, re-notified at most every second while events keep coming
                "notify": {"dedupKey": "{zone_id}", "cooldown": "1s"},
            },
        },
    ]
    arrivals: dict[str, list[float]] = {z: [] for z in ZONES}

    def on_accept(hit: Any) -> None:
        body = hit.json
        if body.get("kind") == "firing":
            arrivals[str((body.get("labels") or {}).get("zone_id"))].append(time.monotonic())

    rec.on_accept = on_accept

    try:
        async with namespaces(cluster, ns), operator_process(kubeconfig, [ns], tmp_path):
            for body in objects:
                await cluster.create(body)
            evaluator = evaluator_process(kubeconfig, f"{ns}/main", (0, 1), tmp_path)
            url = f"http://127.0.0.1:{evaluator.ports['metrics']}/v1/events"
            pid = evaluator.popen.pid
            stop = asyncio.Event()
            sender = asyncio.create_task(_send_events(url, stop))
            try:
                await eventually(lambda: _both_arriving(arrivals), 90, "notifications for both zones")
                pods = await eventually(lambda: _pod_template(cluster, ns), 60, "the evaluator Deployment")

                until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
                silence = {"matchers": [{"label": "zone_id", "value": "north"}], "until": until, "reason": "e2e"}
                edited = await cluster.merge_patch(config, {"spec": {"silences": [silence]}})
                patched = time.monotonic()
                metrics_url = f"http://127.0.0.1:{evaluator.ports['metrics']}/metrics"
                generation = edited["metadata"]["generation"]
                await eventually(lambda: _generation_in_use(metrics_url, generation), 10, f"generation {generation}")
                applied_after = time.monotonic() - patched
                await asyncio.sleep(15 - applied_after)
                north_after = [t - patched for t in arrivals["north"] if t > patched]
                south_after = [t - patched for t in arrivals["south"] if t > patched]
                assert not north_after or max(north_after) <= 10, north_after  # stopped within 10 s
                assert len([t for t in south_after if t > 10]) >= 2, south_after  # the other zone goes on
                stopped_after = max(north_after, default=0.0)
                await eventually(lambda: _synced(cluster, config, edited), 30, "the operator saw the silence")
                assert await _pod_template(cluster, ns) == pods  # a live field: the pods stay

                edited = await cluster.merge_patch(config, {"spec": {"silences": None}})
                removed = time.monotonic()

                async def north_again() -> list[float]:
                    return [t for t in arrivals["north"] if t > removed]

                await eventually(north_again, 10, "north notified again within 10 s")
                resumed_after = min(t for t in arrivals["north"] if t > removed) - removed
                await asyncio.sleep(3)
                assert len([t for t in arrivals["north"] if t > removed]) >= 2  # and goes on
                assert evaluator.alive() and evaluator.popen.pid == pid  # never restarted
                rule = await cluster.get(Ref(KLAXON, "alertrules", ns, "intrusion")) or {}
                assert (rule.get("status") or {}).get("state") == "Firing"  # an event rule shows a state
                await eventually(lambda: _synced(cluster, config, edited), 30, "the operator saw the removal")
                assert await _pod_template(cluster, ns) == pods

                # what needs new pods rolls the Deployment: its pod template's hash changes
                resources = {"requests": {"cpu": "60m", "memory": "128Mi"}}
                await cluster.merge_patch(config, {"spec": {"evaluator": {"resources": resources}}})

                async def rolled() -> bool:
                    now = await _pod_template(cluster, ns)
                    return now is not None and now[0] != pods[0]

                await eventually(rolled, 30, "the pod template hash changed for new resources")
                print(
                    f"\nreal API server: the silence was in use {applied_after:.1f}s after the patch; "
                    f"{len(north_after)} north notification(s) after the patch (last at {stopped_after:.1f}s), "
                    f"{len(south_after)} south; north resumed {resumed_after:.1f}s after the silence was removed"
                )
            finally:
                stop.set()
                await sender
                evaluator.stop()
    finally:
        await hook.stop()


async def _pod_template(cluster: KubeClient, ns: str) -> tuple[str, int] | None:
    """The evaluator Deployment's pod-config-hash and generation (None: not there yet)."""
    dep = await cluster.get(Ref("apps/v1", "deployments", ns, "klaxon-eval-main-0"))
    if dep is None:
        return None
    annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
    return str(annotations.get("klaxon.dev/pod-config-hash")), int(dep["metadata"]["generation"])


async def _synced(cluster: KubeClient, config: Ref, edited: Body) -> bool:
    """The operator reconciled the AlertConfig at (or after) the generation of ``edited``."""
    body = await cluster.get(config) or {}
    synced = cond(body, "Synced")
    return synced.get("status") == "True" and synced.get("observedGeneration", 0) >= edited["metadata"]["generation"]


async def test_prometheus_endpoint_auth_channels_and_budget_change_live_without_a_duplicate_or_a_loss(
    cluster: KubeClient,
    kubeconfig: str,
    prometheus_server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A threshold rule fires on Prometheus A; the AlertConfig then names Prometheus B (basic auth
    from a Secret), another default channel, another statusInterval and write budget, all in one
    edit. A is stopped once the edit is in use: the rule goes on being evaluated (on B), the alert
    under way is not notified again, a new series that crosses afterwards is notified once on the
    new channel, and the resolution of the first one arrives once."""
    await install_crds(cluster)
    ns = f"klaxon-e2e-{secrets.token_hex(3)}"
    exporter = Exporter()
    await exporter.start()
    exporter.values.update({"a": 95.0, "b": 10.0})
    prom_a = prometheus_server(scrape=[exporter.target], scrape_interval="200ms")
    prom_b = prometheus_server(scrape=[exporter.target], scrape_interval="200ms", basic_auth=("klaxon", "pw-b-41c9"))
    hook = ReceiverServer()
    await hook.start()
    rec = hook.receiver
    config = Ref(KLAXON, "alertconfigs", ns, "main")
    rule = Ref(KLAXON, "alertrules", ns, "hot")
    objects: list[Body] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prom-b", "namespace": ns},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in (("user", "klaxon"), ("pass", "pw-b-41c9"))},
        },
        {
            "apiVersion": KLAXON,
            "kind": "AlertConfig",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {
                "prometheus": {"url": prom_a.url},
                "defaults": {"channels": ["one"], "interval": "1s"},
                "allowPrivateChannelAddresses": True,
            },
        },
        *(
            {
                "apiVersion": KLAXON,
                "kind": "NotificationChannel",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": "webhook", "webhook": {"url": f"{rec.url}/{name}"}},
            }
            for name in ("one", "two")
        ),
        {
            "apiVersion": KLAXON,
            "kind": "AlertRule",
            "metadata": {"name": "hot", "namespace": ns},
            "spec": {
                "configRef": {"name": "main"},
                "query": {"metric": METRIC, "splitBy": ["series"], "window": "2s", "aggregation": "last"},
                "condition": {"operator": "gt", "threshold": 50},
                "evaluation": {"engine": "evaluator", "interval": "1s"},
            },
        },
    ]

    def sent(kind: str) -> list[tuple[str, str]]:
        """(series, path) of every accepted notification of ``kind``."""
        hits = [h for h in rec.accepted if h.json.get("kind") == kind]
        return [(str((h.json.get("labels") or {}).get("series")), h.path) for h in hits]

    try:
        async with namespaces(cluster, ns), operator_process(kubeconfig, [ns], tmp_path):
            for body in objects:
                await cluster.create(body)
            evaluator = evaluator_process(kubeconfig, f"{ns}/main", (0, 1), tmp_path)
            pid = evaluator.popen.pid
            metrics_url = f"http://127.0.0.1:{evaluator.ports['metrics']}/metrics"
            try:
                await eventually(lambda: _truthy(sent("firing") == [("a", "/one")]), 90, "a notified on A")

                auth = {"basicAuth": {"username": {"name": "prom-b", "key": "user"},
                                      "password": {"name": "prom-b", "key": "pass"}}}  # fmt: skip
                edited = await cluster.merge_patch(config, {"spec": {
                    "prometheus": {"url": prom_b.url, "auth": auth},
                    "defaults": {"channels": ["two"]},
                    "evaluator": {"statusInterval": "30s", "maxStatusWritesPerMinute": 600},
                }})  # fmt: skip
                patched = time.monotonic()
                generation = edited["metadata"]["generation"]
                await eventually(lambda: _generation_in_use(metrics_url, generation), 20, f"generation {generation}")
                applied_after = time.monotonic() - patched
                errors = await _metric(metrics_url, "klaxon_evaluator_query_errors_total")
                assert errors >= 0
                prom_a.stop()  # from here on, a cycle still asking A would fail
                queries_b = _queries(prom_b)
                await eventually(lambda: _truthy(_queries(prom_b) >= queries_b + 3), 20, "cycles answered by B")

                exporter.values["b"] = 95.0
                await eventually(lambda: _truthy(("b", "/two") in sent("firing")), 30, "b notified on the new channel")
                exporter.values["a"] = 10.0
                await eventually(lambda: _truthy(("a", "/two") in sent("resolved")), 30, "a resolved (new channel)")
                await asyncio.sleep(5)  # anything owed twice would come now

                assert sorted(sent("firing")) == [("a", "/one"), ("b", "/two")], sent("firing")  # none twice
                assert sent("resolved") == [("a", "/two")], sent("resolved")
                assert await _metric(metrics_url, "klaxon_evaluator_query_errors_total") == errors  # none on A
                status = (await cluster.get(rule) or {}).get("status") or {}
                assert status.get("state") == "Firing" and status.get("reason") != "QueryError", status
                assert evaluator.alive() and evaluator.popen.pid == pid  # never restarted
                assert "Traceback" not in evaluator.output(), evaluator.output()[-4000:]
                print(f"\nreal API server: the edit was in use {applied_after:.1f}s after the patch; "
                      f"firing a once (before), b once (after, new channel), a resolved once")  # fmt: skip
            except BaseException:
                print(evaluator.output()[-6000:])
                raise
            finally:
                evaluator.stop()
    finally:
        await hook.stop()
        await exporter.stop()


async def _truthy(value: bool) -> bool:
    return value


async def _metric(metrics_url: str, name: str) -> float:
    """The value of an unlabelled sample on the evaluator's /metrics (-1: not there)."""
    async with aiohttp.ClientSession() as s, s.get(metrics_url) as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return -1.0


async def _generation_in_use(metrics_url: str, generation: int) -> bool:
    return await _metric(metrics_url, "klaxon_evaluator_config_generation") >= generation


def _queries(prom: Any) -> float:
    return float(prom.http_requests("/api/v1/query") + prom.http_requests("/api/v1/query_range"))


async def _both_arriving(arrivals: dict[str, list[float]]) -> bool:
    now = time.monotonic()
    return all(any(now - t < 5 for t in arrivals[z]) for z in ZONES)


async def _send_events(url: str, stop: asyncio.Event) -> None:
    """Two events (one per zone) every 0.3 s until ``stop``; a refused batch (standby, not yet
    listening) is retried with the next one."""
    i = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while not stop.is_set():
            now = datetime.now(UTC).isoformat()
            batch = [
                {"id": f"ev-{i}-{z}", "timestamp": now, "camera_id": "gate", "zone_ids": [z],
                 "object_types": ["person"], "risk_score": 90.0, "confidence": 0.9}
                for z in ZONES
            ]  # fmt: skip
            i += 1
            try:
                async with session.post(url, json=batch, headers=headers) as resp:
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.3)
