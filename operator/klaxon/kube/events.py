"""Kubernetes Events about our objects: with status, how the operator talks back."""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from .client import Body, KubeClient, KubeError

logger = logging.getLogger(__name__)

COMPONENT = "klaxon-operator"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_event(involved: Mapping[str, Any], type_: str, reason: str, message: str) -> Body:
    """A core/v1 Event about ``involved`` (pure)."""
    meta = involved["metadata"]
    now = _now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason[:128],
        "message": message[:1024],
        "type": type_,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def post_event(
    kube: KubeClient, involved: Mapping[str, Any], type_: str, reason: str, message: str
) -> None:
    """Best effort: an Event that cannot be posted must never fail a reconcile."""
    try:
        await kube.create(build_event(involved, type_, reason, message))
    except KubeError as exc:
        logger.warning("Could not post event %s for %s: %s", reason, involved["metadata"].get("name"), exc)

