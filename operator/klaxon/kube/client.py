"""The one async client Klaxon uses for the Kubernetes API (besides kopf's own watches).

Generic on purpose: every call names ``apiVersion`` + plural, so the same code reads and
writes PrometheusRules, Deployments and our own kinds, and every request is counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import Counter, Histogram

Body = dict[str, Any]
#: The connection settings type, for modules outside klaxon.kube (which never import the client library).
Configuration = k8s.Configuration

MERGE_PATCH = "application/merge-patch+json"

API_REQUESTS = Counter(
    "klaxon_operator_api_requests_total",
    "Kubernetes API requests made by Klaxon's own client.",
    ["method", "resource", "code"],
)
API_LATENCY = Histogram(
    "klaxon_operator_api_request_duration_seconds",
    "Latency of Kubernetes API requests made by Klaxon.",
    ["method"],
)

#: Kinds Klaxon generates or reads, by (apiVersion, kind): their plural and whether namespaced.
PLURALS: dict[tuple[str, str], str] = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrules",
    ("apps/v1", "Deployment"): "deployments",
    ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "Secret"): "secrets",
    ("v1", "Event"): "events",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "clusterroles",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "clusterrolebindings",
    ("coordination.k8s.io/v1", "Lease"): "leases",
    ("klaxon.dev/v1alpha1", "AlertRule"): "alertrules",
    ("klaxon.dev/v1alpha1", "AlertConfig"): "alertconfigs",
    ("klaxon.dev/v1alpha1", "NotificationChannel"): "notificationchannels",
}


class KubeError(Exception):
    """An API error with the status code and the server's message (what users need to read)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def resource_missing(self) -> bool:
        """A 404 for the resource type itself (CRD not installed), not for one object."""
        return self.status == 404 and "could not find the requested resource" in self.message

    @classmethod
    def from_api(cls, exc: ApiException) -> KubeError:
        reason, message = str(exc.reason or ""), ""
        try:
            payload = json.loads(exc.body) if exc.body else {}
            reason = payload.get("reason") or reason
            message = payload.get("message") or ""
        except (TypeError, ValueError):
            message = str(exc.body or "")
        return cls(int(exc.status or 0), reason, message)


#: What a call to the API server raises when the call failed (the server said no, or the
#: connection broke) rather than the caller: retry these, let anything else surface.
FAILURES: tuple[type[Exception], ...] = (KubeError, ApiException, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class Ref:
    """Where an object lives: enough to build its URL."""

    api_version: str
    plural: str
    namespace: str | None
    name: str | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Ref:
        api_version, kind = str(body["apiVersion"]), str(body["kind"])
        meta = body.get("metadata") or {}
        return cls(api_version, plural_of(api_version, kind), meta.get("namespace"), meta.get("name"))

    def path(self, subresource: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        base += f"/{self.plural}"
        if self.name:
            base += f"/{self.name}"
        if subresource:
            base += f"/{subresource}"
        return base


def _resource_of(path: str) -> str:
    """The plural in an API path, for metrics labels: /api[s]/<gv>[/namespaces/<ns>]/<plural>[/...]."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        return rest[2]
    return rest[0] if rest else ""


def plural_of(api_version: str, kind: str) -> str:
    try:
        return PLURALS[(api_version, kind)]
    except KeyError:
        return kind.lower() + "s"


class KubeClient:
    """Thin async wrapper over kubernetes-asyncio's ApiClient: JSON in, JSON out."""

    def __init__(self, api: k8s.ApiClient, field_manager: str = "klaxon-operator") -> None:
        self.api = api
        self.field_manager = field_manager
        self.requests = 0

    @classmethod
    async def connect(
        cls,
        configuration: k8s.Configuration | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
    ) -> KubeClient:
        """From an explicit Configuration, an explicit kubeconfig, in-cluster, or the default kubeconfig."""
        if configuration is None:
            configuration = k8s.Configuration()
            if kubeconfig:
                await k8s_config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
            else:
                try:
                    k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                except k8s_config.ConfigException:
                    await k8s_config.load_kube_config(context=context, client_configuration=configuration)
        return cls(k8s.ApiClient(configuration=configuration))

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        resource = _resource_of(path)
        started = time.monotonic()
        self.requests += 1
        code = "0"
        try:
            result = await self.api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
            code = "2xx"
            return result
        except ApiException as exc:
            code = str(exc.status)
            raise KubeError.from_api(exc) from None
        finally:
            API_REQUESTS.labels(method, resource, code).inc()
            API_LATENCY.labels(method).observe(time.monotonic() - started)

    async def get(self, ref: Ref) -> Body | None:
        try:
            result: Body = await self.request("GET", ref.path())
        except KubeError as exc:
            if exc.status == 404 and not exc.resource_missing:
                return None
            raise
        return result

    async def list(self, ref: Ref, label_selector: str | None = None) -> list[Body]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", ref.path(), query=query)
        items: list[Body] = list(result.get("items") or [])
        return items

    async def create(self, body: Body) -> Body:
        ref = Ref.of(body)
        collection = Ref(ref.api_version, ref.plural, ref.namespace)
        result: Body = await self.request(
            "POST", collection.path(), body=body, query={"fieldManager": self.field_manager}
        )
        return result

    async def merge_patch(self, ref: Ref, patch: Mapping[str, Any], subresource: str | None = None) -> Body:
        result: Body = await self.request(
            "PATCH",
            ref.path(subresource),
            body=dict(patch),
            query={"fieldManager": self.field_manager},
            content_type=MERGE_PATCH,
        )
        return result

    async def delete(self, ref: Ref, uid: str | None = None) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:  # never delete a same-named successor
            body["preconditions"] = {"uid": uid}  # type: ignore[assignment]
        try:
            await self.request("DELETE", ref.path(), body=body)
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise
