"""`klaxon evaluator` notifies: emulated Kubernetes API + real Prometheus + a webhook receiver.

An AlertConfig (Prometheus over backfilled data, default channel ``hook``), a webhook
NotificationChannel whose URL and HMAC key come from a Secret, and a threshold AlertRule that
fires on the data. The evaluator runs as `klaxon evaluator --once` (in process) several times
with the same `--state-dir`, each run a fresh process' worth of objects.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from evaluator.helpers import MIN, T0, minutes, run_loop
from klaxon.cli.main import build_parser
from klaxon.evaluator.connect import make_notifier, outbox_path
from klaxon.kube import rbac
from klaxon.kube.client import KubeClient
from klaxon.notify import Notifier
from support.receiver import Receiver

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"
NC = "klaxon.dev/v1alpha1/notificationchannels"
NS = "mon"
HMAC_KEY = "hmac-key-value-4be1d0c2"
NOW = T0 + 60 * MIN


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def setup_cluster(kube: Any, prom_url: str, hook_url: str) -> None:
    kube.create_object(
        "v1/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook-creds"},
            "data": {"url": b64(hook_url), "hmac": b64(HMAC_KEY)},
        },
        namespace=NS,
    )
    kube.create_object(
        AC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertConfig",
            "metadata": {"name": "main"},
            "spec": {"prometheus": {"url": prom_url}, "defaults": {"channels": ["hook"]}},
        },
        namespace=NS,
    )
    kube.create_object(
        NC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "NotificationChannel",
            "metadata": {"name": "hook"},
            "spec": {
                "type": "webhook",
                "webhook": {
                    "urlSecret": {"name": "hook-creds", "key": "url"},
                    "hmacSecret": {"name": "hook-creds", "key": "hmac"},
                },
            },
        },
        namespace=NS,
    )
    # What the operator wrote: the evaluator must leave it alone.
    operator_condition = {
        "type": "Ready",
        "status": "True",
        "reason": "Resolved",
        "message": "every referenced Secret key exists",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    kube.patch_object(NC, "hook", {"status": {"conditions": [operator_condition]}}, NS, subresource="status")
    kube.create_object(
        AR,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertRule",
            "metadata": {"name": "hot-room"},
            "spec": {
                "configRef": {"name": "main"},
                "severity": "critical",
                "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
                "condition": {"operator": "gt", "threshold": 80},
                "evaluation": {"engine": "evaluator"},
                "labels": {"team": "facilities"},
                "annotations": {"summary": "room too hot"},
            },
        },
        namespace=NS,
    )


async def run_once(
    kube_api: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch, now: float, notifier: Notifier | None = None
) -> None:
    args = build_parser().parse_args(
        ["evaluator", "--config", f"{NS}/main", "--once", "--metrics-port", "0", "--state-dir", str(state_dir)]
    )
    done = run_loop(args, kube_api, asyncio.Event(), notifier, clock=lambda: now)
    assert await asyncio.wait_for(done, timeout=60) == 0


_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def api_calls(kube: Any, since: int) -> list[dict[str, list[str]]]:
    """The evaluator's API requests after log entry ``since`` as RBAC rules (group, resource, verb)."""
    out = []
    for r in kube.log[since:]:
        if r.resource is None:
            continue
        parts = r.resource.split("/")
        group = "" if len(parts) == 2 else parts[0]
        resource = parts[-1] + (f"/{r.subresource}" if r.subresource else "")
        verb = _VERBS.get(r.method) or ("get" if r.name else "watch" if r.query.get("watch") else "list")
        out.append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    return out


def firing_hits(rec: Receiver) -> list[dict[str, Any]]:
    return [h.json for h in rec.accepted if h.json.get("kind") == "firing"]


def assert_no_secret_in(where: str, text: str, secrets: list[str]) -> None:
    for value in secrets:
        assert value not in text, f"a Secret value leaked into {where}"


async def test_evaluator_notifies_once_across_restarts_and_honours_test_delivery(
    kube, kube_api, prometheus_server, receiver: Receiver, monkeypatch, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    prom = prometheus_server(
        series=[
            ({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 120 * MIN, 95.0)),
            ({"__name__": "temp", "room": "office"}, minutes(T0, T0 + 120 * MIN, 21.0)),
        ]
    )
    hook_url = f"{receiver.url}/hooks/klaxon-7c1e"
    setup_cluster(kube, prom.url, hook_url)
    secrets = [hook_url, HMAC_KEY, b64(hook_url), b64(HMAC_KEY)]
    state_dir = tmp_path / "state"
    calls: list[dict[str, list[str]]] = []
    cluster_wide: list[str] = []

    async def run(now: float) -> None:
        mark = len(kube.log)
        await run_once(kube_api, state_dir, monkeypatch, now)
        calls.extend(api_calls(kube, mark))
        cluster_wide.extend(f"{r.method} {r.path}" for r in kube.log[mark:] if r.resource and r.namespace != NS)

    # 1. One cycle: the lab series fires → exactly one signed webhook.
    await run(NOW)
    (hit,) = receiver.accepted
    body = hit.json
    assert hit.path == "/hooks/klaxon-7c1e"
    assert body["kind"] == "firing" and body["state"] == {"from": "Inactive", "to": "Firing"}
    assert body["rule"] == {"namespace": NS, "name": "hot-room"}
    assert body["labels"] == {"room": "lab", "team": "facilities"}
    assert body["annotations"]["summary"] == "room too hot"
    assert body["severity"] == "critical" and body["value"] == 95.0
    assert body["dedupKey"] == "hot-room,room=lab" and body["episodeId"]
    expected_sig = "sha256=" + hmac.new(HMAC_KEY.encode(), hit.raw, hashlib.sha256).hexdigest()
    assert hit.headers["X-Klaxon-Signature"] == expected_sig
    assert (state_dir / "outbox.sqlite").exists()

    channel = kube.get_object(NC, "hook", NS)
    assert channel is not None
    st = channel["status"]
    assert st["lastDelivery"]["outcome"] == "Delivered" and st["deliveredCount"] == 1
    assert st.get("failedCount", 0) == 0
    assert [c["message"] for c in st["conditions"]] == ["every referenced Secret key exists"]  # untouched
    rule = kube.get_object(AR, "hot-room", NS)
    assert rule is not None
    assert rule["status"]["state"] == "Firing"
    last = rule["status"]["lastNotification"]
    assert last["outcome"] == "Delivered" and last["channel"] == "hook" and last["time"]

    # 2. Restart (fresh objects, same state dir, the AlertRule status as written): no second firing.
    await run(NOW + 2 * MIN)
    assert len(firing_hits(receiver)) == 1
    assert len(receiver.hits) == 1
    channel = kube.get_object(NC, "hook", NS)
    assert channel is not None and channel["status"]["deliveredCount"] == 1  # the count survived

    # 3. A test delivery on request, once per token.
    kube.patch_object(NC, "hook", {"metadata": {"annotations": {"klaxon.dev/test-delivery": "t1"}}}, NS)
    await run(NOW + 3 * MIN)
    tests = [h for h in receiver.accepted if h.json.get("kind") == "test"]
    assert len(tests) == 1 and tests[0].json["episodeId"] == "t1"
    assert tests[0].headers["X-Klaxon-Signature"].startswith("sha256=")
    channel = kube.get_object(NC, "hook", NS)
    assert channel is not None
    st = channel["status"]
    assert st["lastTestDelivery"]["outcome"] == "Delivered" and "t1" in st["lastTestDelivery"]["message"]
    assert st["deliveredCount"] == 1 and st["lastDelivery"]["outcome"] == "Delivered"
    await run(NOW + 4 * MIN)
    assert len([h for h in receiver.accepted if h.json.get("kind") == "test"]) == 1
    assert len(firing_hits(receiver)) == 1

    # Events tell about the test delivery; no Secret value anywhere the cluster or the logs keep.
    events = kube.list_objects("v1/events", NS)
    test_events = [e for e in events if e.get("reason") == "TestDelivery"]
    assert test_events and test_events[0]["involvedObject"]["kind"] == "NotificationChannel"
    assert test_events[0]["involvedObject"]["name"] == "hook" and test_events[0]["type"] == "Normal"
    assert_no_secret_in("Events", json.dumps(events), secrets)
    assert_no_secret_in("channel status", json.dumps(kube.get_object(NC, "hook", NS)["status"]), secrets)
    assert_no_secret_in("rule status", json.dumps(kube.get_object(AR, "hot-room", NS)["status"]), secrets)
    assert_no_secret_in("logs", caplog.text, secrets)
    assert "delivered firing for hot-room" in caplog.text  # the logs were captured at all

    # Every call the evaluator made is granted by the Role the operator gives it.
    made = {(r["apiGroups"][0], r["resources"][0], r["verbs"][0]) for r in calls}
    assert {
        ("", "secrets", "get"),
        ("", "events", "create"),
        ("klaxon.dev", "notificationchannels/status", "patch"),
        ("klaxon.dev", "alertrules/status", "patch"),
    } <= made
    assert rbac.missing(rbac.EVALUATOR_RULES, calls) == []
    # ... and inside its own namespace: the operator grants a namespaced Role, not a ClusterRole.
    assert cluster_wide == [], f"cluster-wide requests a namespaced Role does not allow: {cluster_wide}"


async def test_a_missing_secret_key_fails_delivery_with_a_named_reason(
    kube, kube_api, prometheus_server, receiver: Receiver, monkeypatch, tmp_path, caplog
) -> None:
    """The Secret lacks the URL key: nothing is sent; retried (the key may yet appear) until
    retry.maxAge, then the give-up names Secret and key, and no value leaks."""
    caplog.set_level(logging.INFO)
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 120 * MIN, 95.0))])
    setup_cluster(kube, prom.url, f"{receiver.url}/hooks/x")
    kube.patch_object("v1/secrets", "hook-creds", {"data": {"url": None}}, NS)
    retry = {"maxAge": "1s", "initialBackoff": "10ms", "maxBackoff": "100ms"}
    kube.patch_object(NC, "hook", {"spec": {"retry": retry}}, NS)
    notifier = make_notifier(KubeClient(kube_api), outbox_path(tmp_path / "state", "0/1"), lambda: NOW)
    await run_once(kube_api, tmp_path / "state", monkeypatch, NOW, notifier)
    assert receiver.hits == []
    channel = kube.get_object(NC, "hook", NS)
    assert channel is not None
    st = channel["status"]
    assert st["lastDelivery"]["outcome"] == "Failed" and st["failedCount"] == 1
    assert "hook-creds" in st["lastDelivery"]["message"] and "'url'" in st["lastDelivery"]["message"]
    failed = [e for e in kube.list_objects("v1/events", NS) if e.get("reason") == "DeliveryFailed"]
    assert failed and failed[0]["type"] == "Warning"
    rule = kube.get_object(AR, "hot-room", NS)
    assert rule is not None and rule["status"]["lastNotification"]["outcome"] == "Failed"
    assert HMAC_KEY not in caplog.text and HMAC_KEY not in json.dumps(kube.list_objects("v1/events", NS))
