"""AlertRule reads and status writes for the evaluator (the `/status` subresource, merge-patch)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient

GROUP = "klaxon.dev"
VERSION = "v1alpha1"
RULES = "alertrules"
CONFIGS = "alertconfigs"
DEFAULT_CONFIG = "default"
MERGE_PATCH = "application/merge-patch+json"


async def patch_rule_status(api_client: ApiClient, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Merge-patch `status` of one AlertRule (lists such as activeSeries are replaced whole)."""
    api = client.CustomObjectsApi(api_client)
    await api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        RULES,
        name,
        {"status": status},
        _content_type=MERGE_PATCH,  # type: ignore[call-arg]
    )


def config_of(rule: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of the AlertConfig a rule refers to: `spec.configRef`, default "default" in its namespace."""
    meta = rule.get("metadata") or {}
    ref = (rule.get("spec") or {}).get("configRef") or {}
    return ref.get("namespace") or meta.get("namespace", ""), ref.get("name") or DEFAULT_CONFIG


def belongs_to(rule: Mapping[str, Any], config_namespace: str, config_name: str) -> bool:
    return config_of(rule) == (config_namespace, config_name)


async def get_config(api_client: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    api = client.CustomObjectsApi(api_client)
    obj: dict[str, Any] = await api.get_namespaced_custom_object(GROUP, VERSION, namespace, CONFIGS, name)
    return obj


async def list_rules(
    api_client: ApiClient, config_namespace: str, config_name: str
) -> tuple[list[dict[str, Any]], str]:
    """All AlertRules (every namespace) that refer to the AlertConfig, and the list's resourceVersion."""
    api = client.CustomObjectsApi(api_client)
    body = await api.list_cluster_custom_object(GROUP, VERSION, RULES)
    items = [r for r in body.get("items", []) if belongs_to(r, config_namespace, config_name)]
    return items, str((body.get("metadata") or {}).get("resourceVersion", ""))


async def watch_rules(
    api_client: ApiClient, config_namespace: str, config_name: str, resource_version: str = ""
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event type, rule) for rules of the AlertConfig; a rule moved to another config comes as DELETED."""
    api = client.CustomObjectsApi(api_client)
    w = watch.Watch()
    kwargs: dict[str, Any] = {"resource_version": resource_version} if resource_version else {}
    async with w.stream(api.list_cluster_custom_object, GROUP, VERSION, RULES, **kwargs) as stream:
        async for event in stream:
            obj = event.get("object")
            if not isinstance(obj, dict):
                continue
            kind = str(event.get("type", ""))
            if kind != "DELETED" and not belongs_to(obj, config_namespace, config_name):
                kind = "DELETED"
            yield kind, obj


async def list_channels(api_client: ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The NotificationChannels of one namespace (the notifier's view of where to deliver)."""
    api = client.CustomObjectsApi(api_client)
    body = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, "notificationchannels")
    return list(body.get("items", []))
