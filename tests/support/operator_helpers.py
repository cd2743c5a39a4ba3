"""Shared fixtures and builders for the operator tests."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio

from klaxon.operator.handlers import make_registry
from klaxon.operator.runtime import Options
from klaxon.operator.settings import PREFIX
from kube_harness import EmulatedCluster, OperatorRunner, client_configuration, wait_for

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"
NC = "klaxon.dev/v1alpha1/notificationchannels"
PR = "monitoring.coreos.com/v1/prometheusrules"
SECRET = "v1/secrets"
DEPLOY = "apps/v1/deployments"
NS = "team-a"


@pytest_asyncio.fixture()
async def operator(
    kube: EmulatedCluster, kopf_runner: Callable[..., OperatorRunner]
) -> AsyncIterator[OperatorRunner]:
    """Klaxon's registry, started against ``kube`` with namespaces team-a and team-b."""
    for ns in (NS, "team-b"):
        kube.create_object("v1/namespaces", {"metadata": {"name": ns}})
    yield await start_operator(kube, kopf_runner)


async def start_operator(kube: EmulatedCluster, kopf_runner: Callable[..., OperatorRunner]) -> OperatorRunner:
    """Klaxon's registry with test timings (no resync, fast debounce and retry), started."""
    options = Options(
        image="klaxon:test",
        kube_configuration=client_configuration(kube),
        resync_seconds=3600,
        debounce_seconds=0.02,
        retry_seconds=0.5,
        evaluation_check_seconds=0.2,
        lease_ttl_seconds=0.1,
    )
    runner = kopf_runner(make_registry(options))
    await runner.start()
    return runner


def rule(
    name: str,
    *,
    config: str | None = None,
    config_ns: str | None = None,
    channels: list[str] | None = None,
    threshold: float = 0.5,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": name},
        "spec": {
            "description": f"rule {name}",
            "severity": "warning",
            "query": {"expr": f'rate(errors_total{{job="{name}"}}[5m])'},
            "condition": {"type": "threshold", "operator": "gt", "threshold": threshold},
            **spec,
        },
    }
    if config or config_ns:
        body["spec"]["configRef"] = {
            "name": config or "default",
            **({"namespace": config_ns} if config_ns else {}),
        }
    if channels is not None:
        body["spec"]["notify"] = {"channels": channels}
    return body


def alert_config(name: str = "default", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "prometheus": {"url": "http://prometheus.monitoring:9090"},
        "prometheusRule": {"labels": {"release": "kps"}},
    }
    return {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertConfig",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


def channel(name: str, secret: str = "creds", key: str = "hook") -> dict[str, Any]:
    return {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "NotificationChannel",
        "metadata": {"name": name},
        "spec": {"type": "slack", "slack": {"webhookUrl": {"name": secret, "key": key}}},
    }


def secret(name: str = "creds", **data: str) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def condition(
    kube: EmulatedCluster, resource: str, name: str, type_: str = "Ready", namespace: str = NS
) -> dict[str, Any]:
    obj = kube.get_object(resource, name, namespace) or {}
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


async def wait_condition(
    kube: EmulatedCluster,
    resource: str,
    name: str,
    status: str,
    reason: str | None = None,
    type_: str = "Ready",
    namespace: str = NS,
    timeout: float = 5.0,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        c = condition(kube, resource, name, type_, namespace)
        if c.get("status") == status and (reason is None or c.get("reason") == reason):
            return c
        return None

    return await wait_for(
        check,
        timeout=timeout,
        message=lambda: (
            f"{resource} {namespace}/{name} {type_}={status} ({reason}); now: "
            f"{(kube.get_object(resource, name, namespace) or {}).get('status')}"
        ),
    )


def bookkeeping_annotations(body: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (body["metadata"].get("annotations") or {}).items() if k.startswith(PREFIX)}


__all__ = [
    "AC",
    "AR",
    "DEPLOY",
    "NC",
    "NS",
    "PR",
    "SECRET",
    "alert_config",
    "bookkeeping_annotations",
    "channel",
    "condition",
    "copy",
    "operator",
    "rule",
    "secret",
    "start_operator",
    "wait_condition",
]
