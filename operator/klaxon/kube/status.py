"""AlertRule reads and status writes for the evaluator (the `/status` subresource, merge-patch).

Also the evaluator's Secret reads (Prometheus credentials): values are returned, never logged.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

__all__ = ["ApiException"]  # re-exported: callers outside klaxon.kube catch it without the library

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


def namespace_allowed(rule_namespace: str, config_namespace: str, allowed: Iterable[str]) -> bool:
    """A rule may use a config of its own namespace, or one listing its namespace (or '*')."""
    allowed = list(allowed)
    return rule_namespace == config_namespace or "*" in allowed or rule_namespace in allowed


class SecretError(Exception):
    """A referenced Secret or key is missing (the message names them, never a value)."""


async def read_secret_key(api_client: ApiClient, namespace: str, name: str, key: str) -> str:
    """The decoded value of `key` in Secret `namespace/name`."""
    try:
        secret = await client.CoreV1Api(api_client).read_namespaced_secret(name, namespace)
    except client.ApiException as e:
        raise SecretError(f"Secret {namespace}/{name}: HTTP {e.status}") from None
    data = secret.data or {}
    if key not in data:
        raise SecretError(f"Secret {namespace}/{name} has no key {key!r}")
    return base64.b64decode(data[key]).decode()


async def get_config(api_client: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    api = client.CustomObjectsApi(api_client)
    obj: dict[str, Any] = await api.get_namespaced_custom_object(GROUP, VERSION, namespace, CONFIGS, name)
    return obj


def rules_scope(config_namespace: str, allowed_namespaces: list[str], granted: list[str] | None = None) -> list[str]:
    """The namespaces the evaluator lists and watches rules in: its own, those the AlertConfig lists,
    and with '*' those the operator granted it (``status.grantedNamespaces``, the namespaces that
    hold rules of the config). Never cluster-wide: its Roles are per namespace."""
    if "*" in allowed_namespaces:
        return sorted({config_namespace, *(granted or [])})
    return sorted({config_namespace, *allowed_namespaces})


def granted_namespaces(config: Mapping[str, Any]) -> list[str]:
    """``status.grantedNamespaces`` of an AlertConfig object."""
    return [str(n) for n in ((config.get("status") or {}).get("grantedNamespaces") or [])]


def _list_call(api: client.CustomObjectsApi, namespace: str) -> Any:
    def call(*args: Any, **kw: Any) -> Any:
        # `watch=true` as client-go sends it (the generated client would send "True").
        if kw.get("watch") is True:
            kw["watch"] = "true"
        return api.list_namespaced_custom_object(args[0], args[1], namespace, *args[2:], **kw)

    return call


async def list_rules(
    api_client: ApiClient, config_namespace: str, config_name: str, namespace: str
) -> tuple[list[dict[str, Any]], str]:
    """The AlertRules of ``namespace`` that refer to the AlertConfig, and the list's resourceVersion
    (evaluators read namespace by namespace: their Roles are per namespace, see ``rules_scope``)."""
    api = client.CustomObjectsApi(api_client)
    body = await _list_call(api, namespace)(GROUP, VERSION, RULES)
    items = [r for r in body.get("items", []) if belongs_to(r, config_namespace, config_name)]
    return items, str((body.get("metadata") or {}).get("resourceVersion", ""))


async def watch_rules(
    api_client: ApiClient,
    config_namespace: str,
    config_name: str,
    namespace: str,
    resource_version: str = "",
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event type, rule) for rules of the AlertConfig in ``namespace``, from `resource_version` on.

    Types: ADDED, MODIFIED, DELETED (the object is gone) and MOVED (it now refers to another
    AlertConfig: forget it, without resolving its alerts, the other evaluator takes it over).
    """
    list_or_watch = _list_call(client.CustomObjectsApi(api_client), namespace)
    w = watch.Watch()
    kwargs: dict[str, Any] = {"resource_version": resource_version} if resource_version else {}
    async with w.stream(list_or_watch, GROUP, VERSION, RULES, **kwargs) as stream:
        async for event in stream:
            obj = event.get("object")
            if not isinstance(obj, dict):
                continue
            kind = str(event.get("type", ""))
            if kind == "ERROR":
                raise client.ApiException(status=int(obj.get("code") or 500), reason=str(obj.get("reason", "")))
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # BOOKMARK
            if kind != "DELETED" and not belongs_to(obj, config_namespace, config_name):
                kind = "MOVED"
            yield kind, obj


async def list_channels(api_client: ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The NotificationChannels of one namespace (the notifier's view of where to deliver)."""
    api = client.CustomObjectsApi(api_client)
    body = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, "notificationchannels")
    return list(body.get("items", []))
