"""``KubeClient`` calls the evaluator relies on, against the emulated API: list with its
resourceVersion, watch from there, the status subresource, a guarded annotation update."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from klaxon.kube.client import KubeClient, KubeError, Ref

AR = "klaxon.dev/v1alpha1/alertrules"


def rule(name: str) -> dict[str, Any]:
    return {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertRule", "metadata": {"name": name},
            "spec": {"query": {"metric": "m"}, "condition": {"threshold": 1}}}


async def test_watch_after_a_list_sees_later_changes_only(kube: Any, kube_api: Any) -> None:
    client = KubeClient(kube_api)
    kube.create_object(AR, rule("before"), namespace="a")
    items, version = await client.list_with_version(Ref.klaxon("AlertRule", "a"))
    assert [i["metadata"]["name"] for i in items] == ["before"] and version

    seen: list[tuple[str, str]] = []

    async def follow() -> None:
        async for kind, obj in client.watch(Ref.klaxon("AlertRule", "a"), version):
            seen.append((kind, obj["metadata"]["name"]))

    task = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.2)
        kube.create_object(AR, rule("after"), namespace="a")
        kube.patch_object(AR, "after", {"metadata": {"labels": {"x": "y"}}}, namespace="a")
        kube.delete_object(AR, "before", namespace="a")
        for _ in range(100):
            if ("DELETED", "before") in seen:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [s for s in seen if s[0] != "BOOKMARK"] == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]
    watches = [r for r in kube.requests("GET", AR) if r.query.get("watch") == "true"]
    assert [r.namespace for r in watches] == ["a"] and watches[0].query.get("resourceVersion") == version


async def test_a_refused_watch_raises_the_servers_reason(kube: Any, kube_api: Any) -> None:
    kube.inject_error(403, method="GET", resource=AR, namespace="a", message="no Role here yet")
    with pytest.raises(KubeError) as refused:
        async for _ in KubeClient(kube_api).watch(Ref.klaxon("AlertRule", "a")):
            pass
    assert refused.value.status == 403 and "no Role here yet" in refused.value.message


async def test_status_and_annotation_writes(kube: Any, kube_api: Any) -> None:
    client, ref = KubeClient(kube_api), Ref.klaxon("AlertRule", "a", "r")
    kube.create_object(AR, rule("r"), namespace="a")
    await client.patch_status(ref, {"state": "Firing"})
    assert await client.update_annotation(ref, "k", lambda old: (old or "") + "1") == "1"
    kube.inject_error(409, method="PATCH", resource=AR, namespace="a")  # someone wrote in between
    assert await client.update_annotation(ref, "k", lambda old: (old or "") + "2") == "12"  # read again, retried
    assert len([r for r in kube.requests("PATCH", AR) if r.status == 409]) == 1
    obj = kube.get_object(AR, "r", "a")
    assert obj["status"] == {"state": "Firing"} and obj["metadata"]["annotations"]["k"] == "12"
    assert obj["spec"]["condition"] == {"threshold": 1}  # the status write left spec alone
    with pytest.raises(KubeError) as gone:
        await client.update_annotation(Ref.klaxon("AlertRule", "a", "nope"), "k", lambda old: "x")
    assert gone.value.status == 404
