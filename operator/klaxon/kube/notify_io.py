"""What the notifier writes through the Kubernetes API (its ``StatusSink``, ``klaxon.notify.model``).

``KubeStatusSink`` writes a NotificationChannel's delivery fields (``lastDelivery``,
``lastTestDelivery``, ``deliveredCount``, ``failedCount``, ``queue`` — never the operator's
``conditions``),
an AlertRule's ``lastNotification`` (both merge-patches of the ``/status`` subresource) and
core/v1 Events about either.

RBAC: ``EVALUATOR_RULES`` (``klaxon.kube.rbac``) grants alertrules/status and
notificationchannels/status patch, klaxon kinds get, events create.
"""

from __future__ import annotations

import logging
from typing import Any

from ..api.alertrule_status import Notified
from ..api.channel import NotificationChannelStatus
from ..api.constants import API_VERSION
from .client import KubeClient, KubeError, Ref
from .events import build_event

log = logging.getLogger(__name__)

COMPONENT = "klaxon-evaluator"
#: The delivery fields the notifier owns on a NotificationChannel's status (camelCase).
CHANNEL_STATUS_FIELDS = ("lastDelivery", "lastTestDelivery", "deliveredCount", "failedCount", "queue")
_KINDS = ("AlertRule", "NotificationChannel", "AlertConfig")


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

    def __init__(self, kube: KubeClient, component: str = COMPONENT) -> None:
        self.kube = kube
        self.component = component
        self._uids: dict[tuple[str, str, str], str | None] = {}

    async def channel_status(self, namespace: str, name: str, status: NotificationChannelStatus) -> None:
        try:
            ref = Ref.klaxon("NotificationChannel", namespace, name)
            await self.kube.merge_patch(ref, channel_status_patch(status), subresource="status")
        except KubeError as exc:
            if exc.status == 404:  # the channel is gone: nothing to report on
                log.info("NotificationChannel %s/%s is gone; status not written", namespace, name)
                return
            raise

    async def rule_notified(self, namespace: str, name: str, notified: Notified) -> None:
        try:
            ref = Ref.klaxon("AlertRule", namespace, name)
            await self.kube.merge_patch(ref, rule_notified_patch(notified), subresource="status")
        except KubeError as exc:
            log.warning("could not write lastNotification of AlertRule %s/%s: %s", namespace, name, exc)

    async def _uid(self, namespace: str, kind: str, name: str) -> str | None:
        key = (namespace, kind, name)
        if key not in self._uids:
            uid: str | None = None
            if kind in _KINDS:
                try:
                    obj = await self.kube.get(Ref.klaxon(kind, namespace, name))
                    uid = ((obj or {}).get("metadata") or {}).get("uid")
                except KubeError:
                    uid = None  # an Event without a uid still names the object
            if len(self._uids) > 4096:
                self._uids.clear()
            self._uids[key] = uid
        return self._uids[key]

    async def event(
        self, namespace: str, kind: str, name: str, reason: str, message: str, warning: bool = False
    ) -> None:
        involved = {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "uid": await self._uid(namespace, kind, name)},
        }
        body = build_event(involved, "Warning" if warning else "Normal", reason, message)
        body["source"] = {"component": self.component}
        body["reportingComponent"] = self.component
        body["involvedObject"] = {k: v for k, v in body["involvedObject"].items() if v is not None}
        try:
            await self.kube.create(body)
        except KubeError as exc:
            log.warning("could not post Event %s for %s %s/%s: %s", reason, kind, namespace, name, exc)
