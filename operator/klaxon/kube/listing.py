"""Read-only listings for people (the `klaxon status` / `kubectl klaxon status` command)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from .. import GROUP, VERSION

RULES = "alertrules"


async def list_alert_rules(api_client: ApiClient, namespace: str | None) -> list[dict[str, Any]]:
    """AlertRules of one namespace, or of all namespaces when ``namespace`` is None."""
    api = client.CustomObjectsApi(api_client)
    if namespace is None:
        body = await api.list_cluster_custom_object(GROUP, VERSION, RULES)
    else:
        body = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, RULES)
    items: list[dict[str, Any]] = body.get("items", [])
    return items
