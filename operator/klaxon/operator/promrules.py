"""The managed PrometheusRules, followed by the operator's own list and watch (not kopf's).

Kept per object: its resourceVersion and the digest of the fields we manage (``Runtime.promrules``,
``Runtime.promrule_digests``), and its owning rule. A rule's reconcile compares with the digest
(no GET, no write when equal); a change that is not our own write is drift, and the owning rule
is reconciled (a hand edit is undone, a deleted one re-created).

Why not kopf: kopf keeps a worker per object with its whole body, and at startup holds every
listed object until all indices are complete. With 10,000 rules that was 10,000 PrometheusRule
bodies beside the rules' own: a restarted operator peaked at 480 MiB and kept 415 MiB; without
them 325 and 284 (bench/README.md).

One list, then a watch from its resourceVersion, per watched namespace (or cluster-wide, as the
operator's RBAC allows). A watch that ends resumes; one that fails lists again with backoff (up
to 5 s). While the PrometheusRule CRD is not installed it waits for the CRD watch to say it came
(``crd_installed``), or lists again after a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..api.constants import MANAGED_BY
from ..kube.apply import managed_digest
from ..kube.client import FAILURES, Body, KubeError, Ref, unexpected
from .kicks import kick_rule
from .rules import PROMRULE_API, owner_rule_key
from .runtime import Runtime

logger = logging.getLogger("klaxon.operator")

SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
MAX_BACKOFF_S = 5.0
#: Without a CRD watch event, how often a missing PrometheusRule CRD is looked for again.
CRD_RECHECK_S = 60.0


async def follow_promrules(rt: Runtime) -> None:
    """Follow the managed PrometheusRules of every watched namespace until cancelled."""
    await asyncio.gather(*(_follow(rt, ns) for ns in rt.options.namespaces or ("",)))


def crd_installed(rt: Runtime) -> None:
    """The PrometheusRule CRD appeared (or changed): a follower waiting for it lists now."""
    rt.promrule_crd.set()


def seen(rt: Runtime, type_: str | None, obj: Mapping[str, Any]) -> None:
    """One PrometheusRule as the list (``type_`` None) or the watch shows it."""
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")))
    version = str(meta.get("resourceVersion") or "")
    owner = owner_rule_key(obj)
    known = rt.promrules.get(key)
    if type_ == "DELETED":
        rt.promrules.pop(key, None)
        rt.promrule_digests.pop(key, None)
        rt.promrule_owners.pop(key, None)
    else:
        rt.promrule_digests[key] = managed_digest(obj)
        if owner is not None:
            rt.promrule_owners[key] = owner
        rt.promrules[key] = version
        if known in (version, "") or (type_ is None and known is None):
            return  # our own write (in flight), or first listed (each rule's reconcile compares)
        # else someone else's change, seen by the watch or by a relist after it was down
    if owner is not None:
        kick_rule(rt, owner, "drift")


def listed(rt: Runtime, namespace: str, items: Iterable[Body]) -> None:
    """A (re)list: what it shows is the truth; ones gone while nobody watched are drift too."""
    keys = set()
    for obj in items:
        seen(rt, None, obj)
        meta = obj.get("metadata") or {}
        keys.add((str(meta.get("namespace")), str(meta.get("name"))))
    gone = [k for k in rt.promrule_digests if k not in keys and (not namespace or k[0] == namespace)]
    for key in gone:
        owner = rt.promrule_owners.pop(key, None)
        rt.promrules.pop(key, None)
        rt.promrule_digests.pop(key, None)
        if owner is not None:
            kick_rule(rt, owner, "drift")


async def _follow(rt: Runtime, namespace: str) -> None:
    ref = Ref(PROMRULE_API, "prometheusrules", namespace or None)
    where = f"in {namespace}" if namespace else "cluster-wide"
    delay = 1.0
    while True:
        rt.promrule_crd.clear()  # from here on, the CRD watch's news of the CRD counts
        try:
            items, version = await rt.kube.list_with_version(ref, label_selector=SELECTOR)
            listed(rt, namespace, items)
            del items
            rt.promrules_listed.set()
            delay = 1.0
            while True:  # the server ends each watch after minutes: resume where it was
                async for type_, obj in rt.kube.watch(ref, version, label_selector=SELECTOR):
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if type_ != "BOOKMARK":
                        seen(rt, type_, obj)
        except KubeError as exc:
            if exc.resource_missing:
                rt.promrules_listed.set()  # nothing to list: rules create theirs once it is there
                await _crd_wait(rt)
                continue
            if exc.status != 410:  # 410 Gone: that resourceVersion is too old, list again now
                logger.warning("Watching PrometheusRules %s failed: %s; again in %.0f s.", where, exc, delay)
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)
        except FAILURES as exc:
            logger.warning(
                "Watching PrometheusRules %s failed: %s; again in %.0f s.", where, exc, delay, exc_info=unexpected(exc)
            )
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF_S, delay * 2)


async def _crd_wait(rt: Runtime) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(rt.promrule_crd.wait(), CRD_RECHECK_S)


__all__ = ["SELECTOR", "crd_installed", "follow_promrules", "listed", "seen"]
