"""The operator's own view of its PrometheusRules (klaxon.operator.promrules): what is drift and
whose rule is reconciled for it. The follow loop itself runs in every operator test (drift
restored, restart without writes) and on the real control plane."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from klaxon.kube.apply import managed_digest
from klaxon.kube.client import KubeClient
from klaxon.operator.promrules import SELECTOR, listed, seen
from klaxon.operator.runtime import Options, Runtime


def promrule(name: str, version: str, rule: str | None = None, ns: str = "team") -> dict[str, Any]:
    owners = [{"kind": "AlertRule", "name": rule, "controller": True, "uid": "u"}] if rule else []
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": version, "ownerReferences": owners},
        "spec": {"groups": [{"name": name, "rules": []}]},
    }


def kicked(rt: Runtime) -> set[tuple[str, ...]]:
    return set(rt.pending)


async def cancel_kicks(rt: Runtime) -> None:
    tasks = list(rt.tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    rt.pending.clear()


async def test_listed_objects_are_remembered_without_reconciling_anything() -> None:
    rt = Runtime(Options(), cast(KubeClient, None))
    listed(rt, "", [promrule("klaxon-a", "5", "a"), promrule("klaxon-b", "6", "b", ns="other")])
    assert rt.promrules == {("team", "klaxon-a"): "5", ("other", "klaxon-b"): "6"}
    assert rt.promrule_digests[("team", "klaxon-a")] == managed_digest(promrule("klaxon-a", "5", "a"))
    assert kicked(rt) == set()
    await cancel_kicks(rt)


async def test_our_own_write_is_not_drift_a_foreign_change_or_deletion_is() -> None:
    rt = Runtime(Options(), cast(KubeClient, None))
    listed(rt, "", [promrule("klaxon-a", "5", "a")])
    rt.promrules[("team", "klaxon-a")] = ""  # our write in flight
    seen(rt, "MODIFIED", promrule("klaxon-a", "7", "a"))
    assert kicked(rt) == set() and rt.promrules[("team", "klaxon-a")] == "7"
    seen(rt, "MODIFIED", promrule("klaxon-a", "7", "a"))  # the same version again (a resumed watch)
    assert kicked(rt) == set()
    seen(rt, "MODIFIED", promrule("klaxon-a", "9", "a"))  # someone else's edit
    assert kicked(rt) == {("AlertRule", "team", "a")}
    await cancel_kicks(rt)
    seen(rt, "DELETED", promrule("klaxon-a", "10", "a"))
    assert kicked(rt) == {("AlertRule", "team", "a")} and ("team", "klaxon-a") not in rt.promrule_digests
    await cancel_kicks(rt)


async def test_a_relist_reconciles_the_owners_of_objects_deleted_while_unwatched() -> None:
    rt = Runtime(Options(), cast(KubeClient, None))
    listed(rt, "team", [promrule("klaxon-a", "5", "a"), promrule("klaxon-b", "6", "b")])
    rt.promrule_digests[("other", "klaxon-c")] = "d"  # another namespace's follower owns that one
    listed(rt, "team", [promrule("klaxon-b", "6", "b")])
    assert kicked(rt) == {("AlertRule", "team", "a")}
    assert ("team", "klaxon-a") not in rt.promrules and ("other", "klaxon-c") in rt.promrule_digests
    await cancel_kicks(rt)


def test_the_selector_is_the_label_every_managed_object_carries() -> None:
    assert SELECTOR == "app.kubernetes.io/managed-by=klaxon"


async def test_a_relist_reconciles_the_owners_of_objects_edited_while_unwatched() -> None:
    rt = Runtime(Options(), cast(KubeClient, None))
    listed(rt, "team", [promrule("klaxon-a", "5", "a"), promrule("klaxon-b", "6", "b")])
    listed(rt, "team", [promrule("klaxon-a", "5", "a"), promrule("klaxon-b", "8", "b")])  # b edited meanwhile
    assert kicked(rt) == {("AlertRule", "team", "b")} and rt.promrules[("team", "klaxon-b")] == "8"
    await cancel_kicks(rt)
