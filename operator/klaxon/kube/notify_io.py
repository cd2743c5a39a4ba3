"""The notifier's two seams implemented with the Kubernetes API (``klaxon.notify.model``).

``KubeSecretResolver`` reads one key of one Secret (kept a few seconds so a burst of deliveries
reads each Secret once); values never reach a log line or an exception message.
``KubeStatusSink`` writes what the notifier reports: a NotificationChannel's delivery fields
(``lastDelivery``, ``lastTestDelivery``, ``deliveredCount``, ``failedCount`` — never the
operator's ``conditions``), an AlertRule's ``lastNotification`` (both merge-patches of the
``/status`` subresource) and core/v1 Events about either.

RBAC: ``EVALUATOR_RULES`` (``klaxon.kube.rbac``) grants secrets get, alertrules/status and
notificationchannels/status patch, klaxon kinds get, events create.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from ..api.alertrule import Notified
from ..api.channel import NotificationChannelStatus
from ..notify.model import SecretError
from .events import build_event
from .status import GROUP, MERGE_PATCH, RULES, VERSION

log = logging.getLogger(__name__)

CHANNELS = "notificationchannels"
COMPONENT = "klaxon-evaluator"
_PLURALS = {"AlertRule": RULES, "NotificationChannel": CHANNELS, "AlertConfig": "alertconfigs"}
#: The delivery fields the notifier owns on a NotificationChannel's status (camelCase).
CHANNEL_STATUS_FIELDS = ("lastDelivery", "lastTestDelivery", "deliveredCount", "failedCount", "queue")


_SECRET_BODY = re.compile(r'"kind":\s*"Secret(List)?"')
#: kubernetes-asyncio logs every response body at DEBUG: a Secret's data must not go with it.
CLIENT_LOGGER = "kubernetes_asyncio.client.rest"


class SecretBodyFilter(logging.Filter):
    """Replaces a logged API response that is a Secret (or SecretList) with a placeholder."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            return True
        if _SECRET_BODY.search(text):
            record.msg, record.args = "response body: <a Secret; not logged>", ()
        return True


def guard_client_logs(logger: logging.Logger | None = None) -> None:
    """Install ``SecretBodyFilter`` on the Kubernetes client's logger (idempotent)."""
    target = logger or logging.getLogger(CLIENT_LOGGER)
    if not any(isinstance(f, SecretBodyFilter) for f in target.filters):
        target.addFilter(SecretBodyFilter())


class KubeSecretResolver:
    """``SecretResolver`` over the API: ``get(ns, name, key)``, each Secret cached for ``ttl_s``.

    A missing Secret or key, or a Secret the evaluator may not read, raises ``SecretError``
    naming the Secret and key (never a value). The Kubernetes client's DEBUG log of response
    bodies is filtered so that a Secret read never shows up there either. A key read from the
    cache is as old as ``ttl_s`` at most, so a rotated webhook URL is picked up within seconds.
    """

    def __init__(
        self, api_client: ApiClient, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api_client = api_client
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self.reads = 0
        guard_client_logs()

    async def _data(self, namespace: str, name: str) -> dict[str, str]:
        hit = self._cache.get((namespace, name))
        now = self.clock()
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        self.reads += 1
        try:
            secret = await client.CoreV1Api(self.api_client).read_namespaced_secret(name, namespace)
        except ApiException as exc:
            self._cache.pop((namespace, name), None)
            if exc.status == 404:
                raise SecretError(f"Secret {namespace}/{name} not found") from None
            # exc's body is the API server's Status (no Secret data); still, keep only the code
            raise SecretError(f"Secret {namespace}/{name} could not be read: {exc.status} {exc.reason}") from None
        data: dict[str, str] = {}
        for key, raw in (secret.data or {}).items():
            try:
                data[str(key)] = base64.b64decode(raw).decode()
            except (binascii.Error, UnicodeDecodeError):
                log.warning("Secret %s/%s key %r is not base64-encoded UTF-8; ignored", namespace, name, key)
        for key, value in (getattr(secret, "string_data", None) or {}).items():
            data.setdefault(str(key), str(value))
        self._cache[(namespace, name)] = (now, data)
        return data

    async def get(self, namespace: str, name: str, key: str) -> str:
        data = await self._data(namespace, name)
        if key not in data:
            raise SecretError(f"Secret {namespace}/{name} has no key {key!r}")
        return data[key]

    def forget(self, namespace: str | None = None, name: str | None = None) -> None:
        """Drop cached Secrets (all, one namespace's, or one)."""
        for k in list(self._cache):
            if (namespace is None or k[0] == namespace) and (name is None or k[1] == name):
                del self._cache[k]


def channel_status_patch(status: NotificationChannelStatus) -> dict[str, Any]:
    """The delivery part of a channel status as a merge-patch body (conditions are the operator's)."""
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    if status.queue is not None:  # explicit nulls: a merge patch removes what no longer holds
        dumped["queue"] = status.queue.model_dump(by_alias=True, mode="json")
    return {"status": {k: dumped[k] for k in CHANNEL_STATUS_FIELDS if k in dumped}}


def rule_notified_patch(notified: Notified) -> dict[str, Any]:
    return {"status": {"lastNotification": notified.model_dump(by_alias=True, mode="json", exclude_none=True)}}


class KubeStatusSink:
    """``StatusSink`` over the API. Channel status errors propagate (the notifier retries them);
    ``lastNotification`` and Events are best effort and only logged."""

    def __init__(self, api_client: ApiClient, component: str = COMPONENT) -> None:
        self.api_client = api_client
        self.component = component
        self._uids: dict[tuple[str, str, str], str | None] = {}

    async def _patch_status(self, plural: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        await client.CustomObjectsApi(self.api_client).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            dict(body),
            _content_type=MERGE_PATCH,  # type: ignore[call-arg]
        )

    async def channel_status(self, namespace: str, name: str, status: NotificationChannelStatus) -> None:
        try:
            await self._patch_status(CHANNELS, namespace, name, channel_status_patch(status))
        except ApiException as exc:
            if exc.status == 404:  # the channel is gone: nothing to report on
                log.info("NotificationChannel %s/%s is gone; status not written", namespace, name)
                return
            raise

    async def rule_notified(self, namespace: str, name: str, notified: Notified) -> None:
        try:
            await self._patch_status(RULES, namespace, name, rule_notified_patch(notified))
        except ApiException as exc:
            log.warning(
                "could not write lastNotification of AlertRule %s/%s: %s %s", namespace, name, exc.status, exc.reason
            )

    async def _uid(self, namespace: str, kind: str, name: str) -> str | None:
        key = (namespace, kind, name)
        if key not in self._uids:
            plural = _PLURALS.get(kind)
            uid: str | None = None
            if plural is not None:
                try:
                    obj = await client.CustomObjectsApi(self.api_client).get_namespaced_custom_object(
                        GROUP, VERSION, namespace, plural, name
                    )
                    uid = (obj.get("metadata") or {}).get("uid")
                except ApiException:
                    uid = None  # an Event without a uid still names the object
            if len(self._uids) > 4096:
                self._uids.clear()
            self._uids[key] = uid
        return self._uids[key]

    async def event(
        self, namespace: str, kind: str, name: str, reason: str, message: str, warning: bool = False
    ) -> None:
        involved = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "uid": await self._uid(namespace, kind, name)},
        }
        body = build_event(involved, "Warning" if warning else "Normal", reason, message)
        body["source"] = {"component": self.component}
        body["reportingComponent"] = self.component
        body["involvedObject"] = {k: v for k, v in body["involvedObject"].items() if v is not None}
        try:
            await client.CoreV1Api(self.api_client).create_namespaced_event(namespace, body)  # type: ignore[arg-type]
        except ApiException as exc:
            log.warning("could not post Event %s for %s %s/%s: %s %s", reason, kind, namespace, name,
                        exc.status, exc.reason)
