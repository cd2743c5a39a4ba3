"""Alert entries through the Kubernetes API: read them from AlertRule status, and record an
acknowledgement or a tag in the ``klaxon.dev/entries`` annotation (the evaluator applies it)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from klaxon.evaluator.entries import ENTRIES_ANNOTATION, Record, set_record

from .status import CONFIGS, GROUP, MERGE_PATCH, RULES, VERSION, config_of


async def get_rule(api_client: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    api = client.CustomObjectsApi(api_client)
    obj: dict[str, Any] = await api.get_namespaced_custom_object(GROUP, VERSION, namespace, RULES, name)
    return obj


async def list_rules(api_client: ApiClient, namespace: str | None) -> list[dict[str, Any]]:
    """AlertRules of one namespace, or of all namespaces when ``namespace`` is None."""
    api = client.CustomObjectsApi(api_client)
    if namespace is None:
        body = await api.list_cluster_custom_object(GROUP, VERSION, RULES)
    else:
        body = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, RULES)
    items: list[dict[str, Any]] = body.get("items", [])
    return items


async def get_config_of(api_client: ApiClient, rule: dict[str, Any]) -> dict[str, Any] | None:
    """The AlertConfig a rule refers to, or None when it does not exist."""
    ns, name = config_of(rule)
    api = client.CustomObjectsApi(api_client)
    try:
        obj: dict[str, Any] = await api.get_namespaced_custom_object(GROUP, VERSION, ns, CONFIGS, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


async def record_entry(api_client: ApiClient, namespace: str, name: str, record: Record, attempts: int = 5) -> str:
    """Set ``record`` in the rule's ``klaxon.dev/entries`` annotation (read-modify-write guarded by
    resourceVersion, retried on conflict); returns the new annotation value."""
    api = client.CustomObjectsApi(api_client)
    for attempt in range(attempts):
        rule = await get_rule(api_client, namespace, name)
        meta = rule.get("metadata") or {}
        value = set_record((meta.get("annotations") or {}).get(ENTRIES_ANNOTATION), record)
        patch = {
            "metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": {ENTRIES_ANNOTATION: value}}
        }
        try:
            await api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                RULES,
                name,
                patch,
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]
            )
            return value
        except ApiException as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
